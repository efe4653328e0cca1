"""`transferMinutes` through the API under concurrency (wrk), the ledger's invariants checked
afterwards, next to the same write transaction and a raw single-row UPDATE from asyncpg and
pgbench on the same database. BENCHMARKS.md, "transferMinutes under concurrency".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import re
import shutil
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import asyncpg
import harness
import httpx
from harness import Server, Session

TARGET_TRANSFERS_PER_SECOND = 500
PLAN = "Agency Unlimited"
PLAN_MINUTES = 2000  # PREMIUM minutes the plan grants the primary at sign-up
MARKUPS = tuple(str(5 * n) for n in range(9))  # percent, one per secondary
SEED_MINUTES, PRIMARY_KEEPS = 1000, 1000  # per secondary; the primary's after seeding
MIN_MINUTES, MAX_MINUTES = 1, 5  # per transfer
RANDOM_SEED = 20261123
PROFILE_SECONDS, SQL_WARMUP_SECONDS = 8, 2
COUNTS = ("transfers", "insufficient", "graphql_errors", "other_user_errors", "non_200")

TRANSFER = """mutation($i: TransferMinutesInput!) { transferMinutes(input: $i) {
  transfer { id sentSeconds receivedSeconds } userErrors { code } } }"""
LOAD_MUTATION = " ".join(TRANSFER.split())  # on one line, embedded in the Lua script
# Each request moves MIN..MAX minutes between a random ordered pair of IDS; a response counts
# as a transfer only when `transfer` is not null.
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. TOKEN
function init(args) math.randomseed(SEED + 7919 * thread_no) end
transfers, insufficient, graphql_errors, other_user_errors, non_200 = 0, 0, 0, 0, 0
sample = ""
function request()
  local a = math.random(#IDS)
  local b = math.random(#IDS - 1)
  if b >= a then b = b + 1 end
  local minutes = math.random(MIN_MINUTES, MAX_MINUTES)
  local body = PREFIX .. IDS[a] .. '","toId":"' .. IDS[b]
    .. '","tier":"PREMIUM","minutes":"' .. minutes .. '"}}}'
  return wrk.format(nil, nil, nil, body)
end
function response(status, headers, body)
  local kind = "other_user_errors"
  if status ~= 200 then kind = "non_200"
  elseif string.find(body, '"errors"', 1, true) then kind = "graphql_errors"
  elseif string.find(body, '"transfer":{', 1, true) then kind = "transfers"
  elseif string.find(body, '"INSUFFICIENT_MINUTES"', 1, true) then kind = "insufficient"
  end
  _G[kind] = _G[kind] + 1
  if sample == "" and kind ~= "transfers" and kind ~= "insufficient" then
    sample = status .. " " .. string.sub(body, 1, 300)
  end
end
function done(summary, latency, requests)
  for _, name in ipairs(COUNTS) do report(name, total(name)) end
  report("sample", first("sample"))
end
"""


