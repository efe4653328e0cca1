"""Messaging ingestion: `recordMessages` messages/s in batches of 1,000 over HTTP (a few Python
clients, every answer checked), next to a raw asyncpg COPY, and a raw batched INSERT, of the
same rows into `message` in the same run; with --profile, where a batch's CPU goes in-process
(pyinstrument). BENCHMARKS.md, "Messaging and the per-call list (issue 15)".

The messages are realistic conversations: each opened by either side, 2-20 messages that
alternate direction at random (replies), spread over the last two days; the stream is sent in
time order except that one message in 20 arrives 1-3 batches late (a reply in a later batch,
sometimes a conversation's first message after its second).
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import harness
import httpx
import orjson
from harness import Session

RECORD = """mutation($m: [MessageInput!]!) { recordMessages(input: {messages: $m}) {
  accepted duplicates rejected { externalId code } } }"""
MESSAGE_COLUMNS = (
    "agency_id external_id sub_account_id conversation_id direction sent_at recorded_at".split()
)
RAW_INSERT = """INSERT INTO message (agency_id, external_id, sub_account_id, conversation_id,
  direction, sent_at, recorded_at)
SELECT $1, e, s, c, d, t, $2 FROM unnest($3::text[], $4::uuid[], $5::text[], $6::text[],
  $7::timestamptz[]) AS u(e, s, c, d, t)
ON CONFLICT (agency_id, external_id) DO NOTHING RETURNING external_id"""


def conversation_stream(
    targets: list[str], batches: int, size: int, rng: random.Random, now: datetime
) -> list[list[dict[str, Any]]]:
    """`batches` batches of `size` messages (module docstring)."""
    wanted = batches * size
    messages: list[tuple[float, dict[str, Any]]] = []
    span = 2 * 86_400 - 3_600
    start = now - timedelta(days=2)
    n = 0
    while len(messages) < wanted:
        n += 1
        target = rng.choice(targets)
        at = rng.uniform(0, span)
        direction = rng.choice(("OUTBOUND", "INBOUND"))
        for k in range(rng.randint(2, 20)):
            if k:
                at = min(at + rng.expovariate(1 / 900), span)
                if rng.random() < 0.6:  # a reply: the other side
                    direction = "INBOUND" if direction == "OUTBOUND" else "OUTBOUND"
            message = {
                "externalId": f"m{n}-{k}",
                "subAccountId": target,
                "conversationId": f"conv-{n}",
                "direction": direction,
                "sentAt": (start + timedelta(seconds=at)).isoformat(),
            }
            messages.append((at, message))
    messages.sort(key=lambda m: m[0])
    ordered = [m for _, m in messages[:wanted]]
    # one in 20 arrives 1-3 batches late (at the end of the stream when there is no later one)
    slots: list[list[dict[str, Any]]] = [[] for _ in range(batches + 3)]
    for i, message in enumerate(ordered):
        late = rng.randint(1, 3) if rng.random() < 0.05 else 0
        slots[i // size + late].append(message)
    flat = [m for slot in slots for m in slot]
    return [flat[i : i + size] for i in range(0, len(flat), size)]


async def set_up(client: httpx.AsyncClient, sub_accounts: int) -> tuple[Any, str, list[str]]:
    """The agency, `sub_accounts` clients (4 made at a time), an ingest key."""
    agency = await harness.sign_up_on_plan(
        client, "Messages", "messages@example.com", "Agency Unlimited"
    )
    gate = asyncio.Semaphore(4)

    async def one(n: int) -> str:
        async with gate:
            return await harness.create_sub_account(
                client, agency.token, f"Client {n}", f"c{n}@messages.example"
            )

    targets = await asyncio.gather(*(one(n) for n in range(sub_accounts)))
    return agency, await harness.api_key(client, agency.token), list(targets)


async def send(url: str, key: str, bodies: list[bytes], senders: int, seconds: float) -> dict:
    """`senders` clients, each on its own connection, posting the next body until `seconds`
    have passed or the bodies run out; every answer must accept the whole batch."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    queue = iter(bodies)
    latencies: list[float] = []
    accepted, problems = 0, []

    async def sender() -> None:
        nonlocal accepted
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            while time.perf_counter() < deadline:
                body = next(queue, None)
                if body is None:
                    return
                t0 = time.perf_counter()
                response = await client.post("/graphql", content=body, headers=headers)
                latencies.append(time.perf_counter() - t0)
                answer = orjson.loads(response.content)
                payload = (answer.get("data") or {}).get("recordMessages") or {}
                if response.status_code != 200 or answer.get("errors") or payload.get("rejected"):
                    problems.append(response.text[:300])
                accepted += int(payload.get("accepted", 0))

    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(sender() for _ in range(senders)))
    elapsed = time.perf_counter() - started
    return {
        "elapsed": elapsed,
        "batches": len(latencies),
        "accepted": accepted,
        "latency": harness.summary_ms(latencies),
        "problems": problems,
    }


