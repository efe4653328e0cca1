"""Subscription fan-out: `usageUpdated` subscriptions over WebSockets on two server processes
(PostgreSQL + Redis), from `recordCalls` to the screen: latency, loss, server memory per idle
subscription and CPU, next to raw Redis pub/sub of the same shape. BENCHMARKS.md,
"Subscription fan-out", says how it is measured.

Targets: 10,000 subscriptions, publish-to-receive p99 <= 250 ms at 100 events/s, <= 60 KB of
server memory per idle subscription, 0 events lost (the JSON's "verdict").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import multiprocessing
import os
import random
import resource
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import harness
import httpx
import orjson
from harness import Server, Session

PLAN = "Agency Unlimited"
RECORD = """mutation($calls: [CallInput!]!) { recordCalls(input: {calls: $calls}) {
  accepted duplicates rejected { code } } }"""
USAGE = """subscription($id: ID) { usageUpdated(subAccountId: $id) {
  sequence subAccount { id } walletBalance { amount } } }"""
CALL_SECONDS = 6
ERROR_SAMPLES = 5

# ---- this script's own collector -------------------------------------------------------------
# The subscribers (this process) hold 10,000 client sockets: millions of objects whose full
# collections pause the process for as long as a server's, and every receipt stamped during a
# pause is stamped late. Its pauses are recorded beside the servers', and by default
# (`--client-gc freeze`) the heap is frozen once the sockets are open and again after the
# warm-up, and this process does not collect during the load and its drain, so the figures
# are the servers'.

CLIENT_GC_PAUSES: list[tuple[float, float]] = []  # (epoch at the end, ms), full collections


def _record_client_gc() -> None:
    started: list[float] = []

    def timed(phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            CLIENT_GC_PAUSES.append((time.time(), (time.perf_counter() - started[0]) * 1000))

    gc.callbacks.append(timed)


# ---- the publisher: a process of its own, driven over a pipe ------------------------------------


CALL = {"direction": "OUTBOUND", "channel": "PHONE", "status": "COMPLETED", "tier": "PREMIUM"}


def _call(gid: str) -> dict[str, Any]:
    started = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    call = {"externalId": uuid.uuid4().hex, "subAccountId": gid, "startedAt": started}
    return CALL | call | {"durationSeconds": CALL_SECONDS}


async def _paced(items: list[Any], rate: float, start: Any) -> None:
    """Calls `start(i, item, scheduled)` for each item at `rate` per second (open loop)."""
    t0 = time.monotonic() + 0.1
    for i, item in enumerate(items):
        scheduled = t0 + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
        await start(i, item, scheduled)


class HttpPool:
    """Keep-alive HTTP/1.1 POSTs to one server, at most `size` connections: much cheaper in CPU
    than httpx, on cores shared with the servers. Understands what uvicorn answers here only:
    a status line, headers, a Content-Length body."""

    IDLE_S = 2.0  # below uvicorn's 5 s keep-alive timeout: reuse no connection it may close

    def __init__(self, url: str, size: int) -> None:
        self.host, port = url.split("://", 1)[1].rsplit(":", 1)
        self.port = int(port)
        self.gate = asyncio.Semaphore(size)
        self.idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes, headers: bytes) -> tuple[int, bytes]:
        async with self.gate:
            while self.idle and time.monotonic() - self.idle[-1][0] > self.IDLE_S:
                self.idle.pop()[2].close()
            if self.idle:
                _, reader, writer = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(
                    b"POST %s HTTP/1.1\r\nhost: %s:%d\r\ncontent-type: application/json\r\n"
                    b"%scontent-length: %d\r\n\r\n%s"
                    % (path.encode(), self.host.encode(), self.port, headers, len(body), body)
                )
                lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                fields = dict(
                    (name.strip().lower(), value.strip().lower())
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                )
                data = await reader.readexactly(int(fields["content-length"]))
            except BaseException:
                writer.close()
                raise
            if fields.get("connection") == "close":
                writer.close()
            else:
                self.idle.append((time.monotonic(), reader, writer))
            return int(lines[0].split(" ", 2)[1]), data

    def close(self) -> None:
        for _, _, writer in self.idle:
            writer.close()


async def publish_http(servers: list[str], plan: list[tuple[int, str, str]], rate: float) -> list:
    """plan: (server index, API key, sub-account id). Returns one record per item: (sub-account
    id, t_sent, t_answered, ok, error, start lag in s, attempts). At most one call per
    sub-account in flight, so its commit order is its send order. A request that fails on the
    connection is sent again with the same call: `recordCalls` is idempotent on externalId, so
    the retry records it or answers that it is a duplicate (recorded by the first attempt)."""
    pools = [HttpPool(url, 64) for url in servers]
    locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
    records: list[Any] = [None] * len(plan)
    tasks = []

    async def one(i: int, item: tuple[int, str, str], scheduled: float) -> None:
        server, key, gid = item
        headers = b"authorization: Bearer %s\r\n" % key.encode()
        body = orjson.dumps({"query": RECORD, "variables": {"calls": [_call(gid)]}})
        ok, error, attempts = False, None, 0
        async with locks[gid]:
            lag, t_sent = time.monotonic() - scheduled, time.time()
            while attempts < 3:
                attempts += 1
                try:
                    async with asyncio.timeout(120):
                        status, data = await pools[server].post("/graphql", body, headers)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                    error = repr(exc)[:300]
                    continue
                except Exception as exc:
                    error = repr(exc)[:300]
                    break
                answer = orjson.loads(data) if status == 200 else {}
                recorded = (answer.get("data") or {}).get("recordCalls") or {}
                ok = not answer.get("errors") and (
                    recorded.get("accepted") == 1
                    or (attempts > 1 and recorded.get("duplicates") == 1)
                )
                error = None if ok else f"{status} {data[:300]!r}"
                break
            records[i] = (gid, t_sent, time.time(), ok, error, lag, attempts)

    async def start(i: int, item: tuple[int, str, str], scheduled: float) -> None:
        tasks.append(asyncio.create_task(one(i, item, scheduled)))

    try:
        await _paced(plan, rate, start)
        await asyncio.gather(*tasks)
    finally:
        for pool in pools:
            pool.close()
    return records


async def publish_redis(url: str, plan: list[tuple[str, int]], rate: float) -> list:
    """plan: (channel, the message's number on that channel: 1, 2, … over all phases)."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    records: list[Any] = []

    async def start(i: int, item: tuple[str, int], scheduled: float) -> None:
        channel, number = item
        lag, t_sent = time.monotonic() - scheduled, time.time()
        try:
            await client.publish(channel, orjson.dumps({"n": number}))
            ok, error = True, None
        except Exception as exc:
            ok, error = False, repr(exc)[:300]
        records.append((channel, t_sent, time.time(), ok, error, lag, 1))

    try:
        await _paced(plan, rate, start)
    finally:
        await client.aclose()
    return records


def run_phase(command: str, options: dict[str, Any]) -> list:
    phase = {"http": publish_http, "redis": publish_redis}[command]
    return harness.run_async(functools.partial(phase, **options))


class Publisher:
    """A process of its own (spawned), so that its CPU is counted apart, running phases."""

    def __init__(self) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(max_workers=1, mp_context=spawn)
        self.pid = self.pool.submit(os.getpid).result()

    async def run(self, command: str, **options: Any) -> list:
        return await asyncio.wrap_future(self.pool.submit(run_phase, command, options))

    def stop(self) -> None:
        self.pool.shutdown(cancel_futures=True)


# ---- layout: sub-accounts, subscriptions and sockets --------------------------------------------


@dataclass
class Layout:
    targets: list[str]  # sub-account ids, in publish order (agencies interleaved)
    watched: list[str]  # the targets the load goes to
    key_of: dict[str, str]  # sub-account id -> its agency's ingest key
    sub_target: list[str]  # subscription index -> sub-account id
    subs_of: dict[str, list[int]]  # sub-account id -> subscription indexes
    sockets: list[tuple[int, str, list[int]]]  # (server index, token, subscription indexes)

    def server_of_subscription(self) -> list[int]:
        server = [0] * len(self.sub_target)
        for index, _, subs in self.sockets:
            for j in subs:
                server[j] = index
        return server


def lay_out(agencies: list[dict[str, Any]], args: argparse.Namespace) -> Layout:
    """Subscriptions over sub-accounts: `--watchers` on each of the first `--watched` (the ones
    the load goes to; all of them when it is 0) and the rest spread evenly over the others;
    `--per-connection` of one agency's on a socket, shuffled, sockets alternating servers."""
    longest = max(len(a["targets"]) for a in agencies)
    targets = [a["targets"][k] for k in range(longest) for a in agencies if k < len(a["targets"])]
    watched = args.watched or len(targets)
    share = {g: args.watchers for g in targets[:watched]} if watched < len(targets) else {}
    rest, idle = args.subscriptions - sum(share.values()), targets[len(share) :]
    for n, gid in enumerate(idle):
        share[gid] = rest // len(idle) + (1 if n < rest % len(idle) else 0)
    sub_target: list[str] = []
    subs_of: dict[str, list[int]] = defaultdict(list)
    key_of, sockets, rng = {}, [], random.Random(7)
    for agency in agencies:
        mine = []
        for gid in agency["targets"]:
            key_of[gid] = agency["key"]
            for _ in range(share[gid]):
                subs_of[gid].append(len(sub_target))
                mine.append(len(sub_target))
                sub_target.append(gid)
        rng.shuffle(mine)
        for start in range(0, len(mine), args.per_connection):
            chunk = mine[start : start + args.per_connection]
            sockets.append((len(sockets) % 2, agency["token"], chunk))
    return Layout(targets, targets[:watched], key_of, sub_target, dict(subs_of), sockets)


# ---- receivers: what each subscription received, as (wall-clock time, sequence) -----------------


@dataclass
class Received:
    subscriptions: int
    received: list[list[tuple[float, int]]] = field(default_factory=list)
    total: int = 0
    ready: int = 0  # subscriptions with at least one event
    problems: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def __post_init__(self) -> None:
        self.received = [[] for _ in range(self.subscriptions)]

    def add(self, j: int, t: float, sequence: int) -> None:
        self.ready += not self.received[j]
        self.received[j].append((t, sequence))
        self.total += 1

    def problem(self, kind: str, detail: Any) -> None:
        self.problems[kind] += 1
        if len(self.samples[kind]) < ERROR_SAMPLES:
            self.samples[kind].append(str(detail)[:400])


class WebSocketSubscribers(Received):
    """Every socket's reader, in this process (graphql-transport-ws, the owner's token)."""

    def __init__(self, layout: Layout, compression: str | None) -> None:
        super().__init__(len(layout.sub_target))
        self.layout, self.compression = layout, compression
        self.sockets: list[Any] = []
        self.readers: list[asyncio.Task[None]] = []
        self.pings: list[float] = []  # when each keep-alive ping arrived
        self.closing = False

    async def open(self, url: str, token: str, subs: list[int], gate: asyncio.Semaphore) -> None:
        subscriptions = [(str(j), USAGE, {"id": self.layout.sub_target[j]}) for j in subs]
        options = {"compression": self.compression, "open_timeout": 120, "max_size": 2**20}
        options["ping_interval"] = None  # no WebSocket pings of its own, as browsers
        async with gate:
            try:
                ws = await harness.subscribe(url, token, subscriptions, **options)
            except Exception as exc:
                self.problem("socket_open_failed", repr(exc))
                return
        self.sockets.append(ws)
        self.readers.append(asyncio.create_task(self.read(ws)))

    async def read(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                raw = await ws.recv(decode=False)
                t = time.time()
                message = orjson.loads(raw)
                kind = message.get("type")
                if kind == "next":
                    j, payload = int(message["id"]), message.get("payload") or {}
                    event = (payload.get("data") or {}).get("usageUpdated")
                    if payload.get("errors") or event is None:
                        self.problem("next_with_errors", payload)
                    elif event["subAccount"]["id"] != self.layout.sub_target[j]:
                        self.problem("wrong_sub_account", event)
                    else:
                        self.add(j, t, int(event["sequence"]))
                elif kind == "ping":
                    self.pings.append(t)
                    await ws.send('{"type":"pong"}')
                elif kind != "pong":
                    self.problem(str(kind), message)  # error, complete, anything else
        except ConnectionClosed as exc:
            if not self.closing:
                self.problem("socket_closed", repr(exc))

    async def close(self) -> None:
        self.closing = True
        gate = asyncio.Semaphore(100)

        async def one(ws: Any) -> None:
            async with gate:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 10)

        await asyncio.gather(*(one(ws) for ws in self.sockets))
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


class RedisSubscribers(Received):
    """The baseline: two pub/sub connections (one per "server process") each subscribed to
    every channel; a queue and a task per subscriber (the shape of the server's local fan-out),
    the subscribers split between the connections as the sockets between the servers."""

    def __init__(self, url: str, layout: Layout) -> None:
        super().__init__(len(layout.sub_target))
        self.url, self.layout = url, layout
        self.tasks: list[asyncio.Task[None]] = []
        self.clients: list[Any] = []

    async def start(self) -> None:
        import redis.asyncio as redis

        channels = sorted(set(self.layout.sub_target))
        local: list[dict[bytes, list[asyncio.Queue[bytes]]]] = [defaultdict(list) for _ in (0, 1)]
        server_of = self.layout.server_of_subscription()
        for j, channel in enumerate(self.layout.sub_target):
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            local[server_of[j]][channel.encode()].append(queue)
            self.tasks.append(asyncio.create_task(self.consume(j, queue)))
        for process in (0, 1):
            self.clients.append(client := redis.Redis.from_url(self.url))
            pubsub, subscribed = client.pubsub(), asyncio.Event()
            for start in range(0, len(channels), 500):
                await pubsub.subscribe(*channels[start : start + 500])
            reader = self.read(pubsub, local[process], len(channels), subscribed)
            self.tasks.append(asyncio.create_task(reader))
            await asyncio.wait_for(subscribed.wait(), 60)

    async def read(self, pubsub: Any, local: dict, channels: int, ready: asyncio.Event) -> None:
        confirmed = 0
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            if message["type"] == "message":
                for queue in local[message["channel"]]:
                    queue.put_nowait(message["data"])
            elif message["type"] == "subscribe":
                confirmed += 1
                if confirmed == channels:
                    ready.set()

    async def consume(self, j: int, queue: asyncio.Queue[bytes]) -> None:
        while True:
            data = await queue.get()
            self.add(j, time.time(), orjson.loads(data)["n"])

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for client in self.clients:
            await client.aclose()


# ---- matching deliveries to publishes ------------------------------------------------------------


def latency(seconds: list[float]) -> dict[str, Any] | None:
    return harness.summary_ms(seconds) if seconds else None


def match(
    records: dict[str, list[tuple[Any, ...]]],
    subs_of: dict[str, list[int]],
    received: list[list[tuple[float, int]]],
    stamps: dict[int, tuple[float, float | None]] | None = None,
) -> dict[str, Any]:
    """records: per sub-account (or channel), its publishes in send order, each (phase, t_sent,
    t_answered, ok, t_scheduled). The distinct sequences its subscribers received, in order,
    are its events: the n-th is its n-th accepted publish. Figures per phase; from the schedule
    = from when the open-loop plan meant to send (the publisher's waiting included).

    stamps: the outbox's created_at and published_at by sequence, to split the way into the
    request and the relay (created -> published, per event) and Redis, the server's fan-out
    and the socket (published -> received, per delivery; the relay stamps a whole batch once
    it is out, so this can be negative)."""
    stamps = stamps or {}
    seconds: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    way: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    checks: Counter[str] = Counter()
    for key, publishes in records.items():
        accepted = [p for p in publishes if p[3]]
        checks["keys_with_failed_publishes"] += len(accepted) != len(publishes)
        subs = subs_of.get(key, [])
        sequences = sorted({seq for j in subs for _, seq in received[j]})
        if len(sequences) > len(accepted):
            checks["unexpected_events"] += len(sequences) - len(accepted)
            checks["keys_with_unexpected_events"] += 1
        else:  # seen by no subscriber at all; taken to be the latest ones (drain cut-off)
            checks["events_seen_by_no_subscriber"] += len(accepted) - len(sequences)
        rank = {seq: n for n, seq in enumerate(sequences)}
        for seq, n in rank.items():
            created, published = stamps.get(seq, (0.0, None))
            if published is not None and n < len(accepted):
                way[accepted[n][0]]["outbox_created_at_to_published_at"].append(published - created)
        for j in subs:
            seen: set[int] = set()
            previous = -1
            for t, seq in received[j]:
                checks["out_of_order_or_repeated"] += seq <= previous
                previous, n = max(previous, seq), rank[seq]
                if n in seen:
                    checks["duplicates"] += 1
                    continue
                seen.add(n)
                if n >= len(accepted):
                    continue
                phase, t_sent, t_answered, _, t_scheduled = accepted[n]
                way[phase]["latency_from_send"].append(t - t_sent)
                seconds[phase].append((t_sent, t - t_sent, t))
                way[phase]["latency_from_commit"].append(t - t_answered)
                way[phase]["latency_from_schedule"].append(t - t_scheduled)
                published = stamps.get(seq, (0.0, None))[1]
                if published is not None:
                    way[phase]["outbox_published_at_to_received"].append(t - published)
            for n, publish in enumerate(accepted):
                counts[publish[0]]["expected"] += 1
                counts[publish[0]]["received" if n in seen else "lost"] += 1
    names = ["latency_from_send", "latency_from_commit", "latency_from_schedule"]
    if stamps:
        names += ["outbox_created_at_to_published_at", "outbox_published_at_to_received"]
    phases = {
        phase: {"expected_deliveries": c["expected"], "received": c["received"], "lost": c["lost"]}
        | {name: latency(way[phase][name]) for name in names}
        for phase, c in counts.items()
    }
    names = ["duplicates", "out_of_order_or_repeated", "unexpected_events"]
    names += ["keys_with_unexpected_events", "events_seen_by_no_subscriber"]
    return {
        "phases": phases,
        "checks": {k: checks[k] for k in [*names, "keys_with_failed_publishes"]},
        "worst_load_seconds": worst_seconds(seconds["load"]),
    }


def received_span(ds: list[tuple[float, float, float]]) -> list[float]:
    return [round(min(d[2] for d in ds), 3), round(max(d[2] for d in ds), 3)]


def worst_seconds(deliveries: list[tuple[float, float, float]]) -> list[dict[str, Any]]:
    """The five seconds of the load (by send time) with the latest deliveries: whether the tail
    is one stall or spread out, and when (epoch, to set beside the GC pauses' stamps)."""
    if not deliveries:
        return []
    t0 = min(d[0] for d in deliveries)
    by_second: dict[int, list[tuple[float, float, float]]] = defaultdict(list)
    for d in deliveries:
        by_second[int(d[0] - t0)].append(d)
    rows = []
    for second, ds in by_second.items():
        late = [d for d in ds if d[1] > 0.25]
        rows.append(
            {
                "second": second,
                "deliveries": len(ds),
                "over_250_ms": len(late),
                "max_ms": round(max(d[1] for d in ds) * 1000, 1),
                "received_from_to": received_span(ds),
            }
        )
    return sorted(rows, key=lambda r: -r["max_ms"])[:5]


def publish_stats(records: list[tuple[Any, ...]], seconds: float) -> dict[str, Any]:
    ok, failed = [r for r in records if r[3]], [r for r in records if not r[3]]
    span = max(r[1] for r in records) - min(r[1] for r in records) if records else 0.0
    lag = latency([r[5] for r in records]) or {}
    return {
        "sent": len(records),
        "accepted": len(ok),
        "failed": len(failed),
        "failure_samples": [r[4] for r in failed[:ERROR_SAMPLES]],
        "retried": sum(1 for r in records if r[6] > 1),
        "events_per_second": round(len(records) / span, 1) if span > 0 else None,
        "request_latency": latency([r[2] - r[1] for r in ok]),
        "start_lag_p99_ms": lag.get("p99_ms"),
        "start_lag_max_ms": lag.get("max_ms"),
        "seconds": seconds,
    }


async def wait_for(condition: Any, limit_s: float) -> float:
    """Seconds until `condition()` held (or `limit_s` passed). Polls: waking a waiter on each
    of thousands of deliveries would cost more."""
    t0 = time.monotonic()
    while not condition() and time.monotonic() - t0 < limit_s:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    return round(time.monotonic() - t0, 2)


async def drain(received: Received, expected: int, args: argparse.Namespace) -> dict[str, Any]:
    """Until every expected delivery arrived, nothing arrived for `--quiet` s, or `--drain` s."""
    t0 = last_change = time.monotonic()
    last_total, ended_by = received.total, "all received"
    while received.total < expected:
        await asyncio.sleep(0.1)
        now = time.monotonic()
        if received.total != last_total:
            last_total, last_change = received.total, now
        elif now - last_change >= args.quiet:
            ended_by = f"nothing received for {args.quiet:g} s"
            break
        if now - t0 >= args.drain:
            ended_by = f"limit of {args.drain:g} s"
            break
    return {"seconds": round(time.monotonic() - t0, 2), "ended_by": ended_by}


async def warm_up(
    args: argparse.Namespace, layout: Layout, subscribers: Received, publish: Any
) -> tuple[list, dict[str, Any]]:
    """One event for every sub-account with subscribers; each subscription must receive its
    own (the proof that it is subscribed)."""
    t0 = time.monotonic()
    records = await publish([g for g in layout.targets if layout.subs_of.get(g)])
    ready = await wait_for(
        lambda: subscribers.ready == subscribers.subscriptions, args.warmup_timeout
    )
    print(
        f"warm-up: {sum(1 for r in records if r[3])}/{len(records)} events accepted,"
        f" {subscribers.ready}/{subscribers.subscriptions} subscriptions received theirs"
        f" {ready}s after the last one ({time.monotonic() - t0:.1f}s in all)",
        flush=True,
    )
    ready_now = {"subscriptions_with_event": subscribers.ready, "all_received_after_s": ready}
    return records, {"calls": len(records), **ready_now}


async def load(
    args: argparse.Namespace,
    layout: Layout,
    subscribers: Received,
    publish: Any,
    warmup: tuple[list, dict[str, Any]],
    cpu_groups: dict[str, list[int]],
    stamps: Any = None,
) -> dict[str, Any]:
    """`--rate` events a second for `--seconds`, round-robin over the watched sub-accounts,
    then the drain, the CPU by group around both; every delivery matched to its publish."""
    count = int(args.rate * args.seconds)
    problems_before = Counter(subscribers.problems)
    with harness.cpu_used(cpu_groups) as cpu:
        t0 = time.monotonic()
        records = await publish([layout.watched[i % len(layout.watched)] for i in range(count)])
        load_s = round(time.monotonic() - t0, 2)
        by_key: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for phase, phase_records in (("warmup", warmup[0]), ("load", records)):
            for key, t_sent, t_answered, ok, _, lag, _ in phase_records:
                by_key[key].append((phase, t_sent, t_answered, ok, t_sent - lag))
        expected = sum(
            sum(p[3] for p in pubs) * len(layout.subs_of.get(k, [])) for k, pubs in by_key.items()
        )
        drained = await drain(subscribers, expected, args)
    await asyncio.sleep(1)  # anything arriving twice
    cpu["subscribers (this script)"] = cpu.pop("this script")
    return {
        "warmup": warmup[1],
        "publish": publish_stats(records, load_s),
        "drain": drained,
        **match(by_key, layout.subs_of, subscribers.received, await stamps() if stamps else None),
        "subscriber_problems": dict(subscribers.problems),
        "subscriber_problems_during_load": dict(subscribers.problems - problems_before),
        "problem_samples": dict(subscribers.samples),
        "cpu_during_load": {"cpu_seconds": cpu, "cores": harness.cores(cpu)},
    }


# ---- the runs ------------------------------------------------------------------------------------


async def redis_baseline(args: argparse.Namespace, publisher: Publisher) -> dict[str, Any]:
    """Raw Redis pub/sub in the shape of the real run: a channel per sub-account."""
    prefix = f"bench-fanout:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    channels = [f"{prefix}:{i}" for i in range(args.sub_accounts)]
    agencies = [
        {"targets": channels[a :: args.agencies], "key": "", "token": ""}
        for a in range(args.agencies)
    ]
    layout = lay_out(agencies, args)
    subscribers = RedisSubscribers(args.redis, layout)
    await subscribers.start()
    numbers: Counter[str] = Counter()

    async def publish(targets: list[str]) -> list:
        plan = [(c, numbers.update([c]) or numbers[c]) for c in targets]
        return await publisher.run("redis", url=args.redis, plan=plan, rate=args.rate)

    try:
        warmup = await warm_up(args, layout, subscribers, publish)
        groups = {"publisher": [publisher.pid]}
        result = await load(args, layout, subscribers, publish, warmup, groups)
    finally:
        await subscribers.close()
    what = f"{args.sub_accounts} Redis channels, 2 pub/sub connections each subscribed to all;"
    what += f" {args.subscriptions} in-process subscribers (asyncio queue + task each, split"
    what += " between the connections like the sockets between the servers); a separate"
    return {"what": f"{what} publisher process at {args.rate}/s", **result}


async def seed(args: argparse.Namespace, urls: list[str]) -> list[dict[str, Any]]:
    """`--agencies` agencies on Agency Unlimited, `--sub-accounts` spread over them, each given
    PREMIUM minutes from its primary, an ingest API key per agency; through the API."""
    clients = [httpx.AsyncClient(base_url=url, timeout=120) for url in urls]
    try:
        gate = asyncio.Semaphore(2)  # argon2 per sign-up

        async def sign_up(a: int) -> Any:
            async with gate:
                name, email = f"Fanout {a}", f"fanout{a}@bench.example"
                return await harness.sign_up_on_plan(clients[a % 2], name, email, PLAN)

        signed = await asyncio.gather(*(sign_up(a) for a in range(args.agencies)))
        per, extra = divmod(args.sub_accounts, args.agencies)
        sizes = [per + (a < extra) for a in range(args.agencies)]
        gate = asyncio.Semaphore(8)

        async def sub_account(a: int, n: int) -> str:
            token, client = signed[a].token, clients[n % 2]
            async with gate:
                name, email = f"Client {a}-{n}", f"c{a}-{n}@fanout.example"
                gid = await harness.create_sub_account(client, token, name, email)
                minutes = max(1, min(10, 1800 // max(1, sizes[a])))
                primary = signed[a].primary_gid
                await harness.transfer(client, token, primary, gid, minutes, "PREMIUM")
                return gid

        agencies = []
        for a, agency in enumerate(signed):
            targets = await asyncio.gather(*(sub_account(a, n) for n in range(sizes[a])))
            key = await harness.api_key(clients[0], agency.token)
            agencies.append({"token": agency.token, "key": key, "targets": targets})
        return agencies
    finally:
        for client in clients:
            await client.aclose()


async def outbox_stamps(session: Session) -> dict[int, tuple[float, float | None]]:
    """created_at and published_at (epoch seconds) of every sequenced outbox row."""
    async with session.connect() as conn:
        rows = await conn.fetch(
            "SELECT sequence, extract(epoch FROM created_at)::float8,"
            " extract(epoch FROM published_at)::float8 FROM outbox WHERE sequence IS NOT NULL"
        )
    return {int(r[0]): (r[1], r[2]) for r in rows}


def rss_kib(servers: list[Server]) -> list[int]:
    return [s.usage().rss_bytes // 1024 for s in servers]


async def fanout_run(
    session: Session, args: argparse.Namespace, servers: list[Server], publisher: Publisher
) -> dict[str, Any]:
    urls = [s.url for s in servers]
    t0 = time.monotonic()
    agencies = await seed(args, urls)
    seeding_s = round(time.monotonic() - t0, 1)
    print(f"seeded {args.agencies} agencies, {args.sub_accounts} sub-accounts in {seeding_s}s")
    layout = lay_out(agencies, args)
    # The seeding's own events must be out before anyone subscribes: one reaching a new
    # subscription would count as an unexpected event.
    unpublished = await session.wait_outbox_published(30)
    await asyncio.sleep(2)
    rss_before = rss_kib(servers)
    subscribers = WebSocketSubscribers(layout, None if args.compression == "none" else "deflate")
    gate = asyncio.Semaphore(args.open_concurrency)
    t0 = time.monotonic()
    await asyncio.gather(
        *(
            subscribers.open(urls[server], token, subs, gate)
            for server, token, subs in layout.sockets
        )
    )
    opening_s = round(time.monotonic() - t0, 1)
    if args.client_gc == "freeze":
        gc.collect()
        gc.freeze()
    print(
        f"{len(subscribers.sockets)} sockets open, {args.subscriptions} subscriptions sent in"
        f" {opening_s}s ({subscribers.problems['socket_open_failed']} sockets failed)",
        flush=True,
    )
    await asyncio.sleep(3)
    rss_subscribed = rss_kib(servers)

    async def publish(targets: list[str]) -> list:
        plan = [(i % 2, layout.key_of[gid], gid) for i, gid in enumerate(targets)]
        return await publisher.run("http", servers=urls, plan=plan, rate=args.rate)

    try:
        warmup = await warm_up(args, layout, subscribers, publish)
        await session.wait_outbox_published(60)  # the servers' backlog too
        groups = {"server processes": [s.process.pid for s in servers]}
        groups["publisher"] = [publisher.pid]
        with harness.cpu_used(groups) as idle_cpu:  # what the idle screens cost: keep-alive
            await asyncio.sleep(args.idle)
        rss_idle = rss_kib(servers)
        stamps = functools.partial(outbox_stamps, session)
        if args.client_gc == "freeze":
            # What the warm-up made is frozen too, and this process does not collect during
            # the load and its drain (a few MB of garbage for 20 s), so no receipt is stamped
            # late by the load generator's own collector.
            gc.collect()
            gc.freeze()
            gc.disable()
        load_started = time.time()
        try:
            result = await load(args, layout, subscribers, publish, warmup, groups, stamps)
        finally:
            gc.enable()
        result["load_window"] = [load_started, time.time()]
        window = result["load_window"]
        # Keep-alive pings the sockets received, by second of the load: a burst of them is work
        # for the servers and for this process at once.
        in_load = [t for t in subscribers.pings if window[0] <= t <= window[1]]
        pings = Counter(int(t - window[0]) for t in in_load)
        result["pings_received_by_load_second"] = dict(sorted(pings.items()))
        result["client_gc"] = {
            "policy": args.client_gc,
            "pauses_ms": [round(ms) for _, ms in CLIENT_GC_PAUSES if ms >= 20],
            "pauses_ms_during_load": [
                round(ms) for t, ms in CLIENT_GC_PAUSES if window[0] <= t <= window[1] and ms >= 20
            ],
        }
        rss_after = rss_kib(servers)
    finally:
        await subscribers.close()
    per_server = Counter(layout.server_of_subscription())
    subscriptions = len(layout.sub_target)
    return {
        "seeding_s": seeding_s,
        "unpublished_events_before_subscribing": unpublished,
        "layout": {
            "agencies": args.agencies,
            "sub_accounts": len(layout.targets),
            "subscriptions": subscriptions,
            "watched_sub_accounts": len(layout.watched),
            "subscriptions_per_watched": [len(layout.subs_of.get(g, ())) for g in layout.watched],
            "sockets": len(layout.sockets),
            "sockets_open": len(subscribers.sockets),
            "subscriptions_per_server": [per_server[0], per_server[1]],
            "compression": args.compression,
            "opening_s": opening_s,
        },
        "memory": {
            "rss_kib_before_subscriptions": rss_before,
            "rss_kib_subscribed_before_warmup": rss_subscribed,
            "rss_kib_idle_after_warmup": rss_idle,
            "rss_kib_after_load": rss_after,
            "kb_per_idle_subscription": round((sum(rss_idle) - sum(rss_before)) / subscriptions, 1),
            "kb_per_subscription_before_warmup": round(
                (sum(rss_subscribed) - sum(rss_before)) / subscriptions, 1
            ),
        },
        "cpu_while_idle": {"cpu_seconds": idle_cpu, "cores": harness.cores(idle_cpu)},
        **result,
    }


def log_summary(server: Server, window: list[float]) -> dict[str, Any]:
    lines = server.log_path.read_text(errors="replace").splitlines()
    flagged = [line for line in lines if any(w in line for w in ("Traceback", "ERROR", "WARNING"))]
    pauses = [line.split() for line in lines if line.startswith("gc pause ")]
    during_load = [int(p[2]) for p in pauses if window[0] <= float(p[5]) <= window[1]]

    def in_load(prefix: str, ms_at: int, t_at: int) -> list[list[float]]:
        """[second of the load, ms, anything after the time] of each logged line starting with
        `prefix` in the load."""
        rows = [line.split() for line in lines if line.startswith(prefix)]
        return [
            [round(float(r[t_at]) - window[0], 1), int(r[ms_at]), *r[t_at + 1 :]]
            for r in rows
            if window[0] <= float(r[t_at]) <= window[1]
        ]

    census = [line for line in lines if line.startswith("gc gen1 census")]
    return {
        "gen1_census": census,
        "young_gc_pauses_during_load": in_load("gc young pause ", 3, 6),  # >= 20 ms
        "loop_lags_during_load": in_load("loop lag ", 2, 5),  # >= 50 ms late
        "lines": len(lines),
        "flagged_lines": len(flagged),
        "first_flagged": flagged[:5],
        "gc_pauses_ms": [int(p[2]) for p in pauses],  # full collections >= 50 ms (serve_app.py)
        "gc_pauses_ms_during_load": during_load,  # from the load's first send to its drain
    }


def verdict(run: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    load = run["phases"].get("load", {})
    p99 = (load.get("latency_from_send") or {}).get("p99_ms")
    lost, kb = load.get("lost"), run["memory"]["kb_per_idle_subscription"]
    cores = run["cpu_during_load"]["cores"]
    other = cores.get("other processes", 0) + cores.get("unattributed (processes that ended)", 0)
    return {
        "shape_as_target": args.subscriptions >= 10_000 and args.rate >= 100,
        "achieved_events_per_second": run["publish"]["events_per_second"],
        "other_processes_cores_during_load": round(other, 2),
        "machine_was_shared": other > 0.1,
        "p99_ms_from_send": p99,
        "p99_le_250_ms": p99 is not None and p99 <= 250,
        "kb_per_idle_subscription": kb,
        "kb_le_60": kb <= 60,
        "lost": lost,
        "lost_is_0": lost == 0,
    }


def raise_open_files() -> int:
    """The soft limit of open files raised to the hard one: a socket per subscription."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main() -> int:
    parser = harness.arguments(__doc__, "agencyhub_bench_fanout")
    add = parser.add_argument
    add("--subscriptions", type=int, default=10_000)
    add("--per-connection", type=int, default=1, help="subscriptions per WebSocket")
    add("--sub-accounts", type=int, default=1_000)
    add("--agencies", type=int, default=10)
    add("--watched", type=int, default=20, help="sub-accounts the load goes to (0: all)")
    add("--watchers", type=int, default=5, help="subscriptions per watched one")
    add("--rate", type=float, default=100, help="events (calls) per second")
    add("--seconds", type=float, default=20, help="of load")
    add("--drain", type=float, default=180, help="at most this long for late deliveries")
    add("--quiet", type=float, default=10, help="the drain ends after this long without any")
    add("--idle", type=float, default=5, help="idle seconds before memory is read")
    add("--warmup-timeout", type=float, default=60)
    add("--open-concurrency", type=int, default=50, help="sockets opened at a time")
    add("--compression", choices=("deflate", "none"), default="deflate")
    add("--redis", default="redis://127.0.0.1:6379/15", help="flushed first")
    add("--server-env", action="append", default=[], metavar="KEY=VALUE",
        help="extra environment for both servers (e.g. OUTBOX_POLL_SECONDS=0.1)")  # fmt: skip
    add("--skip-baseline", action="store_true", help="no raw Redis baseline")
    add("--client-gc", choices=("freeze", "default"), default="freeze",
        help="this script's collector: freeze its heap once the sockets are open")  # fmt: skip
    args = parser.parse_args()
    _record_client_gc()
    if not args.watched <= args.sub_accounts >= args.agencies:
        parser.error("--agencies and --watched must not exceed --sub-accounts")
    import redis

    nofile = raise_open_files()
    publisher = Publisher()
    try:
        with Session("fanout", args) as session:
            baseline = None
            if not args.skip_baseline:
                baseline = harness.run_async(lambda: redis_baseline(args, publisher))
                print(f"raw Redis baseline: {json.dumps(baseline['phases']['load'])}", flush=True)
            redis.Redis.from_url(args.redis).flushdb()
            extra = dict(kv.split("=", 1) for kv in args.server_env)
            env = session.env(REDIS_URL=args.redis, BENCH_GC_YOUNG="1", **extra)
            servers = session.start("server-a", "server-b", env=env)
            run = harness.run_async(lambda: fanout_run(session, args, servers, publisher))
            session.stop_servers()
            result = {"verdict": verdict(run, args), "fanout": run, "raw_redis_baseline": baseline}
            figures = {"load": run["phases"].get("load"), "memory": run["memory"]}
            figures["cpu_cores"] = run["cpu_during_load"]["cores"]
            print(json.dumps({**figures, "verdict": result["verdict"]}, indent=2))
            logs = {s.name: log_summary(s, run["load_window"]) for s in servers}
            settings = {**vars(args), "open_files_limit": nofile}
            session.write({"settings": settings, **result, "server_logs": logs})
    finally:
        publisher.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
