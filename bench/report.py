"""The agency report over a large usage history: latency over HTTP, SQL statements per request,
and the raw SQL time of the same aggregates.

    .venv/bin/python bench/report.py [--calls 1000000] [--sub-accounts 1000] [--days 90]
        [--requests 200] [--warmup 20] [--concurrency 4] [--profile auto] [--keep | --reuse]

Creates a fresh database (agencyhub_bench_report), migrates it and starts the app in one
uvicorn process (bench/serve_app.py). Generates the dataset with bench/dataset.py: one agency
and its sub-accounts through the API, `--calls` calls over `--days` days with their hourly and
daily rollups by COPY (billed with the app's own code), VACUUM ANALYZE, a consistency check.
With `--reuse`, a database kept by an earlier run (or by dataset.py) is used as it is when its
COMMENT says what it holds (the dataset's own parameters are reported, not the options) and the
owner signs in with `login`; `--reuse` keeps the database at the end, as `--keep` does.

Then `Agency.report` for the last 30 days (the range ends today in the agency's time zone),
the first `--first` clients by minutes used, descending, with the owner's token:

1. once, compared with raw SQL: totalMinutesUsed with the rollups and with the raw `call` rows,
   usageMargin with the rollups, and for every client on the page minutesUsed, spent,
   usageMargin and health (recomputed with domain.reporting.health_flags from raw rollup sums
   and balances), the page's order and totalCount; stops on any difference;
2. `--warmup` then `--requests` requests one at a time on one keep-alive connection (httpx),
   timed at the client, the server's CPU per request from /proc;
3. `--concurrency` clients, each with its own connection, `--concurrent-requests` in all;
4. with the app stopped, raw SQL with asyncpg (prepared): the three grouped aggregates the
   report makes (the 30-day range, the previous 30 days, the burn window; whole days from
   usage_daily, partial days from usage_hourly, grouped by sub-account and tier), the same
   number of times; and the grouped aggregate of the 30-day range over the raw `call` table
   `--raw-call-requests` times (why the rollups exist); for comparison, what the same figures
   would cost read differently (not what the app does): the three statements concurrently,
   only the columns the report shows grouped by sub-account, all windows in one pass;
5. in-process (create_app + httpx.ASGITransport, no uvicorn): the statements of a request
   counted with a before_cursor_execute listener on both engines (BEGIN/COMMIT/ROLLBACK and
   the outbox relay's statements left out, as in dashboard.py), each statement timed
   (before/after_cursor_execute), so the request splits into SQL and Python; EXPLAIN (ANALYZE,
   BUFFERS) of the slowest statement with its parameters; the resolver's steps (sub-accounts,
   the three usage windows, balances, health flags) run on their own with the app's
   persistence functions, each split into SQL and Python; and with `--profile auto` (the
   default) when the p95 target is missed, `--profile-requests` requests under pyinstrument.

Target: p95 <= 100 ms (sequential requests over HTTP). Prints a table, writes
bench/results/report-<timestamp>.json, drops the database unless --keep/--reuse.
Needs PostgreSQL (`--pg`, default postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import orjson
from _account_manager import (
    OTHER_CPU_WARNING,
    counted_requests,
    cpu_by_group,
    cpu_delta,
    global_key,
    one_line,
    summary_ms,
    working_tree,
)
from _common import (
    BENCH_DIR,
    DEFAULT_PG,
    RESULTS_DIR,
    app_env,
    app_settings,
    asyncpg_dsn,
    drop_database,
    loadavg,
    machine_info,
    migrate,
    recreate_database,
    run_async,
    sqlalchemy_url,
    timestamp,
)
from dataset import Options, generate, login, read_comment
from viewer_http import Server

from persistence.usage import SUMMED_COLUMNS

TARGET_P95_MS = 100.0
RANGE_DAYS = 30

REPORT = """query Report($from: Date!, $to: Date!, $first: Int, $order: ClientOrder) {
  viewer { agency { report(range: {from: $from, to: $to}) {
    totalMinutesUsed usageMargin { amount }
    clients(first: $first, orderBy: $order) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { node { subAccount { id name } minutesUsed spent { amount } usageMargin { amount }
                     health { kind } } } } } } } }"""

SUMS = SUMMED_COLUMNS  # the rollups' summed columns, as the app reads them


def _rollup_sql() -> str:
    """What persistence.queries.reports.usage_by_sub_account sends for a range of whole days
    with partial days at either end: $1 agency, $2 first midnight, $3 last midnight,
    $4 range start, $5 range end."""
    columns = ", ".join(SUMS)
    return (
        f"SELECT sub_account_id, tier, {', '.join(f'sum({c}) AS {c}' for c in SUMS)} FROM ("
        f" SELECT sub_account_id, tier, {columns} FROM usage_daily"
        "  WHERE day_utc >= $2 AND day_utc < $3 AND agency_id = $1"
        " UNION ALL"
        f" SELECT sub_account_id, tier, {columns} FROM usage_hourly"
        "  WHERE ((hour_utc >= $4 AND hour_utc < $2) OR (hour_utc >= $3 AND hour_utc < $5))"
        "  AND agency_id = $1"
        ") AS r GROUP BY sub_account_id, tier"
    )


RAW_ROLLUP = _rollup_sql()
# What the report needs, and nothing more (for comparison: what a leaner query would cost).
# The range needs calls, seconds, overage, spent, cost and failed calls per sub-account; the
# previous range and the burn window only seconds; no column needs the tier.
LEAN_NOW_SUMS = ("calls", "seconds", "overage_seconds", "spent_micros", "cost_micros", "failed")


def _lean_sql(sums: tuple[str, ...]) -> str:
    columns = ", ".join(sums)
    return (
        f"SELECT sub_account_id, {', '.join(f'sum({c}) AS {c}' for c in sums)} FROM ("
        f" SELECT sub_account_id, {columns} FROM usage_daily"
        "  WHERE day_utc >= $2 AND day_utc < $3 AND agency_id = $1"
        " UNION ALL"
        f" SELECT sub_account_id, {columns} FROM usage_hourly"
        "  WHERE ((hour_utc >= $4 AND hour_utc < $2) OR (hour_utc >= $3 AND hour_utc < $5))"
        "  AND agency_id = $1"
        ") AS r GROUP BY sub_account_id"
    )


LEAN_NOW = _lean_sql(LEAN_NOW_SUMS)
LEAN_SECONDS = _lean_sql(("seconds",))
# All three windows in one pass over usage_daily, when they are whole UTC days (UTC agencies):
# $2/$3 the range, $4/$5 the previous range, $6/$7 the burn window.
ONE_PASS = (
    "SELECT sub_account_id, "
    + ", ".join(f"sum({c}) FILTER (WHERE day_utc >= $2 AND day_utc < $3)" for c in LEAN_NOW_SUMS)
    + ", sum(seconds) FILTER (WHERE day_utc >= $4 AND day_utc < $5)"
    " , sum(seconds) FILTER (WHERE day_utc >= $6 AND day_utc < $7)"
    " FROM usage_daily WHERE agency_id = $1"
    " AND day_utc >= least($2::timestamptz, $4::timestamptz, $6::timestamptz)"
    " AND day_utc < greatest($3::timestamptz, $5::timestamptz, $7::timestamptz)"
    " GROUP BY sub_account_id"
)

RAW_CALLS = """
SELECT sub_account_id, tier, count(*) AS calls, sum(duration_seconds) AS seconds,
       count(*) FILTER (WHERE direction = 'INBOUND') AS inbound,
       count(*) FILTER (WHERE direction = 'OUTBOUND') AS outbound,
       count(*) FILTER (WHERE status = 'COMPLETED') AS completed,
       count(*) FILTER (WHERE status = 'FAILED') AS failed,
       count(*) FILTER (WHERE status = 'NO_ANSWER') AS no_answer,
       count(*) FILTER (WHERE status = 'BUSY') AS busy,
       count(*) FILTER (WHERE status = 'VOICEMAIL') AS voicemail