async def set_up(client: httpx.AsyncClient, db_url: str) -> dict[str, Any]:
    """The agency, extra PREMIUM minutes for its primary (a PLAN_GRANT with its ledger entry,
    written directly), 9 secondaries each seeded by a transfer from the primary."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from domain.ledger import LedgerKind, Movement
    from domain.money import Tier
    from persistence import ledger

    agency = await harness.sign_up_on_plan(client, "Transfers Bench", "transfers@example.com", PLAN)
    top_up = max(0, SEED_MINUTES * len(MARKUPS) + PRIMARY_KEEPS - PLAN_MINUTES)
    engine = create_async_engine(db_url)
    async with engine.begin() as conn:
        ids = harness.global_key(agency.agency_gid), harness.global_key(agency.primary_gid)
        grant = Movement(*ids, Tier.PREMIUM, top_up * 60, LedgerKind.PLAN_GRANT, "bench:top-up")
        await ledger.apply(conn, [grant], dt.datetime.now(dt.UTC))
    await engine.dispose()
    ids = [agency.primary_gid]
    for n, markup in enumerate(MARKUPS):
        name, email = f"Client {n} ({markup} %)", f"client{n}@transfers.example"
        made = await harness.create_sub_account(
            client, agency.token, name, email, markupPercent=markup
        )
        await harness.transfer(client, agency.token, ids[0], made, SEED_MINUTES, "PREMIUM")
        ids.append(made)
    return {"token": agency.token, "ids": ids, "top_up_minutes": top_up}


async def statements_of_one_transfer(session: Session, token: str, ids: list[str]) -> dict:
    """The SQL one transferMinutes request sends, and what the outbox relay then sends for it,
    counted in-process."""
    async with harness.in_process_app(session.url, session.workdir) as (client, services):
        variables = {"i": {"fromId": ids[0], "toId": ids[1], "tier": "PREMIUM", "minutes": "1"}}
        await harness.gql(client, TRANSFER, variables, token)  # first use: pools, caches
        await asyncio.sleep(1.0)  # the relay publishes that one's events
        with harness.statements_of(services.database) as seen:
            body = await harness.gql(client, TRANSFER, variables, token)
            await asyncio.sleep(1.0)  # and this one's: its statements are listed apart
    if not body["data"]["transferMinutes"]["transfer"]:
        raise RuntimeError(f"the counted transfer failed: {body}")
    listed = {
        k: [harness.one_line(s.sql) for s in seen if s.kind == k]
        for k in ("request", "control", "relay")
    }
    return {
        "request_statements": len(listed["request"]),
        "request": listed["request"],
        "transaction_control_seen_by_listener": listed["control"],
        "relay_statements_after_one_transfer": len(listed["relay"]),
        "relay": listed["relay"],
    }


# ---- the load ------------------------------------------------------------------------------------

PG_STATS = """
SELECT d.xact_commit, d.xact_rollback, d.tup_inserted, d.tup_updated, d.deadlocks,
       w.wal_records, w.wal_bytes, w.wal_write, w.wal_sync
FROM pg_stat_database d, pg_stat_wal w WHERE d.datname = current_database()
"""


def run_wrk(server: Server, script: Path, seconds: int, connections: int) -> dict[str, Any]:
    run = harness.wrk(server.url + "/graphql", script, seconds, connections)
    lua = run.pop("lua")
    run["counts"] = {name: lua[name] for name in COUNTS}
    run["sample_unexpected_response"] = lua.get("sample")
    run["transfers_per_second"] = round(run["counts"]["transfers"] / run["seconds"], 1)
    return run


async def database_counters(session: Session) -> dict[str, int]:
    async with session.connect() as conn:
        found = dict(await conn.fetchrow(PG_STATS))
        found["transfers"] = await conn.fetchval("SELECT count(*) FROM minute_transfer")
    return {k: int(v) for k, v in found.items()}


def measure_load(session: Session, server: Server, script: Path, args: Any) -> dict[str, Any]:
    """The warm-up, then the measured run with CPU and PostgreSQL's counters around it."""
    warmup = run_wrk(server, script, args.warmup, args.connections) if args.warmup else None
    time.sleep(args.stats_settle)  # backends flush their statistics when idle
    before = harness.run_async(lambda: database_counters(session))
    with harness.cpu_used({"app server": [server.process.pid]}) as cpu:
        run = run_wrk(server, script, args.duration, args.connections)
    time.sleep(args.stats_settle)
    after = harness.run_async(lambda: database_counters(session))
    committed = after.pop("transfers") - before.pop("transfers")
    delta = {k: after[k] - before[k] for k in after}
    return {
        "warmup": warmup,
        "run": run,
        "cpu_seconds": cpu,
        "server_cpu_ms_per_request": (
            round(1000 * cpu["app server"] / run["requests"], 3) if run["requests"] else None
        ),
        "transfers_committed_in_database": committed,
        "postgresql_counters": delta,
        "postgresql_counters_per_committed_transfer": {
            f"{k}_per_transfer": round(v / committed, 2) if committed else None
            for k, v in delta.items()
        },
        "note": "PostgreSQL counters include the idle seconds after the run "
        f"({args.stats_settle}s) in which the outbox relay polls twice a second",
    }


