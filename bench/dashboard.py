"""The Account Manager's client list for 500 sub-accounts: latency over HTTP, SQL statements per
request, and the raw SQL time of the same data.

    .venv/bin/python bench/dashboard.py [--requests 200] [--warmup 20] [--profile auto]

Creates a fresh database (agencyhub_bench_dashboard), migrates it and starts the app in one
uvicorn process (bench/serve_app.py). Signs up one agency on "Agency Unlimited" through the
API, then inserts 499 secondaries directly through persistence (agencies.add_sub_account,
with markups of 0-40 % and a different BASIC markup for every third), PREMIUM and BASIC
minutes for two thirds of them (PLAN_GRANT movements through persistence.ledger.apply, with
their ledger entries), auto allocation for every seventh, and suspends every tenth
(agencies.update_sub_account: status, suspended_at, note). Checks the first answer field by
field against the database (wallets and prices recomputed with domain.pricing) and that
`agencyhub check-ledger` passes.

Then sends the DASHBOARD query of tests/api/test_account_manager.py (subAccounts(first: 500))
`--requests` times in a row, one at a time, after `--warmup` unmeasured ones, with one
keep-alive connection: median, p95, p99 and the server's CPU per request. Next to it, the same
number of executions of one prepared asyncpg query joining sub_account, balance and
auto_allocation for the agency (the data the list shows). Then counts the SQL statements of
one request in-process (create_app, a before_cursor_execute listener on both engines; BEGIN,
COMMIT, ROLLBACK and the outbox relay's statements left out), times the list in-process with
fewer fields per node (where the time goes) and with Python's cyclic garbage collector off or
frozen after start-up (diagnostics), and, with `--profile auto` (the default) when the p95
target is missed, profiles `--profile-requests` requests in-process with pyinstrument.
Targets: <= 5 statements besides transaction control, p95 <= 100 ms.

Prints a table, writes bench/results/dashboard-<timestamp>.json, drops the database.
Needs PostgreSQL (`--pg`, default postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from _account_manager import (
    OTHER_CPU_WARNING,
    counted_requests,
    cpu_by_group,
    cpu_delta,
    global_key,
    sign_up_on_plan,
    summary_ms,
    working_tree,
)
from _common import (
    BENCH_DIR,
    BIN,
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
from viewer_http import Server

PLAN = "Agency Unlimited"
SECONDARIES = 499
TARGET_STATEMENTS = 5
TARGET_P95_MS = 100.0

# As DASHBOARD in tests/api/test_account_manager.py.
DASHBOARD = """{ viewer { agency { subAccounts(first: 500) { totalCount edges { node {
  id name status balances { tier seconds } walletBalance { amount }
  clientPricePerMinute(tier: PREMIUM) { amount } markupPercent(tier: BASIC)
  banner { active note } autoAllocation { enabled } nextBillingDate } } } } } }"""
BODY = orjson.dumps({"query": DASHBOARD})

# The same list with fewer fields per node, from the cheapest up to the full DASHBOARD: where
# the time of a 500-node answer goes (measured in-process).
NODE_FIELDS = (
    ("id", "id"),
    (
        "+ name status markupPercent banner nextBillingDate",
        "id name status markupPercent(tier: BASIC) banner { active note } nextBillingDate",
    ),
    (
        "+ clientPricePerMinute (sync, computed)",
        "id name status markupPercent(tier: BASIC) banner { active note } nextBillingDate"
        " clientPricePerMinute(tier: PREMIUM) { amount }",
    ),
    (
        "+ balances (async, DataLoader)",
        "id name status markupPercent(tier: BASIC) banner { active note } nextBillingDate"
        " clientPricePerMinute(tier: PREMIUM) { amount } balances { tier seconds }",
    ),
    (
        "+ walletBalance (async, DataLoader)",
        "id name status markupPercent(tier: BASIC) banner { active note } nextBillingDate"
        " clientPricePerMinute(tier: PREMIUM) { amount } balances { tier seconds }"
        " walletBalance { amount }",
    ),
    (
        "+ autoAllocation (async, DataLoader) = DASHBOARD",
        "id name status markupPercent(tier: BASIC) banner { active note } nextBillingDate"
        " clientPricePerMinute(tier: PREMIUM) { amount } balances { tier seconds }"
        " walletBalance { amount } autoAllocation { enabled }",
    ),
)


def list_query(node_fields: str) -> bytes:
    return orjson.dumps(
        {
            "query": "{ viewer { agency { subAccounts(first: 500) { totalCount edges { node { "
            + node_fields
            + " } } } } } }"
        }
    )


# The data the list shows, in one statement: every live sub-account of the agency with its
# balances and auto allocation, in the list's order.
RAW_SQL = """
SELECT s.id, s.name, s.status, s.markup_basic_bp, s.markup_premium_bp, s.suspension_note,
       s.suspended_at, s.subscription_start_date, b.tier, b.seconds, a.enabled
