"""Subscription fan-out: `usageUpdated` over WebSockets across two server processes, from
`recordCalls` to the subscriber, next to raw Redis pub/sub of the same shape.

    .venv/bin/python bench/fanout.py [--subscriptions 10000] [--per-connection 10]
                                     [--sub-accounts 1000] [--agencies 10]
                                     [--rate 100] [--seconds 30]

Issue target: 10,000 concurrent subscriptions over 2 server processes on this 2-core machine,
publish-to-receive p99 <= 250 ms at 100 events/s, <= 60 KB of server memory per idle
subscription, 0 events lost.

1. Raw Redis baseline first (nothing else running): one channel per sub-account, two pub/sub
   connections (one per "server process") each subscribed to every channel, and in-process the
   same number of subscribers as below, split between the two connections as the WebSocket
   subscribers are split between the servers. Each subscriber has a queue and a task of its
   own (the shape of the server's local fan-out); the reader puts every message into the
   queues of its channel's local subscribers, the task decodes it (orjson) and timestamps it.
   The publisher process publishes to the channels at `--rate` like the real run (warm-up
   round, then `--seconds` of load).
2. A fresh database (`--database`, migrated), Redis `--redis` flushed, two server processes
   (bench/serve_app.py) on the same DATABASE_URL and REDIS_URL; both run the outbox relay.
3. Seeds through the API: `--agencies` agencies on Agency Unlimited, `--sub-accounts` spread
   over them, each given PREMIUM minutes by `transferMinutes` from its primary, one ingest API
   key per agency.
4. Opens `--subscriptions` `usageUpdated(subAccountId: X)` subscriptions, the same number for
   every sub-account, `--per-connection` on one graphql-transport-ws socket (the agency owner's
   token in connection_init; a socket carries one agency's subscriptions, shuffled), sockets
   alternating between the two servers; `--open-concurrency` sockets at a time.
5. Warm-up: one `recordCalls` per sub-account at `--rate`; waits until every subscription has
   received its event (that is the proof it is subscribed). Server RSS (VmRSS, the process and
   any children) is read before the sockets open and after the warm-up, idle:
   KB per idle subscription = the increase summed over both servers / subscriptions (it
   includes the sockets' share).
6. Load: a publisher in a separate process posts `recordCalls` with one call each at `--rate`
   for `--seconds`, round-robin over the sub-accounts (agencies interleaved), alternating
   between the servers, with at most one call per sub-account in flight (so the commit order
   of one sub-account's events is the send order; when the servers answer slower than a
   sub-account's turn comes round, the publisher falls behind its schedule: the achieved rate
   and the start lag are reported). It keeps the wall-clock time each request was planned,
   sent and answered (committed).
7. Matching: every event a subscriber receives carries its outbox sequence. For a sub-account,
   the distinct sequences its subscribers received, in order, are its events; the n-th is the
   n-th accepted `recordCalls` for it. Latency = receive time - send time (also - commit time
   and - planned time); lost = expected deliveries - distinct deliveries once the drain ends:
   all delivered, or nothing received for `--quiet` s, or `--drain` s (then "lost" includes
   the late). Duplicates, out-of-order deliveries, wrong sub-accounts and every `error`,
   `complete`, errors in `next` and closed socket are counted.

Subscribers (one process, uvloop, `websockets`, orjson) and the publisher (another process,
uvloop, a minimal keep-alive HTTP/1.1 client) are Python on the same 2 cores as the servers,
PostgreSQL and Redis; their CPU is reported, and so is what other processes took (a test run
on the same machine skews every figure). Prints a JSON summary and writes
bench/results/fanout-<timestamp>.json; stops the servers and drops the database at the end,
also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from _account_manager import gql, sign_up_on_plan, summary_ms, working_tree
from _common import (
    BENCH_DIR,
    DEFAULT_PG,
    RESULTS_DIR,
    app_env,
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
from viewer_http import CLK_TCK, Server

CREATE = """mutation($i: CreateSubAccountInput!) { createSubAccount(input: $i) {
  subAccount { id } userErrors { code message } } }"""
GRANT = """mutation($i: TransferMinutesInput!) { transferMinutes(input: $i) {
  transfer { id } userErrors { code message } } }"""
KEY = 'mutation { createApiKey(input: {name: "fanout"}) { secret } }'
RECORD = """mutation($calls: [CallInput!]!) { recordCalls(input: {calls: $calls}) {
  accepted duplicates rejected { code } } }"""
USAGE = """subscription($id: ID) { usageUpdated(subAccountId: $id) {
  sequence subAccount { id } walletBalance { amount } } }"""
PROTOCOL = "graphql-transport-ws"
CALL_SECONDS = 6
ERROR_SAMPLES = 5


# --------------------------------------------------------------------------------------------
# The publisher: a process of its own, driven over a pipe.


def _call(gid: str) -> dict[str, Any]:
    return {
        "externalId": uuid.uuid4().hex,
        "subAccountId": gid,
        "direction": "OUTBOUND",
        "channel": "PHONE",
        "status": "COMPLETED",
        "tier": "PREMIUM",
        "startedAt": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "durationSeconds": CALL_SECONDS,
    }


async def _paced(items: list[Any], rate: float, start: Any) -> None:
    """Calls `start(i, item, scheduled)` for each item at `rate` per second (open loop)."""
    t0 = time.monotonic() + 0.1
    for i, item in enumerate(items):
        scheduled = t0 + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await start(i, item, scheduled)


class HttpPool:
    """Keep-alive HTTP/1.1 POSTs to one server, at most `size` connections. Much cheaper in CPU
    than httpx, and the publisher shares the 2 cores with the servers. Only what uvicorn
    answers here is understood: a status line, headers, a Content-Length body."""

    IDLE_S = 2.0  # below uvicorn's 5 s keep-alive timeout: reuse no connection it may close

    def __init__(self, url: str, size: int) -> None:
        address = url.split("://", 1)[1]
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.gate = asyncio.Semaphore(size)
        self.idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes, headers: bytes) -> tuple[int, bytes]:
        async with self.gate:
            now = time.monotonic()
            while self.idle and now - self.idle[-1][0] > self.IDLE_S:
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
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                fields = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        fields[name.strip().lower()] = value.strip().lower()
                if "content-length" not in fields:
                    raise RuntimeError(f"answer without content-length: {head[:200]!r}")
                data = await reader.readexactly(int(fields["content-length"]))
            except BaseException:
                writer.close()
                raise
            if fields.get("connection") == "close":
                writer.close()
            else:
                self.idle.append((time.monotonic(), reader, writer))
            return status, data

    def close(self) -> None:
        for _, _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def publish_http(servers: list[str], plan: list[tuple[int, str, str]], rate: float) -> list:
    """plan: (server index, API key, sub-account id). Returns one record per item:
    (sub-account id, t_sent, t_answered, ok, error, start lag in s, attempts).

    A request that fails on the connection (e.g. the server closed a kept-alive one) is sent
    again with the same call: `recordCalls` is idempotent on externalId, so the retry either
    records it or answers that it was a duplicate (= recorded by the first attempt)."""
    pools = [HttpPool(url, 64) for url in servers]
    locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
    records: list[Any] = [None] * len(plan)
    tasks = []

    async def one(i: int, item: tuple[int, str, str], scheduled: float) -> None:
        server, key, gid = item
        headers = b"authorization: Bearer %s\r\n" % key.encode()
        body = orjson.dumps({"query": RECORD, "variables": {"calls": [_call(gid)]}})
        ok, error, attempts = False, None, 0
        async with locks[gid]:  # one call per sub-account in flight: commit order = send order
            lag = time.monotonic() - scheduled
            t_sent = time.time()
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
                recorded = ((answer.get("data") or {}).get("recordCalls")) or {}
                ok = not answer.get("errors") and (
                    recorded.get("accepted") == 1
                    or (attempts > 1 and recorded.get("duplicates") == 1)
                )
                error = None if ok else f"{status} {data[:300]!r}"
                break
            t_answered = time.time()
        records[i] = (gid, t_sent, t_answered, ok, error, lag, attempts)

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
        message = orjson.dumps({"n": number})
        lag = time.monotonic() - scheduled
        t_sent = time.time()
        try:
            await client.publish(channel, message)
            ok, error = True, None
        except Exception as exc:
            ok, error = False, repr(exc)[:300]
        records.append((channel, t_sent, time.time(), ok, error, lag, 1))

    try:
        await _paced(plan, rate, start)
    finally:
        await client.aclose()
    return records


async def _phase(command: str, options: dict[str, Any]) -> list:
    if command == "http":
        return await publish_http(options["servers"], options["plan"], options["rate"])
    if command == "redis":
        return await publish_redis(options["url"], options["plan"], options["rate"])
    raise ValueError(command)


def publisher_main(conn: Any) -> None:
    """The publisher process: runs the phases the parent sends until told to stop."""
    while True:
        command, options = conn.recv()
        if command == "stop":
            return
        try:
            conn.send(("ok", run_async(functools.partial(_phase, command, options))))
        except Exception as exc:
            conn.send(("failed", repr(exc)))


class Publisher:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=publisher_main, args=(child,), daemon=True)
        self.process.start()
        self.pid = self.process.pid

    async def run(self, command: str, **options: Any) -> list:
        self._conn.send((command, options))
        status, answer = await asyncio.to_thread(self._conn.recv)
        if status != "ok":
            raise RuntimeError(f"publisher failed: {answer}")
        return list(answer)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(("stop", None))
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


# --------------------------------------------------------------------------------------------
# Layout: sub-accounts, subscriptions and sockets.


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


def lay_out(
    agencies: list[dict[str, Any]],
    subscriptions: int,
    per_connection: int,
    watched: int = 0,
    watchers: int = 0,
) -> Layout:
    """Subscriptions over sub-accounts: `watchers` on each of the first `watched` (the ones the
    load goes to; all of them when `watched` is 0) and the rest spread evenly over the others."""
    longest = max(len(a["targets"]) for a in agencies)
    targets = [a["targets"][k] for k in range(longest) for a in agencies if k < len(a["targets"])]
    count = len(targets)
    watched = watched or count
    share = {gid: watchers for gid in targets[:watched]} if watched < count else {}
    rest, idle = subscriptions - sum(share.values()), targets[len(share) :]
    for n, gid in enumerate(idle):
        share[gid] = rest // len(idle) + (1 if n < rest % len(idle) else 0)
    sub_target: list[str] = []
    subs_of: dict[str, list[int]] = defaultdict(list)
    by_agency: list[list[int]] = [[] for _ in agencies]
    key_of = {}
    rng = random.Random(7)
    for a, agency in enumerate(agencies):
        for gid in agency["targets"]:
            key_of[gid] = agency["key"]
            for _ in range(share[gid]):
                j = len(sub_target)
                sub_target.append(gid)
                subs_of[gid].append(j)
                by_agency[a].append(j)
    sockets = []
    for a, agency in enumerate(agencies):
        subs = by_agency[a]
        rng.shuffle(subs)
        for start in range(0, len(subs), per_connection):
            sockets.append(
                (len(sockets) % 2, agency["token"], subs[start : start + per_connection])
            )
    return Layout(targets, targets[:watched], key_of, sub_target, dict(subs_of), sockets)


# --------------------------------------------------------------------------------------------
# Receivers: what each subscription received, as (wall-clock time, sequence).


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
        events = self.received[j]
        if not events:
            self.ready += 1
        events.append((t, sequence))
        self.total += 1

    def problem(self, kind: str, detail: Any) -> None:
        self.problems[kind] += 1
        if len(self.samples[kind]) < ERROR_SAMPLES:
            self.samples[kind].append(str(detail)[:400])


class WebSocketSubscribers(Received):
    """Every socket's reader, in this process."""

    def __init__(self, layout: Layout, compression: str | None) -> None:
        super().__init__(len(layout.sub_target))
        self.layout = layout
        self.compression = compression
        self.sockets: list[Any] = []
        self.readers: list[asyncio.Task[None]] = []
        self.closing = False
        self.open_failures = 0

    async def open(self, url: str, token: str, subs: list[int], gate: asyncio.Semaphore) -> None:
        from websockets.asyncio.client import connect

        async with gate:
            try:
                ws = await connect(
                    url.replace("http", "ws", 1) + "/graphql",
                    subprotocols=[PROTOCOL],  # type: ignore[list-item]
                    compression=self.compression,
                    open_timeout=120,
                    max_size=2**20,
                    ping_interval=None,  # as browsers: no WebSocket pings of their own
                )
                init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
                await ws.send(orjson.dumps(init).decode())
                ack = orjson.loads(await asyncio.wait_for(ws.recv(decode=False), 120))
                if ack.get("type") != "connection_ack":
                    raise RuntimeError(f"no connection_ack: {ack}")
                for j in subs:
                    message = {
                        "id": str(j),
                        "type": "subscribe",
                        "payload": {"query": USAGE, "variables": {"id": self.layout.sub_target[j]}},
                    }
                    await ws.send(orjson.dumps(message).decode())
            except Exception as exc:
                self.open_failures += 1
                self.problem("socket_open_failed", repr(exc))
                return
        self.sockets.append(ws)
        self.readers.append(asyncio.create_task(self.read(ws)))

    async def read(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        targets = self.layout.sub_target
        try:
            while True:
                raw = await ws.recv(decode=False)
                t = time.time()
                message = orjson.loads(raw)
                kind = message.get("type")
                if kind == "next":
                    j = int(message["id"])
                    payload = message.get("payload") or {}
                    event = (payload.get("data") or {}).get("usageUpdated")
                    if payload.get("errors") or event is None:
                        self.problem("next_with_errors", payload)
                    elif event["subAccount"]["id"] != targets[j]:
                        self.problem("wrong_sub_account", event)
                    else:
                        self.add(j, t, int(event["sequence"]))
                elif kind == "ping":
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
    """The baseline: two pub/sub connections, a queue and a task per subscriber."""

    def __init__(self, url: str, channel_of: list[str], server_of: list[int]) -> None:
        super().__init__(len(channel_of))
        self.url = url
        self.channel_of = channel_of
        self.server_of = server_of
        self.tasks: list[asyncio.Task[None]] = []
        self.clients: list[Any] = []

    async def start(self) -> None:
        import redis.asyncio as redis

        channels = sorted(set(self.channel_of))
        local: list[dict[bytes, list[asyncio.Queue[bytes]]]] = [defaultdict(list) for _ in (0, 1)]
        for j, channel in enumerate(self.channel_of):
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            local[self.server_of[j]][channel.encode()].append(queue)
            self.tasks.append(asyncio.create_task(self.consume(j, queue)))
        for process in (0, 1):
            client = redis.Redis.from_url(self.url)
            self.clients.append(client)
            pubsub = client.pubsub()
            subscribed = asyncio.Event()
            for start in range(0, len(channels), 500):
                await pubsub.subscribe(*channels[start : start + 500])
            self.tasks.append(
                asyncio.create_task(self.read(pubsub, local[process], len(channels), subscribed))
            )
            await asyncio.wait_for(subscribed.wait(), 60)

    async def read(
        self,
        pubsub: Any,
        local: dict[bytes, list[asyncio.Queue[bytes]]],
        channels: int,
        subscribed: asyncio.Event,
    ) -> None:
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
                    subscribed.set()

    async def consume(self, j: int, queue: asyncio.Queue[bytes]) -> None:
        while True:
            data = await queue.get()
            t = time.time()
            self.add(j, t, orjson.loads(data)["n"])

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for client in self.clients:
            await client.aclose()


# --------------------------------------------------------------------------------------------
# Matching deliveries to publishes.


def latency_summary(seconds: list[float]) -> dict[str, Any] | None:
    return summary_ms(seconds) if seconds else None


def match(
    records: dict[str, list[tuple[Any, ...]]],
    subs_of: dict[str, list[int]],
    received: list[list[tuple[float, int]]],
    stamps: dict[int, tuple[float, float | None]] | None = None,
) -> dict[str, Any]:
    """records: per key (sub-account or channel), its publishes in send order, each
    (phase, t_sent, t_answered, ok, t_scheduled). Deliveries are matched by sequence rank (see
    the module docstring); the figures are per phase. Latency from the schedule is from when
    the open-loop plan meant to send the call (counts the publisher's waiting too).

    stamps: the outbox's own times by sequence (created_at, published_at), to split the way:
    the server's request and the relay (created_at -> published_at, per event), then Redis,
    the server's fan-out and the socket (published_at -> received, per delivery). The relay
    stamps published_at once its whole batch is out, so it is an upper bound of when that
    event was published: published_at -> received can be negative."""
    from_published: dict[str, list[float]] = defaultdict(list)
    relay: dict[str, list[float]] = defaultdict(list)
    from_sent: dict[str, list[float]] = defaultdict(list)
    from_answer: dict[str, list[float]] = defaultdict(list)
    from_schedule: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    checks: Counter[str] = Counter()
    for key, publishes in records.items():
        accepted = [p for p in publishes if p[3]]
        if len(accepted) != len(publishes):
            checks["keys_with_failed_publishes"] += 1
        subs = subs_of.get(key, [])
        sequences = sorted({seq for j in subs for _, seq in received[j]})
        if len(sequences) > len(accepted):
            checks["unexpected_events"] += len(sequences) - len(accepted)
            checks["keys_with_unexpected_events"] += 1
        elif len(sequences) < len(accepted):
            # Seen by no subscriber at all; taken to be the latest ones (drain cut-off).
            checks["events_seen_by_no_subscriber"] += len(accepted) - len(sequences)
        rank = {seq: n for n, seq in enumerate(sequences)}
        for seq, n in rank.items():
            stamp = (stamps or {}).get(seq)
            if stamp is not None and stamp[1] is not None and n < len(accepted):
                relay[accepted[n][0]].append(stamp[1] - stamp[0])
        for j in subs:
            seen: set[int] = set()
            previous = -1
            for t, seq in received[j]:
                if seq <= previous:
                    checks["out_of_order_or_repeated"] += 1
                previous = max(previous, seq)
                n = rank[seq]
                if n in seen:
                    checks["duplicates"] += 1
                    continue
                seen.add(n)
                if n >= len(accepted):
                    continue
                phase, t_sent, t_answered, _, t_scheduled = accepted[n]
                from_sent[phase].append(t - t_sent)
                from_answer[phase].append(t - t_answered)
                from_schedule[phase].append(t - t_scheduled)
                stamp = (stamps or {}).get(seq)
                if stamp is not None and stamp[1] is not None:
                    from_published[phase].append(t - stamp[1])
            for n, publish in enumerate(accepted):
                phase = publish[0]
                counts[phase]["expected"] += 1
                counts[phase]["received" if n in seen else "lost"] += 1
    phases = {}
    for phase, c in counts.items():
        phases[phase] = {
            "expected_deliveries": c["expected"],
            "received": c["received"],
            "lost": c["lost"],
            "latency_from_send": latency_summary(from_sent[phase]),
            "latency_from_commit": latency_summary(from_answer[phase]),
            "latency_from_schedule": latency_summary(from_schedule[phase]),
        }
        if stamps is not None:
            phases[phase]["outbox_created_at_to_published_at"] = latency_summary(relay[phase])
            phases[phase]["outbox_published_at_to_received"] = latency_summary(
                from_published[phase]
            )
    return {
        "phases": phases,
        "checks": {
            k: checks[k]
            for k in (
                "duplicates",
                "out_of_order_or_repeated",
                "unexpected_events",
                "keys_with_unexpected_events",
                "events_seen_by_no_subscriber",
                "keys_with_failed_publishes",
            )
        },
    }


def publish_stats(records: list[tuple[Any, ...]], seconds: float | None) -> dict[str, Any]:
    ok = [r for r in records if r[3]]
    failed = [r for r in records if not r[3]]
    lags = sorted(r[5] for r in records)
    span = max(r[1] for r in records) - min(r[1] for r in records) if records else 0.0
    return {
        "sent": len(records),
        "accepted": len(ok),
        "failed": len(failed),
        "failure_samples": [r[4] for r in failed[:ERROR_SAMPLES]],
        "retried": sum(1 for r in records if r[6] > 1),
        "events_per_second": round(len(records) / span, 1) if span > 0 else None,
        "request_latency": latency_summary([r[2] - r[1] for r in ok]),
        "start_lag_p99_ms": round(lags[int(len(lags) * 0.99) - 1] * 1000, 1) if lags else None,
        "start_lag_max_ms": round(lags[-1] * 1000, 1) if lags else None,
        "seconds": seconds,
    }


def by_key(phases: list[tuple[str, list[tuple[Any, ...]]]]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for phase, records in phases:
        for key, t_sent, t_answered, ok, _, lag, _ in records:
            out[key].append((phase, t_sent, t_answered, ok, t_sent - lag))
    return out


async def drain(received: Received, expected: int, quiet_s: float, limit_s: float) -> dict:
    """Until every expected delivery arrived, nothing arrived for `quiet_s`, or `limit_s`."""
    t0 = last_change = time.monotonic()
    last_total = received.total
    ended_by = "all received"
    while received.total < expected:
        await asyncio.sleep(0.1)
        now = time.monotonic()
        if received.total != last_total:
            last_total, last_change = received.total, now
        elif now - last_change >= quiet_s:
            ended_by = f"nothing received for {quiet_s:g} s"
            break
        if now - t0 >= limit_s:
            ended_by = f"limit of {limit_s:g} s"
            break
    return {"seconds": round(time.monotonic() - t0, 2), "ended_by": ended_by}


async def wait_for(condition: Any, limit_s: float, step: float = 0.1) -> float:
    """Seconds until `condition()` held (or `limit_s` passed). Polls: the receivers only
    count, and waking a waiter on each of thousands of deliveries would cost more."""
    t0 = time.monotonic()
    while not condition() and time.monotonic() - t0 < limit_s:  # noqa: ASYNC110
        await asyncio.sleep(step)
    return round(time.monotonic() - t0, 2)


def expected_total(records: dict[str, list[tuple[Any, ...]]], subs_of: dict[str, list[int]]) -> int:
    return sum(
        sum(1 for p in pubs if p[3]) * len(subs_of.get(k, [])) for k, pubs in records.items()
    )


# --------------------------------------------------------------------------------------------
# Processes: memory and CPU.


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found.extend(_descendants(int(child)))
    return found


def rss_kib(pid: int) -> int:
    total = 0
    for p in _descendants(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def cpu_snapshot(server_pids: list[int], publisher_pid: int | None) -> dict[str, float]:
    groups: dict[str, float] = defaultdict(float)
    servers = {p for pid in server_pids for p in _descendants(pid)}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid = int(stat.parent.name)
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / CLK_TCK
        if pid in servers:
            groups["server processes"] += seconds
        elif pid == os.getpid():
            groups["subscribers (this script)"] += seconds
        elif pid == publisher_pid:
            groups["publisher"] += seconds
        elif comm == "postgres":
            groups["postgresql"] += seconds
        elif comm.startswith("redis-server"):
            groups["redis"] += seconds
        else:
            groups["other processes"] += seconds
    cpu = [int(x) / CLK_TCK for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = cpu
    groups["machine busy"] = user + nice + system + irq + softirq + steal
    groups["machine irq+softirq+steal"] = irq + softirq + steal  # no process's time
    groups["machine idle"] = idle + iowait
    return dict(groups)


def cpu_delta(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, Any]:
    """CPU seconds per group over the window, and in cores (seconds / wall seconds)."""
    delta = {k: round(after.get(k, 0.0) - before.get(k, 0.0), 2) for k in after}
    attributed = sum(v for k, v in delta.items() if not k.startswith("machine"))
    # Processes that ended inside the window (a test run's servers, say) are counted nowhere
    # else; so is time the clock ticks did not charge to a process exactly.
    delta["unattributed (processes that ended)"] = round(
        delta["machine busy"] - delta["machine irq+softirq+steal"] - attributed, 2
    )
    return {
        "wall_seconds": round(seconds, 2),
        "cpu_seconds": delta,
        "cores": {k: round(v / seconds, 2) for k, v in delta.items() if seconds > 0},
    }


# --------------------------------------------------------------------------------------------
# The runs.


async def redis_baseline(args: argparse.Namespace, publisher: Publisher) -> dict[str, Any]:
    """Raw Redis pub/sub with the shape of the real run (module docstring, step 1)."""
    prefix = f"bench-fanout:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    channels = [f"{prefix}:{i}" for i in range(args.sub_accounts)]
    agencies = [
        {"targets": channels[a :: args.agencies], "key": "", "token": ""}
        for a in range(args.agencies)
    ]
    layout = lay_out(agencies, args.subscriptions, args.per_connection, args.watched, args.watchers)
    subscribers = RedisSubscribers(args.redis, layout.sub_target, layout.server_of_subscription())
    await subscribers.start()
    try:
        numbers: Counter[str] = Counter()

        def numbered(channels: list[str]) -> list[tuple[str, int]]:
            plan = []
            for channel in channels:
                numbers[channel] += 1
                plan.append((channel, numbers[channel]))
            return plan

        warmup = await publisher.run(
            "redis",
            url=args.redis,
            plan=numbered([c for c in layout.targets if layout.subs_of.get(c)]),
            rate=args.rate,
        )
        all_ready = await wait_for(lambda: subscribers.ready == subscribers.subscriptions, 60)
        before = cpu_snapshot([], publisher.pid)
        t0 = time.monotonic()
        count = int(args.rate * args.seconds)
        plan = numbered([layout.watched[i % len(layout.watched)] for i in range(count)])
        load = await publisher.run("redis", url=args.redis, plan=plan, rate=args.rate)
        records = by_key([("warmup", warmup), ("load", load)])
        expected = expected_total(records, layout.subs_of)
        drained = await drain(subscribers, expected, args.quiet, args.drain)
        cpu = cpu_delta(before, cpu_snapshot([], publisher.pid), time.monotonic() - t0)
        await asyncio.sleep(0.5)  # anything arriving twice
    finally:
        await subscribers.close()
    result = match(records, layout.subs_of, subscribers.received)
    return {
        "what": (
            f"{args.sub_accounts} Redis channels, 2 pub/sub connections each subscribed to all; "
            f"{args.subscriptions} in-process subscribers (asyncio queue + task each, split "
            "between the two connections like the WebSocket subscribers between the servers); "
            f"a separate publisher process at {args.rate}/s"
        ),
        "warmup_all_received_after_s": all_ready,
        "drain": drained,
        "publish": publish_stats(load, args.seconds),
        **result,
        "cpu": cpu,
    }


async def seed(args: argparse.Namespace, urls: list[str]) -> list[dict[str, Any]]:
    clients = [httpx.AsyncClient(base_url=url, timeout=120) for url in urls]
    try:
        gate = asyncio.Semaphore(2)  # argon2 per sign-up

        async def sign_up(a: int) -> Any:
            async with gate:
                return await sign_up_on_plan(
                    clients[a % 2], f"Fanout {a}", f"fanout{a}@bench.example", "Agency Unlimited"
                )

        signed = await asyncio.gather(*(sign_up(a) for a in range(args.agencies)))
        sizes = [
            args.sub_accounts // args.agencies + (1 if a < args.sub_accounts % args.agencies else 0)
            for a in range(args.agencies)
        ]
        gate = asyncio.Semaphore(8)

        async def sub_account(a: int, n: int) -> str:
            agency = signed[a]
            client = clients[n % 2]
            minutes = max(1, min(10, 1800 // max(1, sizes[a])))
            async with gate:
                body = await gql(
                    client,
                    CREATE,
                    {"i": {"name": f"Client {a}-{n}", "loginEmail": f"c{a}-{n}@fanout.example"}},
                    agency.token,
                )
                payload = body["data"]["createSubAccount"]
                if payload["userErrors"]:
                    raise RuntimeError(f"createSubAccount: {payload['userErrors']}")
                gid = str(payload["subAccount"]["id"])
                body = await gql(
                    client,
                    GRANT,
                    {
                        "i": {
                            "fromId": agency.primary_gid,
                            "toId": gid,
                            "tier": "PREMIUM",
                            "minutes": str(minutes),
                        }
                    },
                    agency.token,
                )
                if body["data"]["transferMinutes"]["userErrors"]:
                    raise RuntimeError(f"transferMinutes: {body['data']['transferMinutes']}")
                return gid

        agencies = []
        for a, agency in enumerate(signed):
            targets = await asyncio.gather(*(sub_account(a, n) for n in range(sizes[a])))
            key = (await gql(clients[0], KEY, token=agency.token))["data"]["createApiKey"]
            agencies.append({"token": agency.token, "key": key["secret"], "targets": targets})
        return agencies
    finally:
        for client in clients:
            await client.aclose()


async def wait_outbox_empty(pg: str, database: str, limit_s: float) -> int | None:
    """Waits until the outbox has nothing unpublished; returns what is left (None: unknown)."""
    conn = await asyncpg.connect(asyncpg_dsn(pg, database))
    try:
        t0 = time.monotonic()
        while True:
            try:
                left = int(
                    await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                )
            except asyncpg.PostgresError as exc:  # the table changed under us: just wait
                print(f"outbox not checked ({exc}); waiting 5 s", flush=True)
                await asyncio.sleep(5)
                return None
            if left == 0 or time.monotonic() - t0 > limit_s:
                return left
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def outbox_stamps(pg: str, database: str) -> dict[int, tuple[float, float | None]] | None:
    """created_at and published_at of every sequenced outbox row (None if unreadable)."""
    conn = await asyncpg.connect(asyncpg_dsn(pg, database))
    try:
        rows = await conn.fetch(
            "SELECT sequence, extract(epoch FROM created_at)::float8 AS created, "
            "extract(epoch FROM published_at)::float8 AS published "
            "FROM outbox WHERE sequence IS NOT NULL"
        )
    except asyncpg.PostgresError as exc:
        print(f"outbox times not read: {exc}", flush=True)
        return None
    finally:
        await conn.close()
    return {int(r["sequence"]): (r["created"], r["published"]) for r in rows}


async def fanout_run(
    args: argparse.Namespace, servers: list[Server], publisher: Publisher
) -> dict[str, Any]:
    urls = [s.url for s in servers]
    pids = [s.process.pid for s in servers]
    t0 = time.monotonic()
    agencies = await seed(args, urls)
    seeding_s = round(time.monotonic() - t0, 1)
    print(f"seeded {args.agencies} agencies, {args.sub_accounts} sub-accounts in {seeding_s}s")
    layout = lay_out(agencies, args.subscriptions, args.per_connection, args.watched, args.watchers)
    server_of = layout.server_of_subscription()

    # The seeding's own events (transfers) must be out before anyone subscribes: one reaching
    # a new subscription would count as an unexpected event.
    unpublished = await wait_outbox_empty(args.pg, args.database, 30)
    await asyncio.sleep(2)
    rss_before = [rss_kib(pid) for pid in pids]
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
    print(
        f"{len(subscribers.sockets)} sockets open, {args.subscriptions} subscriptions sent "
        f"in {opening_s}s ({subscribers.open_failures} sockets failed)",
        flush=True,
    )
    await asyncio.sleep(3)
    rss_subscribed = [rss_kib(pid) for pid in pids]

    try:
        plan = [
            (i % 2, layout.key_of[gid], gid)
            for i, gid in enumerate(layout.targets)
            if layout.subs_of.get(gid)
        ]
        t0 = time.monotonic()
        warmup = await publisher.run("http", servers=urls, plan=plan, rate=args.rate)
        warmup_wait = await wait_for(
            lambda: subscribers.ready == subscribers.subscriptions, args.warmup_timeout
        )
        print(
            f"warm-up: {sum(1 for r in warmup if r[3])}/{len(warmup)} calls accepted, "
            f"{subscribers.ready}/{subscribers.subscriptions} subscriptions received their event "
            f"{warmup_wait}s after the last call ({round(time.monotonic() - t0, 1)}s in all)",
            flush=True,
        )
        await wait_outbox_empty(args.pg, args.database, 60)  # the servers' backlog too
        await asyncio.sleep(args.idle)
        rss_idle = [rss_kib(pid) for pid in pids]

        count = int(args.rate * args.seconds)
        plan = [
            (i % 2, layout.key_of[gid], gid)
            for i, gid in ((i, layout.watched[i % len(layout.watched)]) for i in range(count))
        ]
        problems_before = Counter(subscribers.problems)
        before = cpu_snapshot(pids, publisher.pid)
        t0 = time.monotonic()
        load = await publisher.run("http", servers=urls, plan=plan, rate=args.rate)
        load_s = round(time.monotonic() - t0, 2)
        records = by_key([("warmup", warmup), ("load", load)])
        expected = expected_total(records, layout.subs_of)
        drained = await drain(subscribers, expected, args.quiet, args.drain)
        cpu = cpu_delta(before, cpu_snapshot(pids, publisher.pid), time.monotonic() - t0)
        await asyncio.sleep(1)  # anything arriving twice
        rss_after = [rss_kib(pid) for pid in pids]
    finally:
        await subscribers.close()

    stamps = await outbox_stamps(args.pg, args.database)
    result = match(records, layout.subs_of, subscribers.received, stamps)
    per_server = Counter(server_of)
    delta = sum(rss_idle) - sum(rss_before)
    return {
        "seeding_s": seeding_s,
        "unpublished_events_before_subscribing": unpublished,
        "layout": {
            "agencies": args.agencies,
            "sub_accounts": len(layout.targets),
            "subscriptions": len(layout.sub_target),
            "watched_sub_accounts": len(layout.watched),
            "subscriptions_per_watched": [len(layout.subs_of.get(g, ())) for g in layout.watched],
            "sockets": len(layout.sockets),
            "sockets_open": len(subscribers.sockets),
            "subscriptions_per_server": [per_server[0], per_server[1]],
            "compression": args.compression,
            "opening_s": opening_s,
        },
        "warmup": {
            "calls": len(warmup),
            "subscriptions_with_event": subscribers.ready,
            "all_received_after_s": warmup_wait,
        },
        "memory": {
            "rss_kib_before_subscriptions": rss_before,
            "rss_kib_subscribed_before_warmup": rss_subscribed,
            "rss_kib_idle_after_warmup": rss_idle,
            "rss_kib_after_load": rss_after,
            "kb_per_idle_subscription": round(delta / args.subscriptions, 1),
            "kb_per_subscription_before_warmup": round(
                (sum(rss_subscribed) - sum(rss_before)) / args.subscriptions, 1
            ),
        },
        "publish": publish_stats(load, load_s),
        "drain": drained,
        **result,
        "subscriber_problems": dict(subscribers.problems),
        "subscriber_problems_during_load": dict(subscribers.problems - problems_before),
        "problem_samples": dict(subscribers.samples),
        "cpu_during_load": cpu,
        "loadavg_after": loadavg(),
    }


def log_summary(server: Server) -> dict[str, Any]:
    text = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
    lines = text.splitlines()
    flagged = [line for line in lines if any(w in line for w in ("Traceback", "ERROR", "WARNING"))]
    return {"lines": len(lines), "flagged_lines": len(flagged), "first_flagged": flagged[:5]}


def verdict(run: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    load = run["phases"].get("load", {})
    p99 = (load.get("latency_from_send") or {}).get("p99_ms")
    lost = load.get("lost")
    kb = run["memory"]["kb_per_idle_subscription"]
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
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--per-connection", type=int, default=1)
    parser.add_argument("--sub-accounts", type=int, default=1_000)
    parser.add_argument("--agencies", type=int, default=10)
    parser.add_argument(
        "--watched", type=int, default=20, help="sub-accounts the load goes to (0: all)"
    )
    parser.add_argument("--watchers", type=int, default=5, help="subscriptions per watched one")
    parser.add_argument("--rate", type=float, default=100, help="events (calls) per second")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--drain", type=float, default=180, help="at most this long for late deliveries"
    )
    parser.add_argument(
        "--quiet", type=float, default=10, help="the drain ends after this long without deliveries"
    )
    parser.add_argument("--idle", type=float, default=5, help="idle seconds before memory")
    parser.add_argument("--warmup-timeout", type=float, default=60)
    parser.add_argument("--open-concurrency", type=int, default=50)
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    parser.add_argument("--pg", default=DEFAULT_PG)
    parser.add_argument("--database", default="agencyhub_bench_fanout")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="KEY=VALUE",
        help="extra environment for both servers (e.g. OUTBOX_POLL_SECONDS=0.1)",
    )  # fmt: skip
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    if args.agencies > args.sub_accounts:
        parser.error("--agencies must not exceed --sub-accounts")
    if args.watched > args.sub_accounts:
        parser.error("--watched must not exceed --sub-accounts")

    import redis

    started = timestamp()
    nofile = raise_open_files()
    workdir = Path(tempfile.mkdtemp(prefix="agencyhub-bench-fanout-"))
    publisher = Publisher()
    servers: list[Server] = []
    created = False
    output: dict[str, Any] = {"benchmark": "fanout", "started_at": started}
    try:
        baseline = None
        if not args.skip_baseline:
            baseline = run_async(lambda: redis_baseline(args, publisher))
            print("raw Redis baseline:", json.dumps(baseline["phases"]["load"]), flush=True)
        pg_version = run_async(lambda: recreate_database(args.pg, args.database))
        created = True
        db_url = sqlalchemy_url(args.pg, args.database)
        migrate(db_url, workdir)
        redis.Redis.from_url(args.redis).flushdb()
        env = app_env(db_url, workdir)
        env["REDIS_URL"] = args.redis
        env.update(kv.split("=", 1) for kv in args.server_env)
        for name in ("server-a", "server-b"):
            argv = [sys.executable, str(BENCH_DIR / "serve_app.py")]
            servers.append(Server(name, argv, env, workdir))
        for server in servers:
            server.wait_ready()
        # What the servers run: the code as it was when they started (it may change later).
        output["code_at_server_start"] = working_tree()
        machine = machine_info(pg_version)
        try:
            run = run_async(lambda: fanout_run(args, servers, publisher))
        except BaseException:
            for server in servers:
                print(f"--- {server.name} log tail ---\n{server.log_tail()}", file=sys.stderr)
            raise
        output.update(
            machine=machine,
            settings={**vars(args), "open_files_limit": nofile, "workdir": str(workdir)},
            verdict=verdict(run, args),
            fanout=run,
            raw_redis_baseline=baseline,
        )
    finally:
        for server in servers:
            server.stop()
        publisher.stop()
        if created:
            run_async(lambda: drop_database(args.pg, args.database))
    output["server_logs"] = {s.name: log_summary(s) for s in servers}
    text = json.dumps(output, indent=2, default=str)
    print(text)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"fanout-{started}.json"
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