FROM call WHERE agency_id = $1 AND started_at >= $2 AND started_at < $3
GROUP BY sub_account_id, tier
"""
BALANCES = """
SELECT s.id, s.status, coalesce(sum(b.seconds), 0) AS seconds
FROM sub_account s LEFT JOIN balance b ON b.sub_account_id = s.id
WHERE s.agency_id = $1 AND s.status IN ('ACTIVE', 'SUSPENDED')
GROUP BY s.id, s.status
"""


# ---- the windows the report reads ----------------------------------------------------------------


def windows(time_zone: str, burn_days: int) -> dict[str, Any]:
    """As resolvers/reports.py computes them: the range (the last 30 days to today in the
    agency's zone), the previous equal range, and the burn window (which ends on the server
    clock's date, UTC)."""
    from domain.reporting import local_range

    today_local = datetime.now(ZoneInfo(time_zone)).date()
    today_utc = datetime.now(UTC).date()
    now = local_range(today_local - timedelta(days=RANGE_DAYS - 1), today_local, time_zone)
    return {
        "now": now,
        "previous": now.previous(time_zone),
        "burn": local_range(today_utc - timedelta(days=burn_days - 1), today_utc, time_zone),
    }


def rollup_args(agency_id: uuid.UUID, window: Any) -> tuple[Any, ...]:
    from persistence.queries.reports import whole_days

    days = whole_days(window.start_utc, window.end_utc)
    assert days is not None and days[1] is not None, "ranges of whole days only"
    return (agency_id, days[0], days[1], window.start_utc, window.end_utc)


async def raw_windows(
    conn: asyncpg.Connection, agency_id: uuid.UUID, spans: dict[str, Any]
) -> dict[str, dict[uuid.UUID, dict[str, int]]]:
    """Per window, per sub-account: the summed columns over both tiers plus seconds by tier."""
    statement = await conn.prepare(RAW_ROLLUP)
    out: dict[str, dict[uuid.UUID, dict[str, int]]] = {}
    for name, window in spans.items():
        per: dict[uuid.UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for r in await statement.fetch(*rollup_args(agency_id, window)):
            into = per[r["sub_account_id"]]
            for c in SUMS:
                into[c] += int(r[c])
            into[f"seconds_{r['tier']}"] += int(r["seconds"])
        out[name] = per
    return out


# ---- checking the answer -------------------------------------------------------------------------


async def expected(
    pg: str, database: str, agency_id: uuid.UUID, spans: dict[str, Any], thresholds: Any
) -> dict[str, Any]:
    from domain.reporting import HealthInputs, health_flags

    conn = await asyncpg.connect(asyncpg_dsn(pg, database))
    try:
        sums = await raw_windows(conn, agency_id, spans)
        accounts = {r["id"]: r for r in await conn.fetch(BALANCES, agency_id)}
        raw_calls = await conn.fetchrow(
            "SELECT count(*) AS calls, coalesce(sum(duration_seconds), 0) AS seconds FROM call"
            " WHERE agency_id = $1 AND started_at >= $2 AND started_at < $3",
            agency_id,
            spans["now"].start_utc,
            spans["now"].end_utc,
        )
    finally:
        await conn.close()
    zero: dict[str, int] = defaultdict(int)
    clients = {}
    for account_id, account in accounts.items():
        now = sums["now"].get(account_id, zero)
        flags = health_flags(
            HealthInputs(
                suspended=account["status"] == "SUSPENDED",
                balance_seconds=int(account["seconds"]),
                recent_burn_seconds=sums["burn"].get(account_id, zero)["seconds"],
                overage_seconds=now["overage_seconds"],
                seconds=now["seconds"],
                previous_seconds=sums["previous"].get(account_id, zero)["seconds"],
                calls=now["calls"],
                failed_calls=now["failed"],
            ),
            thresholds,
        )
        clients[account_id] = {
            "seconds": now["seconds"],
            "spent_micros": now["spent_micros"],
            "margin_micros": now["spent_micros"] - now["cost_micros"],
            "health": sorted(f.kind.value for f in flags),
        }
    return {
        "clients": clients,
        "total_seconds": sum(c["seconds"] for c in clients.values()),
        "margin_micros": sum(c["margin_micros"] for c in clients.values()),
        "raw_call_rows": int(raw_calls["calls"]),
        "raw_call_seconds": int(raw_calls["seconds"]),
        "rollup_calls": sum(s["calls"] for s in sums["now"].values()),
    }


def check_answer(body: dict[str, Any], want: dict[str, Any], first: int) -> list[str]:
    from domain.money import seconds_to_minutes, to_dollars

    if body.get("errors"):
        return [f"GraphQL errors: {body['errors']}"]
    report = body["data"]["viewer"]["agency"]["report"]
    problems = []

    def same(label: str, got: Any, expected: Any) -> None:
        if str(got) != str(expected):
            problems.append(f"{label}: got {got}, expected {expected}")

    same(
        "totalMinutesUsed vs rollups",
        report["totalMinutesUsed"],
        seconds_to_minutes(want["total_seconds"]),
    )
    same(
        "totalMinutesUsed vs raw call rows",
        report["totalMinutesUsed"],
        seconds_to_minutes(want["raw_call_seconds"]),
    )
    same("calls in rollups vs raw call rows", want["rollup_calls"], want["raw_call_rows"])
    same("usageMargin", report["usageMargin"]["amount"], to_dollars(want["margin_micros"]))
    clients = report["clients"]
    same("totalCount", clients["totalCount"], len(want["clients"]))
    edges = clients["edges"]
    same("page size", len(edges), min(first, len(want["clients"])))
    minutes = [Decimal(e["node"]["minutesUsed"]) for e in edges]
    if minutes != sorted(minutes, reverse=True):
        problems.append("the page is not in descending order of minutes used")
    ranked = sorted((c["seconds"] for c in want["clients"].values()), reverse=True)
    same("the page's minutes", minutes, [seconds_to_minutes(s) for s in ranked[: len(edges)]])
    for edge in edges:
        node = edge["node"]
        account_id = global_key(node["subAccount"]["id"])
        c = want["clients"].get(account_id)
        if c is None:
            problems.append(f"unknown client {account_id}")
            continue
        name = node["subAccount"]["name"]
        same(f"{name} minutesUsed", node["minutesUsed"], seconds_to_minutes(c["seconds"]))
        same(f"{name} spent", node["spent"]["amount"], to_dollars(c["spent_micros"]))
        same(f"{name} usageMargin", node["usageMargin"]["amount"], to_dollars(c["margin_micros"]))
        same(f"{name} health", sorted(f["kind"] for f in node["health"]), c["health"])
    return problems


# ---- measuring over HTTP -------------------------------------------------------------------------


def sequential(
    server: Server, headers: dict[str, str], body: bytes, warmup: int, requests: int
) -> dict[str, Any]:
    statuses: set[int] = set()
    latencies = []
    size = 0
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for _ in range(warmup):
            client.post("/graphql", content=body, headers=headers)
        cpu_before = cpu_by_group(server.process.pid)
        for _ in range(requests):
            started = time.perf_counter()
            response = client.post("/graphql", content=body, headers=headers)
            content = response.content
            latencies.append(time.perf_counter() - started)
            statuses.add(response.status_code if b'"errors"' not in content else -1)
            size = len(content)
        cpu = cpu_delta(cpu_before, cpu_by_group(server.process.pid))
    result = summary_ms(latencies)
    result["server_cpu_ms_per_request"] = round(1000 * cpu["app server"] / requests, 2)
    result["cpu_seconds"] = cpu
    result["statuses"] = sorted(statuses)  # -1: a 200 with GraphQL errors
    result["response_bytes"] = size
    if cpu["other processes"] > OTHER_CPU_WARNING * sum(latencies):
        result["warning"] = f"other processes used {cpu['other processes']} s of CPU"
    return result


async def concurrent(
    url: str, headers: dict[str, str], body: bytes, clients: int, requests: int
) -> dict[str, Any]:
    latencies: list[float] = []
    bad = 0

    async def client_loop(count: int) -> None:
        nonlocal bad
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            await client.post("/graphql", content=body, headers=headers)  # its connection
            for _ in range(count):
                started = time.perf_counter()
                response = await client.post("/graphql", content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200 or b'"errors"' in response.content:
                    bad += 1

    per, extra = divmod(requests, clients)
    started = time.perf_counter()
    await asyncio.gather(*(client_loop(per + (i < extra)) for i in range(clients)))
    elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        **summary_ms(latencies),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "failed": bad,
    }


# ---- raw SQL -------------------------------------------------------------------------------------


async def raw_sql(
    pg: str,
    database: str,
    agency_id: uuid.UUID,
    spans: dict[str, Any],
    warmup: int,
    requests: int,
    call_requests: int,
) -> dict[str, Any]:
    conn = await asyncpg.connect(asyncpg_dsn(pg, database))
    try:
        statement = await conn.prepare(RAW_ROLLUP)
        args = {name: rollup_args(agency_id, w) for name, w in spans.items()}
        for _ in range(warmup):
            for a in args.values():
                await statement.fetch(*a)
        each: dict[str, list[float]] = {name: [] for name in args}
        together = []
        rows = {}
        for _ in range(requests):
            t0 = time.perf_counter()
            for name, a in args.items():
                t1 = time.perf_counter()
                rows[name] = len(await statement.fetch(*a))
                each[name].append(time.perf_counter() - t1)
            together.append(time.perf_counter() - t0)
        result: dict[str, Any] = {
            "rollups_three_windows": summary_ms(together),
            "rollups_by_window": {
                name: {**summary_ms(v), "rows": rows[name]} for name, v in each.items()
            },
        }
        result["alternatives"] = await alternatives(pg, database, conn, agency_id, args, requests)
        calls = await conn.prepare(RAW_CALLS)
        now = spans["now"]
        await calls.fetch(agency_id, now.start_utc, now.end_utc)  # warm the cache once
        spent = []
        for _ in range(call_requests):
            t0 = time.perf_counter()
            found = await calls.fetch(agency_id, now.start_utc, now.end_utc)
            spent.append(time.perf_counter() - t0)
        result["raw_call_table_30_days"] = {**summary_ms(spent), "rows": len(found)}
        plan = await conn.fetch(
            "EXPLAIN (ANALYZE, BUFFERS) " + RAW_CALLS, agency_id, now.start_utc, now.end_utc
        )
        result["raw_call_table_plan"] = [r[0] for r in plan]
        plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + RAW_ROLLUP, *args["now"])
        result["rollups_30_days_plan"] = [r[0] for r in plan]
        return result
    finally:
        await conn.close()


async def alternatives(
    pg: str,
    database: str,
    conn: asyncpg.Connection,
    agency_id: uuid.UUID,
    args: dict[str, tuple[Any, ...]],
    requests: int,
) -> dict[str, Any]:
    """What the same figures would cost read differently (not what the app does): the three
    statements concurrently on three connections; only the columns the report shows, grouped
    by sub-account; all three windows in one pass (whole UTC days only)."""

    async def timed(run: Any) -> dict[str, Any]:
        for _ in range(5):
            await run()
        spent = []
        for _ in range(requests):
            t0 = time.perf_counter()
            await run()
            spent.append(time.perf_counter() - t0)
        return summary_ms(spent)

    out: dict[str, Any] = {}
    others = [await asyncpg.connect(asyncpg_dsn(pg, database)) for _ in range(2)]
    try:
        prepared = [await c.prepare(RAW_ROLLUP) for c in (conn, *others)]

        async def concurrently() -> None:
            await asyncio.gather(
                *(s.fetch(*a) for s, a in zip(prepared, args.values(), strict=True))
            )

        out["three_statements_concurrently"] = await timed(concurrently)
    finally:
        for c in others:
            await c.close()
    lean_now, lean_seconds = await conn.prepare(LEAN_NOW), await conn.prepare(LEAN_SECONDS)

    async def lean() -> None:
        await lean_now.fetch(*args["now"])
        await lean_seconds.fetch(*args["previous"])
        await lean_seconds.fetch(*args["burn"])

    out["lean_three_statements"] = await timed(lean)
    whole = all(a[1] == a[3] and a[2] == a[4] for a in args.values())
    if whole:
        one = await conn.prepare(ONE_PASS)
        one_args = (agency_id, *(x for a in args.values() for x in a[1:3]))

        async def one_pass() -> None:
            await one.fetch(*one_args)

        out["one_pass_filters"] = await timed(one_pass)
    else:
        out["one_pass_filters"] = "skipped: the windows have partial UTC days"
    return out


# ---- in-process ----------------------------------------------------------------------------------


def timed_statements(database: Any, into: list[tuple[str, Any, float]]) -> Any:
    """Listeners timing every statement on both engines (wall time from the cursor's
    execute to its return, the database round trip included); returns a remover."""
    from sqlalchemy import event

    engines = {database.engine.sync_engine, database._read_engine.sync_engine}

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        stack = conn.info.get("bench_started")
        if stack:  # a statement already running when the listeners were added has none
            into.append((statement, parameters, time.perf_counter() - stack.pop()))

    for engine in engines:
        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)

    def remove() -> None:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "after_cursor_execute", after)

    return remove