# ---- py-spy --------------------------------------------------------------------------------------


def profile_under_load(session: Session, server: Server, script: Path, args: Any) -> dict:
    """The same load again with py-spy recording the server's stacks (harness.py_spy_during)."""
    seconds = min(PROFILE_SECONDS, max(1, args.duration - 2))
    return harness.py_spy_during(
        session,
        server,
        "transfers",
        seconds,
        lambda: run_wrk(server, script, args.duration, args.connections),
    )


# ---- invariants ----------------------------------------------------------------------------------

# Transfers without exactly their two matching ledger entries. Joins, not a subquery per
# transfer: `ledger_entry.reference` has no index, and after the raw asyncpg reference (tens of
# thousands of transfers) a scan of the ledger per transfer ran for many minutes.
TRANSFER_LEDGER_MISMATCHES = """
WITH legs AS (
    SELECT reference, count(*) AS n FROM ledger_entry
    WHERE reference LIKE 'transfer:%' GROUP BY reference
)
SELECT count(DISTINCT t.id) FROM minute_transfer t
LEFT JOIN legs ON legs.reference = 'transfer:' || t.id
LEFT JOIN ledger_entry o ON o.reference = 'transfer:' || t.id AND o.kind = 'TRANSFER_OUT'
    AND o.sub_account_id = t.from_sub_account_id AND o.delta_seconds = -t.sent_seconds
LEFT JOIN ledger_entry i ON i.reference = 'transfer:' || t.id AND i.kind = 'TRANSFER_IN'
    AND i.sub_account_id = t.to_sub_account_id AND i.delta_seconds = t.received_seconds
WHERE o.id IS NULL OR i.id IS NULL OR legs.n IS DISTINCT FROM 2
"""


def price(prices: Any, tier: str, markup_bp: int) -> Fraction:
    from domain.money import Tier
    from domain.pricing import client_price_per_minute

    return client_price_per_minute(prices.base_per_minute(Tier(tier)), markup_bp)


async def total_value(session: Session, prices: Any) -> tuple[Fraction, int, int]:
    """(every account's seconds at its own client price, negative balances, total seconds)."""
    async with session.connect() as conn:
        rows = await conn.fetch(
            "SELECT b.tier, b.seconds, s.markup_basic_bp, s.markup_premium_bp"
            " FROM balance b JOIN sub_account s ON s.id = b.sub_account_id"
        )
    value = sum(
        (s * price(prices, t, basic if t == "BASIC" else premium) for t, s, basic, premium in rows),
        Fraction(0),
    )
    return value / 60, sum(r["seconds"] < 0 for r in rows), sum(r["seconds"] for r in rows)


def invariants(session: Session, prices: Any, value_before: Fraction, transfers: int) -> dict:
    checked = session.cli("check-ledger")
    code, output = checked.returncode, (checked.stdout + checked.stderr).strip()
    value_after, negative, seconds_after = harness.run_async(lambda: total_value(session, prices))
    unmatched = harness.run_async(lambda: session.fetchval(TRANSFER_LEDGER_MISMATCHES))
    # Each transfer loses under one second at the destination's price (rounding down).
    max_loss = transfers * price(prices, "PREMIUM", 4000) / 60
    violations = []
    if code != 0:
        violations.append(f"check-ledger exited {code}: {output}")
    if negative:
        violations.append(f"{negative} negative balances")
    if unmatched:
        violations.append(f"{unmatched} transfers without their two matching ledger entries")
    if value_after > value_before:
        violations.append(f"value grew by {float(value_after - value_before) / 1e6:.6f} USD")
    if value_before - value_after > max_loss:
        violations.append("value shrank by more than one second per transfer")
    return {
        "check_ledger_exit_code": code,
        "check_ledger_output": output,
        "negative_balances": negative,
        "transfers_without_matching_ledger_entries": unmatched,
        "value_before_usd": round(float(value_before) / 1e6, 6),
        "value_after_usd": round(float(value_after) / 1e6, 6),
        "value_lost_to_rounding_usd": round(float(value_before - value_after) / 1e6, 6),
        "max_rounding_loss_usd": round(float(max_loss) / 1e6, 6),
        "seconds_after": seconds_after,
        "violations": violations,
    }