async def check_database(session: Session) -> dict[str, int]:
    """The stored messages and conversations against the rollup's sums."""
    async with session.connect() as conn:
        row = await conn.fetchrow(
            "SELECT coalesce(sum(sent + received), 0) AS messages,"
            " coalesce(sum(new_outbound + new_inbound), 0) AS conversations,"
            " coalesce(sum(responded), 0) AS responded FROM messaging_quarter_hour"
        )
        return {
            "message_rows": int(await conn.fetchval("SELECT count(*) FROM message")),
            "conversation_rows": int(await conn.fetchval("SELECT count(*) FROM conversation")),
            "rollup_messages": int(row["messages"]),
            "rollup_conversations": int(row["conversations"]),
            "rollup_responded": int(row["responded"]),
        }


def raw_records(
    agency_id: Any, batches: list[list[dict[str, Any]]], count: int, suffix: str
) -> list[tuple[Any, ...]]:
    """The first `count` messages sent, as `message` rows with `suffix` on their external id."""
    now = datetime.now(UTC)
    flat = [m for batch in batches for m in batch][:count]
    ids = {g: harness.global_key(g) for g in {m["subAccountId"] for m in flat}}
    return [
        (
            agency_id,
            m["externalId"] + suffix,
            ids[m["subAccountId"]],
            m["conversationId"],
            m["direction"],
            datetime.fromisoformat(m["sentAt"]),
            now,
        )
        for m in flat
    ]


async def raw_baselines(session: Session, records: list[tuple], batch: int) -> dict:
    """COPY of `records` (external ids suffixed -copy), and the same rows (suffixed -insert)
    as one INSERT … unnest … ON CONFLICT DO NOTHING RETURNING per `batch`, on one connection."""
    async with session.connect() as conn:
        copied = [(r[0], r[1] + "-copy", *r[2:]) for r in records]
        t0 = time.perf_counter()
        await conn.copy_records_to_table("message", records=copied, columns=MESSAGE_COLUMNS)
        copy_seconds = time.perf_counter() - t0
        statement = await conn.prepare(RAW_INSERT)
        inserted = 0
        t0 = time.perf_counter()
        for i in range(0, len(records), batch):
            rows = records[i : i + batch]
            columns = list(zip(*rows, strict=True))
            async with conn.transaction():
                inserted += len(
                    await statement.fetch(
                        rows[0][0],
                        rows[0][6],
                        [e + "-insert" for e in columns[1]],
                        columns[2],
                        columns[3],
                        columns[4],
                        columns[5],
                    )
                )
        insert_seconds = time.perf_counter() - t0
    n = len(records)
    return {
        "copy": {"rows": n, "seconds": round(copy_seconds, 3)}
        | {"rows_per_second": round(n / copy_seconds, 1)},
        "batched_insert": {"rows": inserted, "seconds": round(insert_seconds, 3)}
        | {"rows_per_second": round(inserted / insert_seconds, 1), "batch": batch},
    }