FROM sub_account s
JOIN balance b ON b.sub_account_id = s.id
LEFT JOIN auto_allocation a ON a.sub_account_id = s.id
WHERE s.agency_id = $1 AND s.status IN ('ACTIVE', 'SUSPENDED')
ORDER BY s.created_at, s.id, b.tier
"""


# ---- the dataset -----------------------------------------------------------------------------


async def seed_secondaries(db_url: str, agency_gid: str) -> dict[str, int]:
    """499 secondaries with balances, auto allocations and suspensions, straight into the
    database through persistence (one transaction)."""
    from sqlalchemy import insert
    from sqlalchemy.ext.asyncio import create_async_engine

    from domain.agency import SubAccountKind
    from domain.ledger import LedgerKind, Movement
    from domain.money import Tier
    from persistence import agencies, ledger
    from persistence.queries.sub_accounts import auto_allocation_t

    agency_id = global_key(agency_gid)
    now = dt.datetime.now(dt.UTC)
    made = {"secondaries": 0, "with_minutes": 0, "suspended": 0, "auto_allocation": 0}
    engine = create_async_engine(db_url)
    try:
        async with engine.begin() as conn:
            movements = []
            for n in range(SECONDARIES):
                created = now + dt.timedelta(microseconds=n + 1)  # the list's order
                sub_account = await agencies.add_sub_account(
                    conn,
                    agency_id,
                    SubAccountKind.SECONDARY,
                    f"Client {n:03d}",
                    f"client{n:03d}@dashboard.example",
                    now.date() - dt.timedelta(days=n % 365),
                    0,
                    created,
                    markup_bp=(n % 9) * 500,
                )
                made["secondaries"] += 1
                if n % 3 == 0:
                    await agencies.update_sub_account(
                        conn, sub_account.id, markup_basic_bp=(n % 9) * 500 + 250
                    )
                if n % 3 != 2:
                    for tier, minutes in ((Tier.PREMIUM, 30 + n), (Tier.BASIC, 7 * n)):
                        if minutes:
                            movements.append(
                                Movement(
                                    agency_id,
                                    sub_account.id,
                                    tier,
                                    minutes * 60 + n % 60,
                                    LedgerKind.PLAN_GRANT,
                                    f"bench:dashboard:{n}",
                                )
                            )
                    made["with_minutes"] += 1
                if n % 7 == 0:
                    await conn.execute(
                        insert(auto_allocation_t).values(
                            sub_account_id=sub_account.id,
                            enabled=n % 14 == 0,
                            basic_minutes=100,
                            premium_minutes=50,
                            updated_at=now,
                        )
                    )
                    made["auto_allocation"] += 1
                if n % 10 == 9:
                    await agencies.update_sub_account(
                        conn,
                        sub_account.id,
                        status="SUSPENDED",
                        suspended_at=now,
                        suspension_note=f"Invoice {n} is 30+ days overdue",
                    )
                    made["suspended"] += 1
            await ledger.apply(conn, movements, now)
    finally:
        await engine.dispose()
    return made


async def table_counts(pg: str, database: str) -> dict[str, int]:
    conn = await asyncpg.connect(asyncpg_dsn(pg, database))
    try:
        counts = {}
        for table in ("agency", "sub_account", "balance", "ledger_entry", "auto_allocation"):
            counts[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
        counts["suspended"] = int(
            await conn.fetchval("SELECT count(*) FROM sub_account WHERE status = 'SUSPENDED'")
        )
        return counts
    finally:
        await conn.close()


# ---- checking the answer -----------------------------------------------------------------------


async def expected_nodes(pg: str, database: str, agency_gid: str, prices: Any) -> list[dict]:
    """The list as the database has it, in the API's shape (nextBillingDate left out)."""
    from domain.money import Tier, to_dollars
    from domain.pricing import (
        bp_to_percent,
        client_price_per_minute,
        to_micros,
        value_of_seconds,
    )
    from resolvers.global_id import to_global_id

    conn = await asyncpg.connect(asyncpg_dsn(pg, database))
    try:
        rows = await conn.fetch(RAW_SQL, global_key(agency_gid))
    finally:
        await conn.close()
    nodes: dict[Any, dict[str, Any]] = {}
    for r in rows:
        node = nodes.setdefault(
            r["id"],
            {
                "id": to_global_id("SubAccount", r["id"]),
                "name": r["name"],
                "status": r["status"],
                "balances": {},
                "markups": {"BASIC": r["markup_basic_bp"], "PREMIUM": r["markup_premium_bp"]},
                "banner": {
                    "active": r["status"] == "SUSPENDED",
                    "note": r["suspension_note"] if r["status"] == "SUSPENDED" else None,
                },
                "autoAllocation": {"enabled": bool(r["enabled"])},
            },
        )
        node["balances"][r["tier"]] = r["seconds"]

    def price(node: dict[str, Any], tier: str) -> Fraction:
        return client_price_per_minute(prices.base_per_minute(Tier(tier)), node["markups"][tier])

    def dollars(amount: Fraction) -> str:
        return str(to_dollars(to_micros(amount)))

    shaped = []
    for node in nodes.values():
        wallet = sum(
            (value_of_seconds(s, price(node, t)) for t, s in node["balances"].items()),
            Fraction(0),
        )
        shaped.append(
            {
                "id": node["id"],
                "name": node["name"],
                "status": node["status"],
                "balances": [{"tier": t.value, "seconds": node["balances"][t.value]} for t in Tier],
                "walletBalance": {"amount": dollars(wallet)},
                "clientPricePerMinute": {"amount": dollars(price(node, "PREMIUM"))},
                "markupPercent": str(bp_to_percent(node["markups"]["BASIC"])),
                "banner": node["banner"],
                "autoAllocation": node["autoAllocation"],
            }
        )
    return shaped


