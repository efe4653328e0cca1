"""`SubAccount.messaging(range)` for the last 30 days over 10,000,000 messages in 1,000
sub-accounts: p95 over HTTP (random sub-accounts, every answer checked), the statements of a
request, and the raw SQL of its figures (asyncpg) in the same run. BENCHMARKS.md, "Messaging
and the per-call list (issue 15)".

The agency and its sub-accounts are made through the API (bench/dataset.py's `create_agency`).
The messages are generated as conversations (module `conversations`), Zipf-skewed over the
sub-accounts, all inside the 30 days measured; their `messaging_quarter_hour` rows (what the
query reads) are computed from them by the rules of domain.messaging and loaded by COPY. The
`message` and `conversation` rows themselves are not loaded (the query does not read them;
10 M message rows at the raw COPY rate bench/messages.py measures would take minutes). For
`--check` sub-accounts the same messages go through domain.messaging's `conversations_after`
and `rollup_changes` in shuffled batches of 1,000 (out of order), and their rollup must equal
the generator's.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from typing import Any

import dataset
import harness
import httpx
import orjson
from harness import Session

STATS = """query($id: ID!, $from: Date!, $to: Date!) { node(id: $id) { ... on SubAccount {
  messaging(range: {from: $from, to: $to}) { sent received newConversations
    respondedConversations responseRate volumeUsed volumeLimit } } } }"""
COUNTED = ("sent", "received", "new_outbound", "new_inbound", "responded")
ROLLUP_COLUMNS = ("sub_account_id", "quarter_utc", "agency_id", *COUNTED)
RAW_FIGURES = """SELECT coalesce(sum(sent), 0), coalesce(sum(received), 0),
  coalesce(sum(new_outbound), 0), coalesce(sum(new_inbound), 0), coalesce(sum(responded), 0)