# ---- the references on the same database, the app stopped ---------------------------------------

LOCK_SQL = (
    "SELECT id, agency_id, kind, name, status, markup_basic_bp, markup_premium_bp"
    " FROM sub_account WHERE id = ANY($1::uuid[]) AND agency_id = $2 ORDER BY id FOR UPDATE"
)
DEBIT_SQL = (
    "UPDATE balance SET seconds = seconds + $2 WHERE sub_account_id = $1 AND tier = 'PREMIUM'"
    " AND seconds >= -$2::bigint"
)
CREDIT_SQL = (
    "UPDATE balance SET seconds = seconds + $2 WHERE sub_account_id = $1 AND tier = 'PREMIUM'"
)
LEDGER_SQL = (
    "INSERT INTO ledger_entry (agency_id, sub_account_id, tier, delta_seconds, kind, reference,"
    " created_at) VALUES ($1, $2, 'PREMIUM', $3, 'TRANSFER_OUT', $4, $7),"
    " ($1, $5, 'PREMIUM', $6, 'TRANSFER_IN', $4, $7)"
)
MINUTE_TRANSFER_SQL = (
    "INSERT INTO minute_transfer (id, agency_id, from_sub_account_id, to_sub_account_id, tier,"
    " sent_seconds, received_seconds, base_micros_per_minute, from_markup_bp, to_markup_bp,"
    " created_at) VALUES ($1, $2, $3, $4, 'PREMIUM', $5, $6, $7, $8, $9, $10)"
)
OUTBOX_SQL = (
    "INSERT INTO outbox (topic, kind, payload, created_at) VALUES"
    " ($1, 'BALANCES_CHANGED', $2, $5), ($3, 'BALANCES_CHANGED', $4, $5)"
)
UPDATE_SQL = (
    "UPDATE balance SET seconds = seconds + 1 WHERE sub_account_id = $1 AND tier = 'PREMIUM'"
)
Operation = Callable[[asyncpg.Connection, random.Random], Awaitable[str]]


async def sql_load(session: Session, args: Any, op: Operation) -> dict[str, Any]:
    """`--connections` asyncpg connections running `op` back to back, for a warm-up and then
    `--duration` seconds; `op` returns its outcome ("ok" counts)."""
    conns = [await asyncpg.connect(session.dsn) for _ in range(args.connections)]
    latencies: list[float] = []
    outcomes: dict[str, int] = defaultdict(int)

    async def worker(conn: asyncpg.Connection, n: int, deadline: float, record: bool) -> None:
        rng = random.Random(n)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            outcome = await op(conn, rng)
            if record:
                latencies.append(time.perf_counter() - started)
                outcomes[outcome] += 1

    async def run(seconds: float, record: bool) -> float:
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(worker(c, n, deadline, record) for n, c in enumerate(conns)))
        return time.perf_counter() - started

    try:
        await run(SQL_WARMUP_SECONDS, False)
        elapsed = await run(args.duration, True)
    finally:
        for conn in conns:
            await conn.close()
    return {
        "connections": args.connections,
        "seconds": round(elapsed, 2),
        "outcomes": dict(outcomes),
        "per_second": round(outcomes.get("ok", 0) / elapsed, 1),
        "latency": harness.summary_ms(latencies) if latencies else None,
    }


