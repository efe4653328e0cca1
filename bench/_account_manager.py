"""Shared by the Account Manager benchmarks (`transfers.py`, `dashboard.py`).

Not an entry point. Signing up an agency on a given plan, GraphQL calls, the app's settings
for an in-process app, counting the SQL statements a request makes, and percentiles.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import subprocess
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _common import PASSWORD, ROOT

SIGN_UP_ON_PLAN = """
mutation SignUp($input: SignUpAgencyInput!) {
  signUpAgency(input: $input) {
    token
    agency { id primarySubAccount { id } }
    userErrors { code message field }
  }
}
"""

# What the in-process statement counter leaves out: transaction control, and the outbox
# relay's own statements (it runs in the background of every app process).
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@dataclass(frozen=True)
class BenchAgency:
    token: str
    agency_gid: str
    primary_gid: str


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """One GraphQL request; raises on a non-200 answer or on GraphQL errors."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body


async def sign_up_on_plan(
    client: httpx.AsyncClient, name: str, email: str, plan: str
) -> BenchAgency:
    body = await gql(
        client,
        SIGN_UP_ON_PLAN,
        {
            "input": {
                "agencyName": name,
                "ownerEmail": email,
                "password": PASSWORD,
                "planName": plan,
            }
        },
    )
    payload = body["data"]["signUpAgency"]
    if payload["userErrors"] or not payload["token"]:
        raise RuntimeError(f"sign-up of {email} failed: {payload}")
    return BenchAgency(
        token=payload["token"],
        agency_gid=payload["agency"]["id"],
        primary_gid=payload["agency"]["primarySubAccount"]["id"],
    )


def global_key(global_id: str) -> Any:
    """The UUID inside a Relay global ID."""
    from resolvers.global_id import from_global_id

    decoded = from_global_id(global_id)
    if decoded is None:
        raise ValueError(f"not a global ID: {global_id!r}")
    return decoded[1]


def is_relay_statement(statement: str) -> bool:
    """The background relay's: the advisory lock and every outbox statement but the INSERT,
    which belongs to the change that wrote the events (the statement-count test in
    tests/api/test_account_manager.py drops every "outbox" statement; its query writes none)."""
    if "advisory" in statement:
        return True
    return "outbox" in statement and not statement.lstrip().upper().startswith("INSERT INTO OUTBOX")


@contextlib.contextmanager
def statements_of(database: Any) -> Iterator[dict[str, list[str]]]:
    """Every statement sent on the app's two engines while the block runs, sorted into the
    request's own ("request"), transaction control ("control") and the outbox relay's
    ("relay"), like the statement-count test in tests/api/test_account_manager.py."""
    from sqlalchemy import event

    seen: dict[str, list[str]] = {"request": [], "control": [], "relay": []}
    engines = {database.engine.sync_engine, database._read_engine.sync_engine}

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if is_relay_statement(statement):
            seen["relay"].append(statement)
        elif statement.lstrip().upper().startswith(TRANSACTION_CONTROL):
            seen["control"].append(statement)
        else:
            seen["request"].append(statement)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


async def counted_requests(
    client: httpx.AsyncClient, database: Any, body: bytes, headers: dict[str, str], requests: int
) -> dict[str, Any]:
    """`requests` POSTs of `body` to an in-process app, each one's statements counted with
    `statements_of`; stops on an error answer. The statements of the last are listed."""
    per_request = []
    for _ in range(requests):
        with statements_of(database) as seen:
            response = await client.post("/graphql", content=body, headers=headers)
        if response.status_code != 200 or b'"errors"' in response.content:
            raise RuntimeError(f"in-process request failed: {response.text[:500]}")
        per_request.append(seen)
    return {
        "statements_per_request": [len(seen["request"]) for seen in per_request],
        "statements": [one_line(s, 400) for s in per_request[-1]["request"]],
        "transaction_control": [one_line(s) for s in per_request[-1]["control"]],
        "relay_statements_meanwhile": sum(len(seen["relay"]) for seen in per_request),
    }


def one_line(statement: str, limit: int = 240) -> str:
    text = " ".join(statement.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of `values`."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """min / median / p95 / p99 / max / mean of durations given in seconds, in ms."""
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "min_ms": round(min(ms), 2),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
    }


def working_tree() -> dict[str, Any]:
    """What the measured code is: the commit and the uncommitted changes on top of it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "status": git("status", "--porcelain").splitlines(),
        "diff_stat": git("diff", "--stat").splitlines()[-1:] or None,
    }


# More than this share of one core used by other processes during a run: not an idle machine.
OTHER_CPU_WARNING = 0.05
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_by_group(server_pid: int) -> dict[str, float]:
    """CPU seconds so far: the app server, PostgreSQL's processes, this script's children (wrk,
    py-spy, pgbench: counted once they have exited), other processes; the machine's split."""
    groups: dict[str, float] = defaultdict(float)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid = int(stat.parent.name)
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / CLK_TCK
        if pid == server_pid:
            groups["app server"] += seconds
        elif comm == "postgres":
            groups["postgresql"] += seconds
        elif pid != os.getpid():
            groups["other processes"] += seconds
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    groups["this script's children (wrk)"] = children.ru_utime + children.ru_stime
    cpu = [int(x) / CLK_TCK for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = cpu
    groups["machine user+nice"] = user + nice
    groups["machine system"] = system
    groups["machine irq+softirq"] = irq + softirq
    groups["machine idle+iowait"] = idle + iowait
    groups["machine steal"] = steal
    return dict(groups)


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after.get(k, 0.0) - before.get(k, 0.0), 2) for k in after}