def over_http(args: Any) -> int:
    with Session("messages", args) as session:
        [server] = session.start("graphql")
        agency, key, targets = harness.over_api(server.url, lambda c: set_up(c, args.sub_accounts))
        rng = random.Random(args.seed)
        now = datetime.now(UTC).replace(microsecond=0)
        t0 = time.perf_counter()
        batches = conversation_stream(targets, args.max_batches, args.batch, rng, now)
        bodies = [
            orjson.dumps({"query": RECORD, "variables": {"m": batch}})
            for batch in batches
            if len(batch) == args.batch
        ]
        print(
            f"{len(bodies)} batches of {args.batch} messages ready in"
            f" {time.perf_counter() - t0:.1f} s; {args.senders} senders for {args.seconds} s",
            flush=True,
        )
        with harness.cpu_used({"app server": [server.process.pid]}) as cpu:
            sent = harness.run_async(
                lambda: send(server.url, key, bodies, args.senders, args.seconds)
            )
        if sent["problems"]:
            raise RuntimeError(f"{len(sent['problems'])} batches failed: {sent['problems'][:3]}")
        if sent["batches"] == len(bodies):
            print("  WARNING: the batches ran out before the time: raise --max-batches")
        expected = sent["batches"] * args.batch
        if sent["accepted"] != expected:
            raise RuntimeError(f"accepted {sent['accepted']} of {expected} messages")
        stored = harness.run_async(lambda: check_database(session))
        consistent = (
            stored["message_rows"] == stored["rollup_messages"] == expected
            and stored["conversation_rows"] == stored["rollup_conversations"]
        )
        if not consistent:
            raise RuntimeError(f"the database does not add up: {stored}")
        rate = expected / sent["elapsed"]
        http = {
            "messages_per_second": round(rate, 1),
            "accepted": expected,
            "batches": sent["batches"],
            "seconds": round(sent["elapsed"], 2),
            "batch_latency": sent["latency"],
            "client": f"{args.senders} Python httpx clients (asyncio, one connection each)",
            "server_cpu_ms_per_batch": round(1000 * cpu["app server"] / sent["batches"], 1),
            "cpu_seconds": cpu,
            "cores": harness.cores(cpu),
        }
        print(f"recordMessages: {rate:,.0f} messages/s, batch {sent['latency']}", flush=True)
        print(f"  CPU (cores): {harness.cores(cpu)}", flush=True)
        print(f"  database: {stored}", flush=True)
        session.stop_servers()
        agency_id = harness.global_key(agency.agency_gid)
        records = raw_records(agency_id, batches, expected, "")
        raw = harness.run_async(lambda: raw_baselines(session, records, args.batch))
        print(f"raw asyncpg COPY of the same rows: {raw['copy']}", flush=True)
        print(f"raw INSERT … unnest, {args.batch} a statement: {raw['batched_insert']}")
        ratio_copy = rate / raw["copy"]["rows_per_second"]
        ratio_insert = rate / raw["batched_insert"]["rows_per_second"]
        print(
            f"ratio recordMessages / raw COPY: {ratio_copy:.1%}; / raw INSERT: {ratio_insert:.1%}"
        )
        session.write(
            {
                "settings": {k: v for k, v in vars(args).items() if k != "output"},
                "http": http,
                "database": stored,
                "raw": raw,
                "ratio_to_copy": round(ratio_copy, 4),
                "ratio_to_batched_insert": round(ratio_insert, 4),
            }
        )
    return 0


def in_process(args: Any) -> int:
    """`--batches` batches posted one at a time through httpx.ASGITransport, unprofiled and
    then under pyinstrument; statements of one batch counted."""
    with Session("profile_messages", args) as session:

        async def run() -> dict[str, Any]:
            async with harness.in_process_app(session.url, session.workdir) as (client, services):
                _, key, targets = await set_up(client, args.sub_accounts)
                now = datetime.now(UTC).replace(microsecond=0)
                n = 2 * args.batches + 4
                batches = conversation_stream(targets, n, args.batch, random.Random(1), now)
                bodies = iter(
                    orjson.dumps({"query": RECORD, "variables": {"m": b}})
                    for b in batches
                    if len(b) == args.batch
                )
                headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}

                async def post(count: int) -> None:
                    for _ in range(count):
                        body = next(bodies)
                        response = await client.post("/graphql", content=body, headers=headers)
                        answer = orjson.loads(response.content)["data"]["recordMessages"]
                        assert answer["accepted"] == args.batch, response.content[:300]

                await post(3)
                with harness.statements_of(services.database) as seen:
                    await post(1)
                mine = [s for s in seen if s.kind == "request"]
                counted = {
                    "statements_per_batch": len(mine),
                    "statements": [harness.one_line(s.sql, 160) for s in mine],
                    "sql_ms": round(1000 * sum(s.seconds for s in mine), 1),
                }
                html = harness.RESULTS_DIR / f"profile_messages-{session.started}.html"
                found = await harness.profiled(lambda: post(args.batches), args.batches, html)
                return counted | found

        found = harness.run_async(run)
        rate = round(args.batch * 1000 / found["ms_per_request"], 1)
        print(f"\nstatements per batch: {found['statements_per_batch']} ({found['sql_ms']} ms)")
        for statement in found["statements"]:
            print(f"  {statement}")
        print(f"unprofiled: {rate:,.0f} messages/s ({found['ms_per_request']:.1f} ms/batch)")
        session.write(
            {
                "settings": {k: v for k, v in vars(args).items() if k != "output"},
                "messages_per_second_in_process": rate,
                **found,
            }
        )
    return 0


def main() -> int:
    parser = harness.arguments(__doc__, "agencyhub_bench_messages")
    parser.add_argument("--seconds", type=float, default=30, help="of load")
    parser.add_argument("--senders", type=int, default=4, help="concurrent clients")
    parser.add_argument("--batch", type=int, default=1000, help="messages per recordMessages")
    parser.add_argument("--max-batches", type=int, default=300, help="made before the clock")
    parser.add_argument("--sub-accounts", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="in-process, under pyinstrument")
    parser.add_argument("--batches", type=int, default=15, help="with --profile")
    args = parser.parse_args()
    return in_process(args) if args.profile else over_http(args)


if __name__ == "__main__":
    raise SystemExit(main())
