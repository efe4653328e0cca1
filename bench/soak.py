"""Soak: mixed traffic on two server processes (PostgreSQL + Redis) for `--minutes`: errors by
kind, latency per operation, RSS per process over time, and at the end the invariants (every
accepted call stored and rolled up once, no transfer doubled, balances equal to the ledger, every
event delivered in order to the watching screens). BENCHMARKS.md, "Soak", says what it sends.
Exits 1 when an invariant fails or any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import harness
import httpx
import orjson
from harness import Server, Session

from resolvers.global_id import from_global_id

SOURCE = """mutation($i: SetBalanceSourceInput!) { setBalanceSource(input: $i) {
  userErrors { code } } }"""
TRANSFER = """mutation($i: TransferMinutesInput!) { transferMinutes(input: $i) {
  transfer { id sentSeconds } userErrors { code message } } }"""
RECORD = """mutation($calls: [CallInput!]!) { recordCalls(input: {calls: $calls}) {
  accepted duplicates rejected { externalId code } } }"""
VIEWER = "{ viewer { agency { name primarySubAccount { balances { tier seconds } } } } }"
REPORT = """query($from: Date!, $to: Date!) { viewer { agency { report(range: {from: $from,
  to: $to}) { totalMinutesUsed clients(first: 50) { totalCount } } } } }"""
TOTALS = """SELECT (SELECT count(*) FROM call), (SELECT coalesce(sum(duration_seconds), 0)
  FROM call), (SELECT coalesce(sum(calls), 0) FROM usage_hourly), (SELECT coalesce(sum(seconds),
  0) FROM usage_hourly), (SELECT count(*) FROM minute_transfer)"""
USAGE = """subscription($id: ID) { usageUpdated(subAccountId: $id) { sequence
  subAccount { id } balances { tier seconds } } }"""


class Traffic:
    """What the load sent and what came back."""

    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        self.samples: dict[str, list[str]] = defaultdict(list)
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.sent_calls: set[str] = set()
        self.accepted = 0
        self.duplicates = 0
        self.transfer_keys: set[str] = set()  # keys whose transfer was made
        self.transfers_answered = 0

    def error(self, kind: str, detail: Any) -> None:
        self.errors[kind] += 1
        if len(self.samples[kind]) < 5:
            self.samples[kind].append(str(detail)[:300])


async def post(
    traffic: Traffic, client: httpx.AsyncClient, op: str, query: str, variables: Any, token: str
) -> dict[str, Any] | None:
    t0 = time.perf_counter()
    try:
        response = await client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {token}"},
        )
    except httpx.HTTPError as exc:
        traffic.error(f"{op}: {type(exc).__name__}", exc)
        return None
    traffic.latency[op].append(time.perf_counter() - t0)
    if response.status_code != 200:
        traffic.error(f"{op}: HTTP {response.status_code}", response.text)
        return None
    body: dict[str, Any] = response.json()
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code", "no code")
        traffic.error(f"{op}: {code}", error.get("message"))
    return None if body.get("errors") else body["data"]


async def paced(rate: float, until: float, one: Any) -> None:
    """Starts `one()` `rate` times a second until `until`, without waiting for each."""
    tasks: set[asyncio.Task[None]] = set()
    start, n = time.monotonic(), 0
    while time.monotonic() < until:
        n += 1
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
    await asyncio.gather(*tasks)


def a_call(sub_account: str, rng: random.Random) -> dict[str, Any]:
    return {
        "externalId": uuid.uuid4().hex,
        "subAccountId": sub_account,
        "direction": rng.choice(("INBOUND", "OUTBOUND")),
        "channel": "PHONE",
        "status": rng.choice(("COMPLETED", "COMPLETED", "COMPLETED", "FAILED", "NO_ANSWER")),
        "tier": rng.choice(("BASIC", "PREMIUM")),
        "startedAt": (datetime.now(UTC) - timedelta(seconds=rng.randint(5, 3600))).isoformat(),
        "durationSeconds": rng.randint(0, 180),
    }


async def seed(urls: list[str], sub_accounts: int) -> dict[str, Any]:
    """An agency on Partner, `sub_accounts` clients with 100 BASIC minutes each from the
    primary, half of them billing the agency (their calls debit the primary), an ingest key."""
    async with httpx.AsyncClient(base_url=urls[0], timeout=60) as client:
        agency = await harness.sign_up_on_plan(client, "Soak", "soak@bench.example", "Partner")
        token, ids = agency.token, []
        for n in range(sub_accounts):
            gid = await harness.create_sub_account(
                client, token, f"Client {n}", f"c{n}@soak.example"
            )
            if n % 2:
                await harness.mutate(client, SOURCE, {"i": {"id": gid, "source": "AGENCY"}}, token)
            await harness.transfer(client, token, agency.primary_gid, gid, 100, "BASIC")
            ids.append(gid)
        key = await harness.api_key(client, token)
    return {"token": token, "key": key, "primary": agency.primary_gid, "sub_accounts": ids}


class Watchers:
    """usageUpdated subscriptions, one per WebSocket; what each received."""

    def __init__(self) -> None:
        self.received: dict[str, list[int]] = defaultdict(list)  # sub-account -> sequences
        self.problems: Counter[str] = Counter()
        self.sockets: list[Any] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self, url: str, token: str, sub_account: str, n: int) -> None:
        ws = await harness.subscribe(url, token, [(str(n), USAGE, {"id": sub_account})])
        self.sockets.append(ws)
        self.tasks.append(asyncio.create_task(self.read(ws, sub_account)))

    async def read(self, ws: Any, sub_account: str) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in ws:
                message = orjson.loads(raw)
                if message["type"] == "next" and not message["payload"].get("errors"):
                    event = message["payload"]["data"]["usageUpdated"]
                    self.received[sub_account].append(int(event["sequence"]))
                elif message["type"] == "ping":
                    await ws.send('{"type":"pong"}')
                else:
                    self.problems[str(message.get("type"))] += 1
        except ConnectionClosed:
            pass

    async def close(self) -> None:
        for ws in self.sockets:
            await ws.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def load(
    args: argparse.Namespace, urls: list[str], seeded: dict[str, Any], servers: list[Server]
) -> dict[str, Any]:
    rng = random.Random(11)
    traffic = Traffic()
    clients = [httpx.AsyncClient(base_url=u, timeout=60) for u in urls]
    token, key = seeded["token"], seeded["key"]
    everyone = [seeded["primary"], *seeded["sub_accounts"]]
    idle = seeded["sub_accounts"][: args.idle_sub_accounts]
    ingest = seeded["sub_accounts"][args.idle_sub_accounts :]
    watchers = Watchers()
    for n in range(args.idle_subscriptions):
        await watchers.open(urls[n % 2], token, idle[n % len(idle)], n)
    watched = ingest[: args.watchers]
    for n, sub_account in enumerate(watched):
        await watchers.open(urls[n % 2], token, sub_account, args.idle_subscriptions + n)
    await asyncio.sleep(2)
    sent_batches: list[list[dict[str, Any]]] = []
    turn = iter(range(10**12))

    async def record() -> None:
        if sent_batches and rng.random() < 0.05:
            batch = rng.choice(sent_batches[-50:])  # a retry: every call a duplicate
        else:
            batch = [a_call(rng.choice(ingest), rng) for _ in range(args.batch)]
            sent_batches.append(batch)
            traffic.sent_calls.update(c["externalId"] for c in batch)
        data = await post(
            traffic, clients[next(turn) % 2], "recordCalls", RECORD, {"calls": batch}, key
        )
        if data is not None:
            answer = data["recordCalls"]
            traffic.accepted += answer["accepted"]
            traffic.duplicates += answer["duplicates"]
            if answer["rejected"]:
                traffic.error("recordCalls: rejected", answer["rejected"][:3])

    async def transfer() -> None:
        source, destination = rng.sample(everyone, 2)
        idempotency_key = uuid.uuid4().hex
        i = {"fromId": source, "toId": destination, "tier": "BASIC"}
        i |= {"minutes": str(rng.randint(1, 5)), "idempotencyKey": idempotency_key}
        for _ in range(2 if rng.random() < 0.1 else 1):  # some retried with the same key
            data = await post(
                traffic, clients[next(turn) % 2], "transferMinutes", TRANSFER, {"i": i}, token
            )
            if data is None:
                continue
            traffic.transfers_answered += 1
            answer = data["transferMinutes"]
            if answer["transfer"]:
                traffic.transfer_keys.add(idempotency_key)
            elif answer["userErrors"][0]["code"] != "INSUFFICIENT_MINUTES":
                traffic.error("transferMinutes: userError", answer["userErrors"])

    async def read() -> None:
        client = clients[next(turn) % 2]
        if rng.random() < 0.5:
            await post(traffic, client, "viewer", VIEWER, {}, token)
        else:
            today = date.today()
            dates = {"from": str(today - timedelta(days=29)), "to": str(today)}
            await post(traffic, client, "agencyReport", REPORT, dates, token)

    rss: list[dict[str, Any]] = []

    async def sample_memory(until: float) -> None:
        t0 = time.monotonic()
        while time.monotonic() < until + args.settle:
            sample = {s.name: s.usage().rss_bytes // 1024 for s in servers}
            rss.append({"t": round(time.monotonic() - t0, 1), **sample})
            await asyncio.sleep(args.sample_seconds)

    until = time.monotonic() + args.minutes * 60
    started = time.monotonic()
    await asyncio.gather(
        paced(args.calls_per_second / args.batch, until, record),
        paced(args.transfers_per_second, until, transfer),
        paced(args.reads_per_second, until, read),
        sample_memory(until),
    )
    elapsed = time.monotonic() - started
    for client in clients:
        await client.aclose()
    return {
        "traffic": traffic,
        "watchers": watchers,
        "watched": watched,
        "rss_kib": rss,
        "seconds": round(elapsed, 1),
    }


async def checks(
    session: Session, args: argparse.Namespace, result: dict[str, Any]
) -> dict[str, Any]:
    traffic: Traffic = result["traffic"]
    await session.wait_outbox_published(20)  # events still on their way out
    await asyncio.sleep(2)
    async with session.connect() as conn:
        calls, seconds, rolled, rolled_seconds, transfers = await conn.fetchrow(TOTALS)
        transfers -= args.seeded_transfers
        mismatched = await conn.fetch(
            "SELECT b.sub_account_id, b.tier, b.seconds, coalesce(l.total, 0) AS ledger"
            " FROM balance b LEFT JOIN (SELECT sub_account_id, tier, sum(delta_seconds) AS total"
            " FROM ledger_entry GROUP BY 1, 2) l USING (sub_account_id, tier)"
            " WHERE b.seconds <> coalesce(l.total, 0) OR b.seconds < 0"
        )
        expected: dict[str, list[int]] = {}
        for gid in result["watched"]:
            rows = await conn.fetch(
                "SELECT sequence FROM outbox WHERE key = $1 AND kind IN"
                " ('USAGE_UPDATED', 'BALANCES_CHANGED') AND sequence IS NOT NULL ORDER BY sequence",
                str(from_global_id(gid)[1]),
            )
            expected[gid] = [int(r["sequence"]) for r in rows]
    watchers: Watchers = result["watchers"]
    delivery = {}
    for gid, sequences in expected.items():
        got = watchers.received.get(gid, [])
        first = got[0] if got else None
        wanted = [s for s in sequences if first is not None and s >= first]
        delivery[gid] = {
            "expected_since_first": len(wanted),
            "received": len(got),
            "in_order_no_duplicates": got == sorted(set(got)),
            "lost": len(set(wanted) - set(got)),
        }
    invariants = {
        "every_accepted_call_stored_once": calls == traffic.accepted,
        "rollups_equal_calls": (rolled, rolled_seconds) == (calls, seconds),
        "no_transfer_doubled": transfers == len(traffic.transfer_keys),
        "balances_equal_ledger_none_negative": not mismatched,
        "no_event_lost": all(
            d["lost"] == 0 and d["in_order_no_duplicates"] for d in delivery.values()
        )
        and sum(d["received"] for d in delivery.values()) > 0,
    }
    return {
        "invariants": invariants,
        "counts": {
            "calls_sent_unique": len(traffic.sent_calls),
            "accepted": traffic.accepted,
            "duplicates": traffic.duplicates,
            "calls_stored": calls,
            "transfers_made": transfers,
            "transfer_keys": len(traffic.transfer_keys),
            "transfer_answers": traffic.transfers_answered,
            "mismatched_balances": [dict(r) for r in mismatched][:5],
        },
        "delivery": delivery,
        "subscription_problems": dict(watchers.problems),
    }


async def run(session: Session, args: argparse.Namespace, servers: list[Server]) -> dict[str, Any]:
    urls = [s.url for s in servers]
    seeded = await seed(urls, args.sub_accounts)
    args.seeded_transfers = args.sub_accounts  # one BASIC transfer each
    cpu0 = [s.cpu_seconds() for s in servers]
    load_cpu0 = time.process_time()
    result = await load(args, urls, seeded, servers)
    cpu = {s.name: round(s.cpu_seconds() - c, 1) for s, c in zip(servers, cpu0, strict=True)}
    load_cpu = round(time.process_time() - load_cpu0, 1)
    verdicts = await checks(session, args, result)
    await result["watchers"].close()
    traffic: Traffic = result["traffic"]
    rss = result["rss_kib"]
    growth = {
        s.name: {
            "start_kib": rss[0][s.name],
            "end_of_load_kib": max(r[s.name] for r in rss if r["t"] <= result["seconds"]),
            "after_settle_kib": rss[-1][s.name],
        }
        for s in servers
    }
    return {
        **verdicts,
        "errors_by_kind": dict(traffic.errors),
        "error_samples": dict(traffic.samples),
        "latency_ms": {op: harness.summary_ms(v) for op, v in traffic.latency.items()},
        "requests": {op: len(v) for op, v in traffic.latency.items()},
        "seconds": result["seconds"],
        "cpu_seconds": {**cpu, "load_generator": load_cpu},
        "rss_kib_growth": growth,
        "rss_kib_timeline": rss,
    }


def main() -> int:
    parser = harness.arguments(__doc__, "agencyhub_bench_soak")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--calls-per-second", type=float, default=669)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--transfers-per-second", type=float, default=20)
    parser.add_argument("--reads-per-second", type=float, default=10)
    parser.add_argument("--sub-accounts", type=int, default=30)
    parser.add_argument("--idle-sub-accounts", type=int, default=10)
    parser.add_argument("--idle-subscriptions", type=int, default=300)
    parser.add_argument("--watchers", type=int, default=5)
    parser.add_argument("--sample-seconds", type=float, default=5)
    parser.add_argument("--settle", type=float, default=30, help="RSS sampled this long after")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14", help="flushed first")
    args = parser.parse_args()
    import redis

    with Session("soak", args) as session:
        redis.Redis.from_url(args.redis).flushdb()
        servers = session.start("server-a", "server-b", env=session.env(REDIS_URL=args.redis))
        soak = harness.run_async(lambda: run(session, args, servers))
        session.stop_servers()
        logs = {s.name: s.log_tail(20) for s in servers}
        print(json.dumps(soak, indent=2, default=str))
        session.write({"settings": vars(args), "soak": soak, "server_log_tails": logs})
    ok = all(soak["invariants"].values()) and not soak["errors_by_kind"]
    print("PASS" if ok else "FAIL", soak["invariants"], soak["errors_by_kind"], file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