class InsufficientError(Exception):
    pass


async def sql_transfers(session: Session, args: Any, ids: list[uuid.UUID], base: int) -> dict:
    """The transfer's write transaction, statement for statement, from asyncpg directly."""
    async with session.connect() as conn:
        rows = await conn.fetch(
            "SELECT id, agency_id, markup_premium_bp FROM sub_account WHERE id = ANY($1)", ids
        )
    agency_id, markup = rows[0]["agency_id"], {r["id"]: r["markup_premium_bp"] for r in rows}

    async def op(conn: asyncpg.Connection, rng: random.Random) -> str:
        source, destination = rng.sample(ids, 2)
        sent = rng.randint(MIN_MINUTES, MAX_MINUTES) * 60
        received = sent * (10_000 + markup[source]) // (10_000 + markup[destination])
        transfer_id, now = uuid.uuid4(), dt.datetime.now(dt.UTC)
        try:
            async with conn.transaction():
                await conn.fetch(LOCK_SQL, sorted((source, destination)), agency_id)
                for sub_account_id, delta in sorted(((source, -sent), (destination, received))):
                    sql = DEBIT_SQL if delta < 0 else CREDIT_SQL
                    if await conn.execute(sql, sub_account_id, delta) != "UPDATE 1":
                        raise InsufficientError
                reference = f"transfer:{transfer_id}"
                await conn.execute(
                    LEDGER_SQL, agency_id, source, -sent, reference, destination, received, now
                )
                await conn.execute(
                    MINUTE_TRANSFER_SQL, transfer_id, agency_id, source, destination, sent,
                    received, base, markup[source], markup[destination], now,
                )  # fmt: skip
                topics = [
                    (f"sub_account:{i}", json.dumps({"sub_account_id": str(i)}))
                    for i in (source, destination)
                ]
                await conn.execute(OUTBOX_SQL, *topics[0], *topics[1], now)
        except InsufficientError:
            return "insufficient"
        return "ok"

    return await sql_load(session, args, op)


async def raw_updates(session: Session, args: Any, ids: list[uuid.UUID]) -> dict[str, Any]:
    async def op(conn: asyncpg.Connection, rng: random.Random) -> str:
        await conn.execute(UPDATE_SQL, rng.choice(ids))
        return "ok"

    return await sql_load(session, args, op)


def pgbench_updates(session: Session, args: Any, ids: list[uuid.UUID]) -> dict[str, Any]:
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        return {"skipped": "pgbench not installed"}
    script = session.workdir / "update.sql"
    script.write_text(
        f"\\set n random(1, {len(ids)})\n"
        "UPDATE balance SET seconds = seconds + 1"
        f" WHERE sub_account_id = ('{{{','.join(map(str, ids))}}}'::uuid[])[:n]"
        " AND tier = 'PREMIUM';\n"
    )
    user, _, hostport = args.pg.partition("@")
    host, _, port = hostport.partition(":")
    argv = [pgbench, "-h", host, "-p", port or "5432", "-U", user, "-n", "-M", "prepared"]
    argv += ["-c", str(args.connections), "-j", "2", "-T", str(args.duration)]
    argv += ["-f", str(script), args.database]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        return {"failed": (done.stdout + done.stderr)[-1000:]}

    def find(pattern: str, kind: type) -> Any:
        match = re.search(pattern, done.stdout, re.MULTILINE)
        return kind(match[1]) if match else None

    return {
        "command": " ".join(argv),
        "per_second": find(r"^tps = ([\d.]+)", float),
        "latency_average_ms": find(r"^latency average = ([\d.]+) ms", float),
        "transactions": find(r"number of transactions actually processed: (\d+)", int),
    }


# ---- main ----------------------------------------------------------------------------------------


