"""The billing summary of 30 days over 1,000 sub-accounts and 10,000 lines: latency over HTTP
(sequential), and in-process the SQL statements per request. The dataset goes straight into
the database (bulk inserts): lines with their holdings, a quarter of them moved mid-range,
usage rollups at every level the range reads in Asia/Kolkata, and adjustments.
BENCHMARKS.md, "Billing summary".
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import harness
import httpx
import orjson
from harness import Session

PLAN = "Agency Unlimited"
SECONDARIES, LINES, ADJUSTMENTS = 1_000, 10_000, 2_000
ZONE = "Asia/Kolkata"
FIRST, LAST = dt.date(2026, 11, 1), dt.date(2026, 11, 30)
TARGET_STATEMENTS, TARGET_P95_MS = 5, 500.0
SUMMARY = """query($from: Date!, $to: Date!) { viewer { agency {
  billingSummary(range: {from: $from, to: $to}) { total { amount } csv
    groups { subAccount { id name } lineQuantity lineCharges { amount }
      lines { line { number } daysHeld charge { amount } }
      usageCharges { amount } discounts { amount } credits { amount } total { amount } } } } } }"""
# The same without each line's charge: what a screen of group totals (or the CSV) asks.
TOTALS = """query($from: Date!, $to: Date!) { viewer { agency {
  billingSummary(range: {from: $from, to: $to}) { total { amount } csv
    groups { subAccount { id name } lineQuantity lineCharges { amount }
      usageCharges { amount } discounts { amount } credits { amount } total { amount } } } } } }"""
RANGE = {"from": FIRST.isoformat(), "to": LAST.isoformat()}
BODY = orjson.dumps({"query": SUMMARY, "variables": RANGE})
TOTALS_BODY = orjson.dumps({"query": TOTALS, "variables": RANGE})
UPDATE_AGENCY = """mutation($i: UpdateAgencyInput!) { updateAgency(input: $i) {
  userErrors { code message } } }"""


def _rollup(agency_id: Any, sub_account_id: Any, column: str, at: dt.datetime, n: int) -> dict:
    from persistence.usage import SUMMED_COLUMNS

    row: dict[str, Any] = dict.fromkeys(SUMMED_COLUMNS, 0)
    row.update(calls=1, seconds=60 + n % 120, completed=1, outbound=1)
    row.update(spent_micros=360_000 + n, cost_micros=300_000 + n)
    row.update(agency_id=agency_id, sub_account_id=sub_account_id, tier="PREMIUM", **{column: at})
    return row


async def seed(db_url: str, agency_id: Any) -> dict[str, int]:
    """Sub-accounts, lines and holdings, rollups and adjustments, in one transaction."""
    from sqlalchemy import insert
    from sqlalchemy.ext.asyncio import create_async_engine

    from domain.agency import SubAccountKind
    from persistence import agencies
    from persistence.billing import adjustment_t
    from persistence.lines import holding_t, line_t
    from persistence.usage import daily_t, quarter_t, rollup_t

    now = dt.datetime.now(dt.UTC)
    engine = create_async_engine(db_url)
    made: dict[str, int] = {}
    async with engine.begin() as conn:
        accounts = []
        for n in range(SECONDARIES):
            account = await agencies.add_sub_account(
                conn,
                agency_id,
                SubAccountKind.SECONDARY,
                f"Client {n:04d}",
                f"client{n:04d}@billing.example",
                FIRST - dt.timedelta(days=90),
                0,
                now,
            )
            accounts.append(account.id)
        lines, holdings = [], []
        opened = FIRST - dt.timedelta(days=60)
        for n in range(LINES):
            line_id = uuid.uuid4()
            holder = None if n % 10 == 9 else accounts[n % SECONDARIES]
            moved = n % 4 == 0 and holder is not None
            current = accounts[(n + 1) % SECONDARIES] if moved else holder
            lines.append(
                {
                    "id": line_id,
                    "agency_id": agency_id,
                    "sub_account_id": current,
                    "number": f"+1415{2_000_000 + n:07d}",
                    "monthly_price_micros": 5_000_000 + (n % 7) * 1_000_000,
                    "created_at": now,
                }
            )
            moved_on = FIRST + dt.timedelta(days=n % 30) if moved else None
            holdings.append(
                {
                    "agency_id": agency_id,
                    "line_id": line_id,
                    "sub_account_id": holder,
                    "from_date": opened,
                    "to_date": moved_on,
                }
            )
            if moved:
                holdings.append(
                    {
                        "agency_id": agency_id,
                        "line_id": line_id,
                        "sub_account_id": current,
                        "from_date": moved_on,
                        "to_date": None,
                    }
                )
        for chunk in range(0, len(lines), 2_000):
            await conn.execute(insert(line_t), lines[chunk : chunk + 2_000])
        for chunk in range(0, len(holdings), 2_000):
            await conn.execute(insert(holding_t), holdings[chunk : chunk + 2_000])
        made.update(lines=len(lines), holdings=len(holdings), sub_accounts=len(accounts))
        # Kolkata's November: 18:30 UTC on Oct 31 to 18:30 UTC on Nov 30, read as whole UTC
        # days, the hours 19:00-24:00 before and 00:00-18:00 after, and the two half hours.
        start = dt.datetime(2026, 10, 31, 18, 30, tzinfo=dt.UTC)
        daily = [
            _rollup(agency_id, a, "day_utc", start.replace(hour=0, minute=0) + dt.timedelta(d), n)
            for n, a in enumerate(accounts)
            for d in range(1, 31)
        ]
        hourly = [
            _rollup(agency_id, a, "hour_utc", at, n)
            for n, a in enumerate(accounts)
            for at in (
                dt.datetime(2026, 10, 31, 20, tzinfo=dt.UTC),
                dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC),
            )
        ]
        quarters = [
            _rollup(agency_id, a, "quarter_utc", at, n)
            for n, a in enumerate(accounts)
            for at in (start, dt.datetime(2026, 11, 30, 18, 15, tzinfo=dt.UTC))
        ]
        for table, rows in ((daily_t, daily), (rollup_t, hourly), (quarter_t, quarters)):
            for chunk in range(0, len(rows), 5_000):
                await conn.execute(insert(table), rows[chunk : chunk + 5_000])
        made.update(daily=len(daily), hourly=len(hourly), quarters=len(quarters))
        adjustments = [
            {
                "id": uuid.uuid4(),
                "agency_id": agency_id,
                "sub_account_id": accounts[(n * 7) % SECONDARIES],
                "kind": "DISCOUNT" if n % 2 else "CREDIT",
                "amount_micros": 1_000_000 + n,
                "note": f"bench {n}",
                "dated_on": FIRST + dt.timedelta(days=n % 30),
                "created_at": now,
            }
            for n in range(ADJUSTMENTS)
        ]
        await conn.execute(insert(adjustment_t), adjustments)
        made["adjustments"] = len(adjustments)
    await engine.dispose()
    return made


async def in_process(session: Session, args: Any, token: str) -> dict[str, Any]:
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    async with harness.in_process_app(session.url, session.workdir) as (client, services):
        await client.post("/graphql", content=BODY, headers=headers)  # pools, caches
        found = await harness.counted_requests(
            client, services.database, BODY, headers, args.count_requests
        )
        spent = await harness.posts(client, BODY, headers, args.count_requests)
        found["in_process_latency"] = harness.summary_ms(spent)
        if args.profile_requests:
            html = harness.RESULTS_DIR / f"billing-summary-profile-{session.started}.html"
            n = args.profile_requests
            found["profile"] = await harness.profiled_posts(client, BODY, headers, n, html)
    return found


def main() -> int:
    parser = harness.arguments(__doc__, "agencyhub_bench_billing")
    parser.add_argument("--requests", type=int, default=30, help="measured, one at a time")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured requests first")
    parser.add_argument("--count-requests", type=int, default=3, help="in-process, counted")
    parser.add_argument("--profile-requests", type=int, default=3, help="0: no profile")
    args = parser.parse_args()
    with Session("billing_summary", args) as session:
        [server] = session.start("graphql")
        started = time.monotonic()

        async def sign_up(client: httpx.AsyncClient) -> harness.BenchAgency:
            agency = await harness.sign_up_on_plan(
                client, "Billing Bench", "billing@example.com", PLAN
            )
            zone = {"i": {"timeZone": ZONE}}
            await harness.mutate(client, UPDATE_AGENCY, zone, agency.token)
            return agency

        agency = harness.over_api(server.url, sign_up)
        agency_id = harness.global_key(agency.agency_gid)
        made = harness.run_async(lambda: seed(session.url, agency_id))
        seed_seconds = time.monotonic() - started
        print(f"seeded in {seed_seconds:.1f}s: {made}", flush=True)
        headers = {"content-type": "application/json", "authorization": f"Bearer {agency.token}"}
        first = httpx.post(server.url + "/graphql", content=BODY, headers=headers, timeout=120)
        summary = first.json()["data"]["viewer"]["agency"]["billingSummary"]
        groups = summary["groups"]
        lines = sum(g["lineQuantity"] for g in groups)
        print(f"checked: {len(groups)} groups, {lines} line charges, total {summary['total']}")
        if len(groups) != SECONDARIES + 1:
            raise SystemExit(f"expected {SECONDARIES + 1} groups, got {len(groups)}")

        http = harness.sequential(server, BODY, headers, args.warmup, args.requests)
        print(
            f"HTTP, {args.requests} sequential requests: p50 {http['p50_ms']} ms, p95"
            f" {http['p95_ms']} ms, p99 {http['p99_ms']} ms; server CPU"
            f" {http['server_cpu_ms_per_request']} ms/request",
            flush=True,
        )
        totals = harness.sequential(server, TOTALS_BODY, headers, args.warmup, args.requests)
        print(
            f"HTTP without the per-line charges: p50 {totals['p50_ms']} ms, p95"
            f" {totals['p95_ms']} ms; server CPU {totals['server_cpu_ms_per_request']} ms/request",
            flush=True,
        )
        session.stop_servers()
        found = harness.run_async(lambda: in_process(session, args, agency.token))
        statements = max(found["statements_per_request"])
        print(f"in-process: {found['statements_per_request']} SQL statements per request:")
        for statement in found["statements"]:
            print(f"    {statement[:150]}")
        latency = found["in_process_latency"]
        print(f"in-process latency: p50 {latency['p50_ms']} ms, p95 {latency['p95_ms']} ms")
        targets = {
            "statements": {"target": TARGET_STATEMENTS, "measured": statements},
            "p95_ms": {"target": TARGET_P95_MS, "measured": http["p95_ms"]},
        }
        for name, target in targets.items():
            target["met"] = target["measured"] <= target["target"]
            verdict = "met" if target["met"] else "MISSED"
            print(f"target {name} <= {target['target']}: {target['measured']} {verdict}")
        session.write(
            {
                "settings": {k: v for k, v in vars(args).items() if k != "output"},
                "dataset": made,
                "seed_seconds": round(seed_seconds, 1),
                "query": SUMMARY,
                "http": http,
                "http_without_lines": totals,
                "in_process": found,
                "targets": targets,
            }
        )
        return 0 if http["statuses"] == [200] else 1


if __name__ == "__main__":
    raise SystemExit(main())