async def in_process(
    args: argparse.Namespace,
    db_url: str,
    data_dir: Path,
    headers: dict[str, str],
    body: bytes,
    profile: bool,
    agency_id: uuid.UUID,
    spans: dict[str, Any],
) -> dict[str, Any]:
    from agencyhub.app import create_app

    app = create_app(app_settings(db_url, data_dir))
    result: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        database = app.state.services.database
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(3):
                await client.post("/graphql", content=body, headers=headers)  # pools, caches
            result.update(
                await counted_requests(client, database, body, headers, args.count_requests)
            )

            seen_statements: list[tuple[str, Any, float]] = []
            totals = []
            sql_shares = []
            # By the statement's place in the request: the three windows send the same SQL.
            by_place: dict[int, list[float]] = defaultdict(list)
            sent: dict[int, tuple[str, Any]] = {}
            remove = timed_statements(database, seen_statements)
            full_collections = gc.get_stats()[2]["collections"]
            try:
                for _ in range(args.timed_requests):
                    seen_statements.clear()
                    started = time.perf_counter()
                    await client.post("/graphql", content=body, headers=headers)
                    total = time.perf_counter() - started
                    totals.append(total)
                    sql = 0.0
                    place = 0
                    for statement, params, spent in seen_statements:
                        if statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
                            continue
                        if "advisory" in statement or "outbox" in statement:
                            continue
                        sql += spent
                        place += 1
                        by_place[place].append(spent)
                        sent[place] = (statement, params)
                    sql_shares.append(sql)
            finally:
                remove()
            full_collections = gc.get_stats()[2]["collections"] - full_collections
            result["full_gc_collections_per_request"] = round(full_collections / len(totals), 2)
            result["in_process_latency"] = summary_ms(totals)
            result["sql_ms_per_request"] = summary_ms(sql_shares)
            mean_total = sum(totals) / len(totals)
            mean_sql = sum(sql_shares) / len(sql_shares)
            result["sql_share_of_request"] = round(mean_sql / mean_total, 3)
            result["python_ms_per_request_mean"] = round(1000 * (mean_total - mean_sql), 2)
            result["statement_timings"] = [
                {
                    "place": place,
                    "statement": one_line(sent[place][0], 300),
                    "parameters": [one_line(str(p), 60) for p in sent[place][1]][:8],
                    **summary_ms(v),
                }
                for place, v in sorted(by_place.items())
            ]
            if by_place:
                slowest = max(by_place, key=lambda k: sum(by_place[k]))
                statement, params = sent[slowest]
                result["slowest_statement"] = {
                    "place": slowest,
                    "sql": statement,
                    "parameters": [str(p) for p in params],
                    "explain": await explain(database, statement, params),
                }
            result["stages"] = await stages(
                database, agency_id, spans, app.state.services.health, args.stage_runs
            )
            if profile:
                result["profile"] = await profile_requests(args, client, headers, body)
    return result