def main() -> int:
    parser = harness.arguments(__doc__, "agencyhub_bench_transfers")
    parser.add_argument("--duration", type=int, default=15, help="seconds of measured load")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load before it")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="py-spy run after the measured one (auto: when the target is missed)",
    )
    parser.add_argument(
        "--stats-settle", type=float, default=11, help="idle seconds before reading pg_stat"
    )
    args = parser.parse_args()
    harness.require_wrk()
    with Session("transfers", args) as session:
        prices = session.settings().price_book()
        [server] = session.start("graphql")
        started = time.monotonic()
        setup = harness.over_api(server.url, lambda client: set_up(client, session.url))
        seed_seconds = time.monotonic() - started
        print(
            f"seeded in {seed_seconds:.1f}s: 1 agency ({PLAN}), primary + {len(MARKUPS)}"
            f" secondaries (markups {', '.join(MARKUPS)} %), {SEED_MINUTES}"
            f" PREMIUM minutes each from the primary (top-up {setup['top_up_minutes']} min)",
            flush=True,
        )
        statements = harness.run_async(
            lambda: statements_of_one_transfer(session, setup["token"], setup["ids"])
        )
        print(
            f"one transferMinutes request: {statements['request_statements']} SQL statements"
            " besides transaction control; the outbox relay then ran"
            f" {statements['relay_statements_after_one_transfer']} for it",
            flush=True,
        )
        for statement in statements["request"]:
            print(f"    {statement[:150]}")
        value_before, negative, _ = harness.run_async(lambda: total_value(session, prices))
        if negative:
            raise RuntimeError("negative balances before the load")
        count = "SELECT count(*) FROM minute_transfer"
        transfers_before = harness.run_async(lambda: session.fetchval(count))
        prefix = f'{{"query":{json.dumps(LOAD_MUTATION)},"variables":{{"i":{{"fromId":"'
        script = harness.lua_script(
            session.workdir / "transfers.lua",
            LUA,
            TOKEN=setup["token"],
            IDS=setup["ids"],
            PREFIX=prefix,
            MIN_MINUTES=MIN_MINUTES,
            MAX_MINUTES=MAX_MINUTES,
            SEED=RANDOM_SEED,
            COUNTS=COUNTS,
        )
        print(
            f"wrk -t1 -c{args.connections} -d{args.duration}s transferMinutes, random pairs of"
            f" {len(setup['ids'])}, {MIN_MINUTES}-{MAX_MINUTES} min ({args.warmup}s warm-up)",
            flush=True,
        )
        load = measure_load(session, server, script, args)
        run = load["run"]
        print(
            f"  {run['transfers_per_second']:.1f} transfers/s ({run['requests_per_second']:.1f}"
            f" req/s) p50 {run['p50_ms']:.1f} ms p99 {run['p99_ms']:.1f} ms; counts"
            f" {run['counts']}; server CPU {load['server_cpu_ms_per_request']} ms/req;"
            f" CPU s {load['cpu_seconds']}",
            flush=True,
        )
        print(f"  PostgreSQL per transfer: {load['postgresql_counters_per_committed_transfer']}")
        missed = run["transfers_per_second"] < TARGET_TRANSFERS_PER_SECOND
        profile = None
        if args.profile == "always" or (args.profile == "auto" and missed):
            print(f"profiling the server under the same load (py-spy, {PROFILE_SECONDS}s)")
            profile = profile_under_load(session, server, script, args)
            print(f"  profile: {profile.get('raw_file') or profile}")
        moved = harness.run_async(lambda: session.fetchval(count)) - transfers_before
        checked = invariants(session, prices, value_before, moved)
        print(
            f"invariants after {moved} transfers: violations {len(checked['violations'])}"
            f" {checked['violations'] or ''}; {checked['check_ledger_output']}; negative"
            f" balances {checked['negative_balances']}; value lost to rounding"
            f" {checked['value_lost_to_rounding_usd']} USD",
            flush=True,
        )
        session.stop_servers()

        keys = [harness.global_key(g) for g in setup["ids"]]
        print(f"reference 1: the transfer transaction from asyncpg, {args.connections} conns")
        base = prices.premium_micros_per_minute
        sql_transfer = harness.run_async(lambda: sql_transfers(session, args, keys, base))
        print(f"  {sql_transfer['per_second']:.1f}/s {sql_transfer}")
        ledger_after_sql = {
            "transfers_without_matching_ledger_entries": harness.run_async(
                lambda: session.fetchval(TRANSFER_LEDGER_MISMATCHES)
            ),
            "check_ledger_exit_code": session.cli("check-ledger").returncode,
        }
        print(f"  ledger after it: {ledger_after_sql}")
        print(f"reference 2: single-row UPDATE from asyncpg, {args.connections} conns, autocommit")
        raw = harness.run_async(lambda: raw_updates(session, args, keys))
        print(f"  {raw['per_second']:.1f}/s {raw}")
        print("reference 3: the same UPDATE with pgbench")
        bench = pgbench_updates(session, args, keys)
        print(f"  {bench}")

        ratio = run["transfers_per_second"] / raw["per_second"] if raw["per_second"] else None
        by_pgbench = bench.get("per_second")
        ratio_pgbench = run["transfers_per_second"] / by_pgbench if by_pgbench else None
        counts = run["counts"]
        failures = counts["graphql_errors"] + counts["non_200"] + counts["other_user_errors"]
        failures += sum(run["socket_errors"].values())
        target_met = not missed and not checked["violations"]
        print(
            f"\ntransfers/s (API, wrk -c{args.connections}): {run['transfers_per_second']:.1f}"
            f"  (p50 / p99 {run['p50_ms']:.1f} / {run['p99_ms']:.1f} ms)\n"
            f"  INSUFFICIENT_MINUTES {counts['insufficient']}; GraphQL errors / non-200 / other"
            f" {counts['graphql_errors']} / {counts['non_200']} / {counts['other_user_errors']}\n"
            f"transfer transaction via asyncpg/s: {sql_transfer['per_second']:.1f}\n"
            f"raw UPDATE/s asyncpg / pgbench: {raw['per_second']:.1f} / {by_pgbench or 0:.1f}\n"
            f"ratio transfers / raw UPDATE: {ratio or 0:.1%} (pgbench {ratio_pgbench or 0:.1%})\n"
            f"invariant violations: {len(checked['violations'])}\n"
            f"target >= {TARGET_TRANSFERS_PER_SECOND} transfers/s with 0 violations:"
            f" {'met' if target_met else 'MISSED'}"
        )
        session.write(
            {
                "settings": {k: v for k, v in vars(args).items() if k != "output"},
                "dataset": {
                    "agencies": 1,
                    "plan": PLAN,
                    "sub_accounts": len(setup["ids"]),
                    "markups_percent": ["0", *MARKUPS],
                    "seed_minutes_per_secondary": SEED_MINUTES,
                    "top_up_plan_grant_minutes": setup["top_up_minutes"],
                },
                "seed_seconds": round(seed_seconds, 1),
                "load_mutation": LOAD_MUTATION,
                "statements_per_transfer": statements,
                "load": load,
                "profile": profile,
                "invariants": checked,
                "invariant_violations": len(checked["violations"]),
                "reference_sql_transfer": sql_transfer,
                "ledger_after_sql_transfers": ledger_after_sql,
                "reference_raw_update_asyncpg": raw,
                "reference_raw_update_pgbench": bench,
                "transfers_per_second": run["transfers_per_second"],
                "ratio_to_raw_update": round(ratio, 4) if ratio is not None else None,
                "ratio_to_raw_update_pgbench": round(ratio_pgbench, 4) if ratio_pgbench else None,
                "target_transfers_per_second": TARGET_TRANSFERS_PER_SECOND,
                "target_met": target_met,
                "failed_requests": failures,
            }
        )
        return 1 if failures or checked["violations"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