def check_answer(body: dict[str, Any], expected: list[dict[str, Any]]) -> list[str]:
    problems = []
    if body.get("errors"):
        problems.append(f"GraphQL errors: {body['errors']}")
        return problems
    connection = body["data"]["viewer"]["agency"]["subAccounts"]
    if connection["totalCount"] != SECONDARIES + 1:
        problems.append(f"totalCount {connection['totalCount']}")
    nodes = [e["node"] for e in connection["edges"]]
    if len(nodes) != SECONDARIES + 1:
        problems.append(f"{len(nodes)} edges")
    for got, want in zip(nodes, expected, strict=False):
        trimmed = {k: got[k] for k in want}
        if trimmed != want:
            problems.append(f"node differs: got {trimmed}, expected {want}")
            break
        if not got.get("nextBillingDate"):
            problems.append(f"no nextBillingDate: {got}")
            break
    return problems


# ---- measuring -------------------------------------------------------------------------------


def http_latencies(
    server: Server, token: str, warmup: int, requests: int
) -> tuple[list[float], dict[str, float], list[int], int]:
    """(seconds per request, CPU seconds by process group, statuses seen, response bytes)."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    statuses = set()
    size = 0
    latencies = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(warmup):
            client.post("/graphql", content=BODY, headers=headers)
        cpu_before = cpu_by_group(server.process.pid)
        for _ in range(requests):
            started = time.perf_counter()
            response = client.post("/graphql", content=BODY, headers=headers)
            body = response.content
            latencies.append(time.perf_counter() - started)
            statuses.add(response.status_code)
            size = len(body)
        cpu = cpu_delta(cpu_before, cpu_by_group(server.process.pid))
    return latencies, cpu, sorted(statuses), size


async def raw_sql_latencies(
    pg: str, database: str, agency_gid: str, warmup: int, requests: int
) -> tuple[list[float], int]:
    conn = await asyncpg.connect(asyncpg_dsn(pg, database))
    try:
        statement = await conn.prepare(RAW_SQL)
        agency_id = global_key(agency_gid)
        for _ in range(warmup):
            await statement.fetch(agency_id)
        latencies = []
        rows = 0
        for _ in range(requests):
            started = time.perf_counter()
            rows = len(await statement.fetch(agency_id))
            latencies.append(time.perf_counter() - started)
        return latencies, rows
    finally:
        await conn.close()


async def in_process(
    args: argparse.Namespace, db_url: str, data_dir: Path, token: str, profile: bool
) -> dict[str, Any]:
    """Statements per request (and optionally a pyinstrument profile), without uvicorn."""
    from agencyhub.app import create_app

    app = create_app(app_settings(db_url, data_dir))
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    result: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        database = app.state.services.database
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await client.post("/graphql", content=BODY, headers=headers)  # pools, caches
            result.update(
                await counted_requests(client, database, BODY, headers, args.count_requests)
            )
            timings = []
            for _ in range(args.count_requests):
                started = time.perf_counter()
                await client.post("/graphql", content=BODY, headers=headers)
                timings.append(time.perf_counter() - started)
            result["in_process_latency"] = summary_ms(timings)
            variants = []
            for label, fields in NODE_FIELDS:
                body = list_query(fields)
                await client.post("/graphql", content=body, headers=headers)
                spent = []
                for _ in range(args.variant_requests):
                    started = time.perf_counter()
                    response = await client.post("/graphql", content=body, headers=headers)
                    spent.append(time.perf_counter() - started)
                    if b'"errors"' in response.content:
                        raise RuntimeError(f"variant {label!r} failed: {response.text[:300]}")
                variants.append({"fields": label, **summary_ms(spent)})
            result["by_node_fields"] = variants
            result["garbage_collector"] = await gc_variants(args, client, headers)
            if profile:
                result["profile"] = await profile_requests(args, client, headers)
    return result


async def gc_variants(
    args: argparse.Namespace, client: httpx.AsyncClient, headers: dict[str, str]
) -> list[dict[str, Any]]:
    """The full list with Python's cyclic garbage collector as it is, switched off, and with
    everything alive after start-up frozen (gc.freeze()); full (generation 2) collections
    counted. Diagnostic only: the collector is left as it was found."""
    rows = []
    for label in ("as configured", "collector off", "gc.freeze() after start-up"):
        if label == "collector off":
            gc.disable()
        elif label.startswith("gc.freeze"):
            gc.collect()
            gc.freeze()
        spent = []
        full_before = gc.get_stats()[2]["collections"]
        try:
            for _ in range(args.gc_requests):
                started = time.perf_counter()
                await client.post("/graphql", content=BODY, headers=headers)
                spent.append(time.perf_counter() - started)
        finally:
            gc.enable()
            gc.unfreeze()
        full = gc.get_stats()[2]["collections"] - full_before
        rows.append(
            {
                "garbage_collector": label,
                "full_collections_per_request": round(full / args.gc_requests, 2),
                **summary_ms(spent),
            }
        )
    return rows


async def profile_requests(
    args: argparse.Namespace, client: httpx.AsyncClient, headers: dict[str, str]
) -> dict[str, Any]:
    from profile_viewer import profile_posts

    html = RESULTS_DIR / f"dashboard-profile-{args.started}.html"
    return await profile_posts(client, headers, BODY, args.profile_requests, html, args.top)


def check_ledger(db_url: str, workdir: Path) -> int:
    return subprocess.run(
        [str(BIN / "agencyhub"), "check-ledger"],
        env=app_env(db_url, workdir),
        cwd=workdir,
        capture_output=True,
    ).returncode


# ---- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200, help="measured, one at a time")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests first")
    parser.add_argument("--count-requests", type=int, default=5, help="in-process, counted")
    parser.add_argument(
        "--variant-requests", type=int, default=20, help="in-process, per field selection"
    )
    parser.add_argument(
        "--gc-requests", type=int, default=30, help="in-process, per garbage collector setting"
    )
    parser.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="pyinstrument, in-process (auto: when the p95 target is missed)",
    )
    parser.add_argument("--profile-requests", type=int, default=30)
    parser.add_argument("--top", type=int, default=25, help="rows of the profile tables")
    parser.add_argument("--pg", default=DEFAULT_PG, help="user@host:port of PostgreSQL")
    parser.add_argument("--database", default="agencyhub_bench_dashboard")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--output", type=Path, help="JSON results file")
    args = parser.parse_args()

    args.started = timestamp()
    load_before = loadavg()
    workdir = Path(tempfile.mkdtemp(prefix="agencyhub-bench-dashboard-"))
    server: Server | None = None
    database_created = False
    try:
        print(f"database {args.database}: recreating and migrating", flush=True)
        pg_version = run_async(lambda: recreate_database(args.pg, args.database))
        database_created = True
        db_url = sqlalchemy_url(args.pg, args.database)
        migrate(db_url, workdir)
        prices = app_settings(db_url, workdir).price_book()
        server = Server(
            "graphql",
            [sys.executable, str(BENCH_DIR / "serve_app.py")],
            app_env(db_url, workdir),
            workdir,
        )
        server.wait_ready()

        async def sign_up() -> Any:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                return await sign_up_on_plan(
                    client, "Dashboard Bench", "dashboard@example.com", PLAN
                )

        t0 = time.monotonic()
        agency = run_async(sign_up)
        made = run_async(lambda: seed_secondaries(db_url, agency.agency_gid))
        seed_seconds = time.monotonic() - t0
        counts = run_async(lambda: table_counts(args.pg, args.database))
        ledger_code = check_ledger(db_url, workdir)
        print(f"seeded in {seed_seconds:.1f}s: {made}; tables {counts}", flush=True)
        if ledger_code != 0:
            raise SystemExit("check-ledger failed after seeding")

        expected = run_async(
            lambda: expected_nodes(args.pg, args.database, agency.agency_gid, prices)
        )
        first = httpx.post(
            server.url + "/graphql",
            content=BODY,
            headers={"content-type": "application/json", "authorization": f"Bearer {agency.token}"},
            timeout=30,
        )
        problems = check_answer(first.json(), expected)
        if first.status_code != 200 or problems:
            raise SystemExit(f"the list is wrong ({first.status_code}): {problems[:3]}")
        print(
            f"checked: {SECONDARIES + 1} nodes, each equal to the database's figures"
            f" ({len(first.content):,} bytes)",
            flush=True,
        )

        latencies, server_cpu, statuses, size = http_latencies(
            server, agency.token, args.warmup, args.requests
        )
        http = summary_ms(latencies)
        http["server_cpu_ms_per_request"] = round(
            1000 * server_cpu["app server"] / args.requests, 2
        )
        http["cpu_seconds"] = server_cpu
        if server_cpu["other processes"] > OTHER_CPU_WARNING * sum(latencies):
            print(
                f"  WARNING: other processes used {server_cpu['other processes']} s of CPU"
                " during the run: the machine was not idle",
                flush=True,
            )
        http["statuses"] = statuses
        http["response_bytes"] = size
        print(
            f"HTTP, {args.requests} sequential requests: p50 {http['p50_ms']} ms,"
            f" p95 {http['p95_ms']} ms, p99 {http['p99_ms']} ms;"
            f" server CPU {http['server_cpu_ms_per_request']} ms/request",
            flush=True,
        )
        server.stop()
        server = None

        raw_latencies, raw_rows = run_async(
            lambda: raw_sql_latencies(
                args.pg, args.database, agency.agency_gid, args.warmup, args.requests
            )
        )
        raw = summary_ms(raw_latencies)
        raw["rows"] = raw_rows
        print(
            f"raw SQL (one prepared asyncpg query, {raw_rows} rows): p50 {raw['p50_ms']} ms,"
            f" p95 {raw['p95_ms']} ms",
            flush=True,
        )

        missed_p95 = http["p95_ms"] > TARGET_P95_MS
        profile = args.profile == "always" or (args.profile == "auto" and missed_p95)
        found = run_async(lambda: in_process(args, db_url, workdir, agency.token, profile))
        statements = max(found["statements_per_request"])
        print(
            f"in-process: {found['statements_per_request']} SQL statements per request"
            " besides transaction control:"
        )
        for statement in found["statements"]:
            print(f"    {statement[:150]}")
        print("in-process median by the fields asked for each of the 500 nodes:")
        for row in found["by_node_fields"]:
            print(f"  {row['p50_ms']:8.1f} ms  {row['fields']}")
        print("in-process, the full list by garbage collector setting (p50 / p95):")
        for row in found["garbage_collector"]:
            print(
                f"  {row['p50_ms']:8.1f} / {row['p95_ms']:6.1f} ms  {row['garbage_collector']}"
                f" ({row['full_collections_per_request']} full collections per request)"
            )
        if profile:
            print(found["profile"]["text"])
            print("self time by layer:")
            for row in found["profile"]["layers_self"]:
                print(f"  {row['percent']:5.1f}%  {row['layer']}")
        load_after = loadavg()

        targets = {
            "statements": {
                "target": TARGET_STATEMENTS,
                "measured": statements,
                "met": statements <= TARGET_STATEMENTS,
            },
            "p95_ms": {"target": TARGET_P95_MS, "measured": http["p95_ms"], "met": not missed_p95},
        }
        print()
        print(f"{'':<34}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
        print(
            f"{'GraphQL over HTTP (uvicorn)':<34}{http['p50_ms']:>9}{http['p95_ms']:>9}"
            f"{http['p99_ms']:>9}"
        )
        print(
            f"{'GraphQL in-process (ASGI)':<34}{found['in_process_latency']['p50_ms']:>9}"
            f"{found['in_process_latency']['p95_ms']:>9}{found['in_process_latency']['p99_ms']:>9}"
        )
        print(
            f"{'raw SQL (asyncpg, one query)':<34}{raw['p50_ms']:>9}{raw['p95_ms']:>9}"
            f"{raw['p99_ms']:>9}"
        )
        for name, target in targets.items():
            verdict = "met" if target["met"] else "MISSED"
            print(f"target {name} <= {target['target']}: {target['measured']} {verdict}")
        print(f"load average before {load_before}, after {load_after}")

        if profile:
            found["profile"].pop("text")  # printed above; the HTML report has it all
        result = {
            "benchmark": "dashboard",
            "started_at": args.started,
            "machine": machine_info(pg_version),
            "working_tree": working_tree(),
            "settings": {
                k: v
                for k, v in vars(args).items()
                if k not in ("output", "started", "keep_database")
            },
            "dataset": {"made": made, "tables": counts},
            "seed_seconds": round(seed_seconds, 1),
            "query": DASHBOARD,
            "http": http,
            "raw_sql": raw,
            "raw_sql_query": " ".join(RAW_SQL.split()),
            "in_process": found,
            "targets": targets,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        }
        output = args.output or RESULTS_DIR / f"dashboard-{args.started}.json"
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {output}")
        return 0 if statuses == [200] else 1
    except BaseException:
        if server is not None:
            print(f"--- server log (tail) ---\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        if server is not None:
            server.stop()
        if database_created and not args.keep_database:
            run_async(lambda: drop_database(args.pg, args.database))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