async def stages(
    database: Any, agency_id: uuid.UUID, spans: dict[str, Any], thresholds: Any, runs: int
) -> list[dict[str, Any]]:
    """The steps of resolvers.reports.agency_report, each run on its own with the app's
    persistence functions (no GraphQL, no HTTP), its statement time measured apart: where the
    Python time of a request goes. Medians of `runs`."""
    from persistence.queries.loaders import balances_in_agency
    from persistence.queries.reports import usage_in_windows
    from persistence.queries.sub_accounts import sub_accounts_page
    from resolvers.reports import MAX_CLIENTS_IN_REPORT, Windows

    seen: list[tuple[str, Any, float]] = []
    timings: dict[str, list[tuple[float, float]]] = defaultdict(list)

    async def step(name: str, run: Any) -> Any:
        seen.clear()
        started = time.perf_counter()
        value = await run()
        total = time.perf_counter() - started
        timings[name].append((total, sum(spent for _, _, spent in seen)))
        return value

    remove = timed_statements(database, seen)
    try:
        for _ in range(runs + 2):
            async with database.read() as conn:
                page = await step(
                    "sub-accounts (1,000 rows -> SubAccount)",
                    lambda c=conn: sub_accounts_page(
                        c, agency_id, None, None, MAX_CLIENTS_IN_REPORT, None
                    ),
                )
                ids = [a.id for a in page.items]
                now_, others = await step(
                    "usage_in_windows, the 3 windows in one statement",
                    lambda c=conn: usage_in_windows(
                        c,
                        agency_id,
                        (spans["now"].start_utc, spans["now"].end_utc),
                        {
                            "previous": (spans["previous"].start_utc, spans["previous"].end_utc),
                            "burn": (spans["burn"].start_utc, spans["burn"].end_utc),
                        },
                    ),
                )
                usage = {"now": now_, **others}
                balances = await step(
                    "balances (a join on the agency)",
                    lambda c=conn, i=ids: balances_in_agency(c, agency_id, i),
                )
            windows_ = Windows(
                usage["now"],
                usage["previous"],
                usage["burn"],
                dict(zip(ids, balances, strict=True)),
                thresholds,
            )

            async def flags(w: Windows = windows_, accounts: list[Any] = page.items) -> None:
                for a in accounts:
                    w.flags(a)

            await step("health flags for 1,000 accounts", flags)
    finally:
        remove()
    rows = []
    for name, values in timings.items():
        values = values[2:]  # the first two runs warm caches
        totals = sorted(t for t, _ in values)
        sqls = sorted(q for _, q in values)
        total = totals[len(totals) // 2]
        sql = sqls[len(sqls) // 2]
        rows.append(
            {
                "step": name,
                "total_ms": round(1000 * total, 2),
                "sql_ms": round(1000 * sql, 2),
                "python_ms": round(1000 * (total - sql), 2),
            }
        )
    return rows


async def explain(database: Any, statement: str, parameters: Any) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of a statement as the app sent it, on a raw asyncpg
    connection of the app's read engine."""
    async with database._read_engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        rows = await driver.fetch("EXPLAIN (ANALYZE, BUFFERS) " + statement, *parameters)
        return [r[0] for r in rows]


async def profile_requests(
    args: argparse.Namespace, client: httpx.AsyncClient, headers: dict[str, str], body: bytes
) -> dict[str, Any]:
    from profile_viewer import profile_posts

    html = RESULTS_DIR / f"report-profile-{args.started}.html"
    return await profile_posts(
        client, headers, body, args.profile_requests, html, args.top, top_agencyhub=20
    )


# ---- main ----------------------------------------------------------------------------------------


async def server_version(pg: str) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(pg, "postgres"))
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def database_exists(pg: str, database: str) -> bool:
    conn = await asyncpg.connect(asyncpg_dsn(pg, "postgres"))
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database))
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sub-accounts", type=int, default=1000, help="the primary included")
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="dataset worker processes")
    parser.add_argument("--time-zone", default="UTC", help="the agency's time zone")
    parser.add_argument("--first", type=int, default=50, help="clients per page (max 100)")
    parser.add_argument("--requests", type=int, default=200, help="measured, one at a time")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests first")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent clients")
    parser.add_argument("--concurrent-requests", type=int, default=200)
    parser.add_argument("--raw-call-requests", type=int, default=5)
    parser.add_argument("--count-requests", type=int, default=3, help="in-process, counted")
    parser.add_argument("--timed-requests", type=int, default=30, help="in-process, SQL timed")
    parser.add_argument("--stage-runs", type=int, default=20, help="in-process, per step")
    parser.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="pyinstrument, in-process (auto: when the p95 target is missed)",
    )
    parser.add_argument("--profile-requests", type=int, default=30)
    parser.add_argument("--top", type=int, default=25, help="rows of the profile tables")
    parser.add_argument("--pg", default=DEFAULT_PG, help="user@host:port of PostgreSQL")
    parser.add_argument("--database", default="agencyhub_bench_report")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    parser.add_argument(
        "--reuse", action="store_true", help="use the dataset kept in --database (implies --keep)"
    )
    parser.add_argument("--output", type=Path, help="JSON results file")
    args = parser.parse_args()
    if not 1 <= args.first <= 100:
        parser.error("--first must be 1..100 (the API's maximum page size)")
    args.started = timestamp()
    tree_at_start = working_tree()  # other people commit meanwhile: the server runs this code
    keep = args.keep or args.reuse
    load_before = loadavg()
    workdir = Path(tempfile.mkdtemp(prefix="agencyhub-bench-report-"))
    server: Server | None = None
    created = False
    kept: dict[str, Any] | None = None
    try:
        pg_version = run_async(lambda: server_version(args.pg))
        db_url = sqlalchemy_url(args.pg, args.database)
        if args.reuse and run_async(lambda: database_exists(args.pg, args.database)):
            kept = run_async(lambda: read_comment(args.pg, args.database))
            if kept is None:
                raise SystemExit(
                    f"{args.database} exists but holds no dataset made by bench/dataset.py;"
                    " run without --reuse to recreate it"
                )
        if kept is None:
            print(f"database {args.database}: recreating and migrating", flush=True)
            run_async(lambda: recreate_database(args.pg, args.database))
            created = True
            migrate(db_url, workdir)
        server = Server(
            "graphql",
            [sys.executable, str(BENCH_DIR / "serve_app.py")],
            app_env(db_url, workdir),
            workdir,
        )
        server.wait_ready()
        if kept is None:
            options = Options.from_args(args)
            t0 = time.monotonic()
            dataset = generate(server.url, args.pg, args.database, options)
            dataset["total_seconds"] = round(time.monotonic() - t0, 1)
            token = dataset.pop("token")
        else:
            dataset = {**kept, "reused": True}
            print(
                f"reusing the dataset in {args.database}: {kept['options']},"
                f" generated at {kept['generated_at']}",
                flush=True,
            )
            if kept["generated_at"][:10] != datetime.now(UTC).date().isoformat():
                print(
                    "  WARNING: generated on another day: the range's last days have no calls",
                    flush=True,
                )

            async def sign_in() -> str:
                async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                    return await login(client, kept["owner_email"])

            token = run_async(sign_in)
        agency_id = uuid.UUID(dataset["agency_id"])
        time_zone = dataset["options"]["time_zone"]
        settings = app_settings(db_url, workdir)
        thresholds = settings.health_thresholds()
        spans = windows(time_zone, thresholds.burn_window_days)
        now = spans["now"]
        variables = {
            "from": now.first.isoformat(),
            "to": now.last.isoformat(),
            "first": args.first,
            "order": {"field": "MINUTES_USED", "direction": "DESC"},
        }
        body = orjson.dumps({"query": REPORT, "variables": variables})
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        print(
            f"report {now.first} .. {now.last} ({time_zone}), first {args.first} clients by"
            " minutes used",
            flush=True,
        )

        want = run_async(lambda: expected(args.pg, args.database, agency_id, spans, thresholds))
        first = httpx.post(server.url + "/graphql", content=body, headers=headers, timeout=120)
        answer = first.json()
        problems = check_answer(answer, want, args.first)
        if first.status_code != 200 or problems:
            raise SystemExit(f"the report is wrong ({first.status_code}): {problems[:5]}")
        report = answer["data"]["viewer"]["agency"]["report"]
        checked = {
            "totalMinutesUsed": report["totalMinutesUsed"],
            "usageMargin": report["usageMargin"]["amount"],
            "totalCount": report["clients"]["totalCount"],
            "raw_call_rows_in_range": want["raw_call_rows"],
            "raw_call_seconds_in_range": want["raw_call_seconds"],
            "health_on_page": sorted(
                {k["kind"] for e in report["clients"]["edges"] for k in e["node"]["health"]}
            ),
        }
        print(
            f"checked: totalMinutesUsed {report['totalMinutesUsed']} (= rollups = raw call rows,"
            f" {want['raw_call_rows']:,} calls), usageMargin {report['usageMargin']['amount']},"
            f" {len(report['clients']['edges'])} of {report['clients']['totalCount']} clients"
            " equal to the raw figures (minutes, spent, margin, health, order)",
            flush=True,
        )

        http = sequential(server, headers, body, args.warmup, args.requests)
        print(
            f"HTTP, {args.requests} sequential requests: p50 {http['p50_ms']} ms,"
            f" p95 {http['p95_ms']} ms, p99 {http['p99_ms']} ms;"
            f" server CPU {http['server_cpu_ms_per_request']} ms/request",
            flush=True,
        )
        if "warning" in http:
            print(f"  WARNING: {http['warning']}: the machine was not idle", flush=True)
        parallel = run_async(
            lambda: concurrent(
                server.url, headers, body, args.concurrency, args.concurrent_requests
            )
        )
        print(
            f"HTTP, {args.concurrency} concurrent clients: p50 {parallel['p50_ms']} ms,"
            f" p95 {parallel['p95_ms']} ms, p99 {parallel['p99_ms']} ms,"
            f" {parallel['requests_per_second']} requests/s, {parallel['failed']} failed",
            flush=True,
        )
        server.stop()
        server = None

        raw = run_async(
            lambda: raw_sql(
                args.pg,
                args.database,
                agency_id,
                spans,
                args.warmup,
                args.requests,
                args.raw_call_requests,
            )
        )
        three = raw["rollups_three_windows"]
        calls = raw["raw_call_table_30_days"]
        print(
            f"raw SQL, the three rollup aggregates (asyncpg, prepared): p50 {three['p50_ms']} ms,"
            f" p95 {three['p95_ms']} ms",
            flush=True,
        )
        for name, row in raw["rollups_by_window"].items():
            print(f"    {name:<9} p50 {row['p50_ms']:7.2f} ms  ({row['rows']} rows)")
        for name, row in raw["alternatives"].items():
            if isinstance(row, dict):
                print(f"    alternative, {name}: p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms")
        print(
            f"raw SQL, the 30-day aggregate over the call table: p50 {calls['p50_ms']} ms"
            f" ({args.raw_call_requests} runs)",
            flush=True,
        )

        missed = http["p95_ms"] > TARGET_P95_MS
        profile = args.profile == "always" or (args.profile == "auto" and missed)
        found = run_async(
            lambda: in_process(args, db_url, workdir, headers, body, profile, agency_id, spans)
        )
        print(
            f"in-process: {found['statements_per_request']} SQL statements per request besides"
            " transaction control:"
        )
        for row in found["statement_timings"]:
            print(
                f"  #{row['place']} p50 {row['p50_ms']:7.2f} ms  {row['statement'][:110]}"
                f"  {row['parameters'][:3]}"
            )
        print(
            f"in-process: {found['in_process_latency']['p50_ms']} ms per request (p50), of which"
            f" SQL {found['sql_ms_per_request']['p50_ms']} ms (p50;"
            f" {found['sql_share_of_request']:.0%} of the mean), Python"
            f" ≈ {found['python_ms_per_request_mean']} ms"
        )
        print("in-process, the resolver's steps on their own (median):")
        for row in found["stages"]:
            print(
                f"  {row['total_ms']:8.2f} ms = SQL {row['sql_ms']:7.2f} + Python"
                f" {row['python_ms']:7.2f}  {row['step']}"
            )
        if "slowest_statement" in found:
            print("EXPLAIN (ANALYZE, BUFFERS) of the slowest statement:")
            for line in found["slowest_statement"]["explain"]:
                print(f"    {line}")
        if profile:
            print(found["profile"]["text"])
            print("self time by layer:")
            for row in found["profile"]["layers_self"]:
                print(f"  {row['percent']:5.1f}%  {row['layer']}")
        load_after = loadavg()

        statements = max(found["statements_per_request"])
        ratio = http["p50_ms"] / three["p50_ms"] if three["p50_ms"] else None
        targets = {
            "p95_ms": {"target": TARGET_P95_MS, "measured": http["p95_ms"], "met": not missed}
        }
        print()
        print(f"{'':<44}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
        for label, row in (
            ("GraphQL over HTTP, sequential", http),
            (f"GraphQL over HTTP, {args.concurrency} clients", parallel),
            ("GraphQL in-process (ASGI)", found["in_process_latency"]),
            ("  of which SQL (in-process)", found["sql_ms_per_request"]),
            ("raw SQL: the 3 rollup aggregates", three),
            ("raw SQL: 30 days over the call table", calls),
        ):
            print(f"{label:<44}{row['p50_ms']:>9}{row['p95_ms']:>9}{row['p99_ms']:>9}")
        print(f"SQL statements per request: {statements}")
        if ratio:
            print(f"GraphQL p50 / raw rollup SQL p50: {ratio:.1f}x")
        verdict = "met" if not missed else "MISSED"
        print(f"target p95 <= {TARGET_P95_MS} ms: {http['p95_ms']} {verdict}")
        print(f"load average before {load_before}, after {load_after}")

        if profile:
            found["profile"].pop("text")  # printed above; the HTML report has it all
        result = {
            "benchmark": "report",
            "started_at": args.started,
            "machine": machine_info(pg_version),
            "working_tree_at_start": tree_at_start,
            "working_tree": working_tree(),
            "settings": {k: v for k, v in vars(args).items() if k not in ("output", "started")},
            "dataset": dataset,
            "range": {
                name: {
                    "from": w.first,
                    "to": w.last,
                    "start_utc": w.start_utc,
                    "end_utc": w.end_utc,
                }
                for name, w in spans.items()
            },
            "query": REPORT,
            "variables": variables,
            "checked": checked,
            "http": http,
            "http_concurrent": parallel,
            "raw_sql": raw,
            "raw_sql_query": " ".join(RAW_ROLLUP.split()),
            "raw_call_query": " ".join(RAW_CALLS.split()),
            "statements_per_request": statements,
            "in_process": found,
            "ratio_graphql_p50_to_raw_rollups_p50": round(ratio, 2) if ratio else None,
            "targets": targets,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        }
        output = args.output or RESULTS_DIR / f"report-{args.started}.json"
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {output}")
        return 0 if http["statuses"] == [200] and parallel["failed"] == 0 else 1
    except BaseException:
        if server is not None:
            print(f"--- server log (tail) ---\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        if server is not None:
            server.stop()
        if (created or kept is not None) and not keep:
            run_async(lambda: drop_database(args.pg, args.database))
        elif created or args.reuse:
            print(f"database {args.database} kept")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