FROM messaging_quarter_hour WHERE sub_account_id = $1 AND quarter_utc >= $2 AND quarter_utc < $3"""
ZIPF_EXPONENT = 1.1


def conversations(seed: str, messages: int, start: int, end: int) -> Iterator[list[tuple]]:
    """`messages` messages in [start, end) (epoch seconds) as conversations, each a list of
    (second, outbound?) in time order: 1-15 messages, opened outbound 70 % of the time, each
    next one 1 s to hours later (30 min on average) and from the other side 60 % of the time
    (a reply)."""
    rng = random.Random(seed)
    rand, randint, expovariate = rng.random, rng.randint, rng.expovariate
    left = messages
    while left > 0:
        k = min(randint(1, 15), left)
        left -= k
        at = start + int(rand() * (end - start))
        outbound = rand() < 0.7
        thread = [(at, outbound)]
        for _ in range(k - 1):
            at += 1 + int(expovariate(1 / 1800))
            if rand() < 0.6:
                outbound = not outbound
            thread.append((at, outbound))
        if at >= end:  # moved back whole, so that it ends before `end`
            thread = [(t - (at - end + 1), o) for t, o in thread]
        yield thread


def rollup(seed: str, messages: int, start: int, end: int) -> dict[int, list[int]]:
    """quarter (epoch seconds) -> [sent, received, new_outbound, new_inbound, responded]."""
    rows: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for thread in conversations(seed, messages, start, end):
        opened_at, opened_outbound = thread[0]
        for at, outbound in thread:
            rows[at - at % 900][0 if outbound else 1] += 1
        row = rows[opened_at - opened_at % 900]
        if opened_outbound:
            row[2] += 1
            # ties in time are impossible after the first message: every gap is >= 1 s
            row[4] += any(not outbound for _, outbound in thread[1:])
        else:
            row[3] += 1
    return rows


def make_chunk(work: tuple[str, list[tuple[str, int]], int, int]) -> dict[str, Any]:
    """The COPY text of some sub-accounts' rollup rows and each one's totals."""
    agency, accounts, start, end = work
    lines, totals, rows = [], {}, 0
    for account, count in accounts:
        made = rollup(account, count, start, end)
        totals[account] = [sum(r[i] for r in made.values()) for i in range(5)]
        rows += len(made)
        for quarter, r in made.items():
            stamp = datetime.fromtimestamp(quarter, UTC).strftime("%Y-%m-%d %H:%M:%S+00")
            lines.append(f"{account}\t{stamp}\t{agency}\t{r[0]}\t{r[1]}\t{r[2]}\t{r[3]}\t{r[4]}\n")
    return {"text": "".join(lines).encode(), "totals": totals, "rows": rows}


def check_with_domain(account: str, count: int, start: int, end: int) -> bool:
    """The sub-account's messages through domain.messaging in shuffled batches of 1,000, each
    batch seeing the conversations the earlier ones left: the same rollup as `rollup`?"""
    from domain.messaging import (
        MessageDirection,
        ReportedMessage,
        conversations_after,
        rollup_changes,
    )

    messages = []
    for n, thread in enumerate(conversations(account, count, start, end)):
        for k, (at, outbound) in enumerate(thread):
            direction = MessageDirection.OUTBOUND if outbound else MessageDirection.INBOUND
            sent_at = datetime.fromtimestamp(at, UTC)
            messages.append(
                ReportedMessage(f"{n}-{k}", uuid.UUID(account), f"c{n}", direction, sent_at)
            )
    random.Random(account).shuffle(messages)
    stored: dict[Any, Any] = {}
    got: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for i in range(0, len(messages), 1000):
        batch = messages[i : i + 1000]
        touched = {(m.sub_account_id, m.conversation_id) for m in batch}
        before = {k: stored[k] for k in touched if k in stored}
        after = conversations_after(batch, before)
        for (_, quarter), line in rollup_changes(batch, before, after).items():
            row = got[int(quarter.timestamp())]
            for j, c in enumerate(COUNTED):
                row[j] += getattr(line, c)
        stored.update(after)
    want = rollup(account, count, start, end)
    return {q: r for q, r in got.items() if any(r)} == dict(want)


def split(total: int, weights: list[float]) -> list[int]:
    exact = [total * w / sum(weights) for w in weights]
    counts = [int(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])[: total - sum(counts)]:
        counts[i] += 1
    return counts


async def load_rollup(session: Session, agency_id: uuid.UUID, ids: list[uuid.UUID], args: Any):
    """Generated by `--jobs` processes, COPYed as the chunks come; VACUUM ANALYZE."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    first_day = (now - timedelta(days=args.days - 1)).replace(hour=0, minute=0)
    start, end = int(first_day.timestamp()), int(now.timestamp())
    rng = random.Random(f"{args.seed}:zipf")
    ranks = list(range(1, len(ids) + 1))
    rng.shuffle(ranks)
    counts = split(args.messages, [1 / r**ZIPF_EXPONENT for r in ranks])
    accounts = list(zip((str(i) for i in ids), counts, strict=True))
    chunks = [accounts[i :: args.chunks] for i in range(args.chunks)]
    work = [(str(agency_id), chunk, start, end) for chunk in chunks]
    totals: dict[str, list[int]] = {}
    rows, t0 = 0, time.monotonic()
    loop = asyncio.get_running_loop()
    async with session.connect() as conn:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = [loop.run_in_executor(pool, make_chunk, w) for w in work]
            for future in asyncio.as_completed(futures):
                done = await future
                await conn.copy_to_table(
                    "messaging_quarter_hour",
                    source=io.BytesIO(done["text"]),
                    columns=ROLLUP_COLUMNS,
                )
                totals.update(done["totals"])
                rows += done["rows"]
                print(f"  {rows:,} rollup rows, {time.monotonic() - t0:.0f} s", flush=True)
        load_seconds = time.monotonic() - t0
        t1 = time.monotonic()
        await conn.execute("VACUUM (ANALYZE) messaging_quarter_hour")
        vacuum_seconds = time.monotonic() - t1
        size = await conn.fetchval("SELECT pg_total_relation_size('messaging_quarter_hour')")
    check = sorted(accounts, key=lambda a: a[1])[len(accounts) // 2 :][: args.check]
    t1 = time.monotonic()
    checked = {a: check_with_domain(a, c, start, end) for a, c in check}
    if not all(checked.values()):
        raise RuntimeError(f"the generator's rollup differs from domain.messaging's: {checked}")
    return {
        "messages": sum(counts),
        "sub_accounts": len(ids),
        "history_utc": [first_day.isoformat(), now.isoformat()],
        "largest_sub_account_messages": max(counts),
        "median_sub_account_messages": sorted(counts)[len(counts) // 2],
        "rollup_rows": rows,
        "rollup_total_bytes": size,
        "totals": {name: sum(t[i] for t in totals.values()) for i, name in enumerate(COUNTED)},
        "generate_and_copy_seconds": round(load_seconds, 1),
        "vacuum_analyze_seconds": round(vacuum_seconds, 1),
        "checked_with_domain_messaging": {
            "sub_accounts": len(checked),
            "messages": sum(c for _, c in check),
            "equal": all(checked.values()),
            "seconds": round(time.monotonic() - t1, 1),
        },
        "per_account": totals,
    }


def problems_of(body: dict[str, Any], want: list[int]) -> list[str]:
    if body.get("errors"):
        return [str(body["errors"])[:300]]
    got = body["data"]["node"]["messaging"]
    expected = {
        "sent": want[0],
        "received": want[1],
        "newConversations": want[2] + want[3],
        "respondedConversations": want[4],
    }
    return [f"{k}: got {got[k]}, expected {v}" for k, v in expected.items() if got[k] != v]


def main() -> int:
    parser = harness.arguments(__doc__, "agencyhub_bench_messaging")
    parser.add_argument("--sub-accounts", type=int, default=1000, help="the primary included")
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30, help="of history, and of the range")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="generating processes")
    parser.add_argument("--chunks", type=int, default=20, help="of sub-accounts, one COPY each")
    parser.add_argument("--check", type=int, default=3, help="sub-accounts checked with domain")
    parser.add_argument("--requests", type=int, default=500, help="measured, one at a time")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--count-requests", type=int, default=3, help="in-process, counted")
    parser.add_argument("--timed-requests", type=int, default=100, help="in-process, SQL timed")
    args = parser.parse_args()
    with Session("messaging_figures", args) as session:
        [server] = session.start("graphql")
        today = datetime.now(UTC).date()
        options = dataset.Options(sub_accounts=args.sub_accounts, days=args.days)
        t0 = time.monotonic()
        setup = harness.over_api(server.url, lambda c: dataset.create_agency(c, options, today))
        api_seconds = time.monotonic() - t0
        ids = [setup.primary_id, *setup.secondary_ids]
        print(f"API: agency and {len(ids)} sub-accounts in {api_seconds:.0f} s", flush=True)
        data = harness.run_async(lambda: load_rollup(session, setup.agency_id, ids, args))
        per_account = data.pop("per_account")
        data["api_seconds"] = round(api_seconds, 1)
        print(f"dataset: {data}", flush=True)

        from resolvers.global_id import to_global_id

        first, last = today - timedelta(days=args.days - 1), today
        rng = random.Random(f"{args.seed}:requests")
        chosen = [rng.choice(ids) for _ in range(args.warmup + args.requests)]
        headers = {"content-type": "application/json", "authorization": f"Bearer {setup.token}"}

        def body(account: uuid.UUID) -> bytes:
            variables = {
                "id": to_global_id("SubAccount", account),
                "from": first.isoformat(),
                "to": last.isoformat(),
            }
            return orjson.dumps({"query": STATS, "variables": variables})

        bodies = [body(a) for a in chosen]
        latencies, problems = [], []
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for content in bodies[: args.warmup]:
                client.post("/graphql", content=content, headers=headers)
            measured = list(zip(chosen, bodies, strict=True))[args.warmup :]
            with harness.cpu_used({"app server": [server.process.pid]}) as cpu:
                for account, content in measured:
                    t0 = time.perf_counter()
                    response = client.post("/graphql", content=content, headers=headers)
                    latencies.append(time.perf_counter() - t0)
                    problems += problems_of(
                        orjson.loads(response.content), per_account[str(account)]
                    )
        if problems:
            raise RuntimeError(f"{len(problems)} wrong answers: {problems[:5]}")
        http = harness.summary_ms(latencies) | {
            "server_cpu_ms_per_request": round(1000 * cpu["app server"] / len(latencies), 2),
            "cpu_seconds": cpu,
            "cores": harness.cores(cpu),
            "checked": f"all {len(latencies)} answers equal to the generated figures",
        }
        print(f"HTTP, sequential, random sub-accounts: {http}", flush=True)
        session.stop_servers()

        async def raw() -> dict[str, Any]:
            from domain.reporting import local_range

            window = local_range(first, last, "UTC")
            async with session.connect() as conn:
                statement = await conn.prepare(RAW_FIGURES)
                for account in chosen[: args.warmup]:
                    await statement.fetchrow(account, window.start_utc, window.end_utc)
                spent = []
                for account in chosen[args.warmup :]:
                    t0 = time.perf_counter()
                    await statement.fetchrow(account, window.start_utc, window.end_utc)
                    spent.append(time.perf_counter() - t0)
                biggest = max(per_account, key=lambda a: sum(per_account[a][:2]))
                plan = await conn.fetch(
                    "EXPLAIN (ANALYZE, BUFFERS) " + RAW_FIGURES,
                    uuid.UUID(biggest),
                    window.start_utc,
                    window.end_utc,
                )
            return harness.summary_ms(spent) | {
                "plan_for_the_largest_sub_account": [r[0] for r in plan]
            }

        raw_sql = harness.run_async(raw)
        print(f"raw SQL (asyncpg, prepared), same sub-accounts: {raw_sql}", flush=True)

        async def counted() -> dict[str, Any]:
            async with harness.in_process_app(session.url, session.workdir) as (client, services):
                counted = await harness.counted_requests(
                    client, services.database, bodies[0], headers, args.count_requests
                )
                timed = bodies[args.warmup :][: args.timed_requests]
                return counted | await harness.sql_share(client, services.database, timed, headers)

        statements = harness.run_async(counted)
        print(f"statements per request: {statements['statements_per_request']}")
        print(
            f"in-process: p50 {statements['in_process_latency']['p50_ms']} ms a request, SQL"
            f" {statements['sql_ms_per_request']['p50_ms']} ms (p50;"
            f" {statements['sql_share_of_request']:.0%} of the mean), Python ≈"
            f" {statements['python_ms_per_request_mean']} ms"
        )
        for statement in statements["statements"]:
            print(f"  {statement[:160]}")
        session.write(
            {
                "settings": {k: v for k, v in vars(args).items() if k != "output"},
                "dataset": data,
                "range": [first.isoformat(), last.isoformat()],
                "query": STATS,
                "http": http,
                "raw_sql": raw_sql,
                "raw_sql_query": " ".join(RAW_FIGURES.split()),
                "ratio_graphql_p50_to_raw_p50": round(http["p50_ms"] / raw_sql["p50_ms"], 2),
                "in_process": statements,
            }
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
