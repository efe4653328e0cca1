"""The transactional outbox and its relay.

A change writes its events into `outbox` in its own transaction. The relay, the only thing
that publishes, then (1) gives newly committed rows the next public `sequence` numbers and
(2) publishes sequenced rows to the broker in sequence order, marking each published.

A relay runs when woken: by a commit that wrote events in its own process, by a nudge the
committing process sends through the broker (so the relay holding the lock in another process
starts at once), and every `poll_interval` as a safety net. (PostgreSQL's NOTIFY would do the
same from a trigger, but a transaction that notifies takes a database-wide lock at commit:
commits queue behind each other's WAL flush, which bench/fanout.py showed at 100 commits/s.)

Sequences are assigned at relay time, not taken from the row id: ids are handed out when a
transaction inserts, not when it commits, so "id > last seen" would skip a slow transaction's
row. On PostgreSQL one relay at a time holds an advisory lock (kept across rounds while events
keep coming: `OutboxRelay._lead`); the others stand by.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import BigInteger, bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.errors import ServiceUnavailable, SubscriberTooSlow
from domain.events import Event, encode
from persistence import prepared
from persistence.arrays import insert_unnested
from persistence.broker import Broker, Message
from persistence.database import Database
from persistence.prepared import Prepared
from persistence.tables import OutboxRow

log = logging.getLogger(__name__)

RELAY_LOCK_KEY = 0x0A6E_0C1B  # any constant shared by every process of this service
# A relay that found the lock held tries it again after this pause at the soonest (woken by its
# own commits meanwhile), not at each of them: the leader is nudged and publishes them.
STANDBY_SECONDS = 0.1
outbox = OutboxRow.__table__

# A leader woken again this soon after its last round waits out the rest of it first, so that
# under a stream of commits one round publishes several of them (each round is a statement
# and a commit for PostgreSQL, and a task for this process): at 450 transfers/s rounds came
# 0.74 per transfer. Events wait at most this long more; a quiet stream is not slowed.
ROUND_SPACING = 0.005

# One statement (its own transaction) per round on PostgreSQL: number the oldest new rows on
# from the last sequence and return them, after any sequenced earlier but not yet published
# (the SELECT sees the rows as they were before the UPDATE, so none comes twice).
_COLUMNS = "id, sequence, topic, kind, key, payload"


def _next_sql(first: str = "", besides: str = "") -> str:
    """The round's statement; `first` a CTE to run before numbering, `besides` a condition on
    the rows sequenced earlier (both empty: `_NEXT_PG`)."""
    return (
        f"WITH {first}"
        " new AS ("
        "  SELECT id, row_number() OVER (ORDER BY id) AS n FROM outbox"
        "  WHERE sequence IS NULL ORDER BY id LIMIT :batch),"
        " last AS (SELECT coalesce(max(sequence), 0) AS sequence FROM outbox),"
        " numbered AS ("
        "  UPDATE outbox SET sequence = last.sequence + new.n FROM new, last"
        "  WHERE outbox.id = new.id RETURNING outbox.*)"
        f" SELECT {_COLUMNS} FROM ("
        f"  SELECT {_COLUMNS} FROM outbox WHERE sequence IS NOT NULL AND published_at IS NULL"
        f"{besides}"
        f"  UNION ALL SELECT {_COLUMNS} FROM numbered) AS waiting"
        " ORDER BY sequence LIMIT :batch"
    )


_NEXT_PG = text(_next_sql())
# Marks published every numbered row up to sequence `:through`: a round publishes the oldest
# numbered rows not yet published, in sequence order, so what went out is always every such
# row up to the last one it sent. Found through the partial index of numbered, unpublished
# rows, whatever the planner knows of the table: by their ids (`id = ANY(…)`), the generic
# plan a relay's connection made while a new database's outbox was a page long scanned the
# whole table every round once it had grown (1 to 3.7 ms a round after 20 s of one-call
# ingestion: BENCHMARKS.md, "Issue 17, sixth session").
_MARK = (
    "UPDATE outbox SET published_at = :now"
    " WHERE sequence IS NOT NULL AND published_at IS NULL"
    " AND sequence > :marked AND sequence <= :through"
)
# A leading relay's round: `_NEXT_PG` that first marks what the round before published (in
# the same statement, one round trip less per round), and so leaves those rows out of what it
# returns (the statement's SELECT sees them as they were before its UPDATE).
_MARK_AND_NEXT_PG = Prepared(
    text(_next_sql(first=f"done AS ({_MARK}),", besides=" AND sequence > :through")).bindparams(
        bindparam("marked", type_=BigInteger()),
        bindparam("through", type_=BigInteger()),
        bindparam("now", type_=outbox.c.published_at.type),
    )
)
# Built once: building it each round (function, select, cache key) cost more than running it.
_TRY_LOCK = select(func.pg_try_advisory_lock(bindparam("lock", type_=BigInteger())))
_UNLOCK = select(func.pg_advisory_unlock(bindparam("lock", type_=BigInteger())))
# Marks what went out (a leading relay, which keeps the lock).
_MARK_PG = text(_MARK).bindparams(
    bindparam("marked", type_=BigInteger()),
    bindparam("through", type_=BigInteger()),
    bindparam("now", type_=outbox.c.published_at.type),
)
# Marks what went out and lets the lock go, in one statement (`relay_once`).
_PUBLISHED_PG = text(f"WITH done AS ({_MARK}) SELECT pg_advisory_unlock(:lock)").bindparams(
    bindparam("marked", type_=BigInteger()),
    bindparam("through", type_=BigInteger()),
    bindparam("now", type_=outbox.c.published_at.type),
)


# What an event writes besides the time (`event_arrays`, one array per column).
EVENT_COLUMNS = (outbox.c.topic, outbox.c.kind, outbox.c.key, outbox.c.payload)
# PostgreSQL: every event of a transaction in one statement, prepared once.
_WRITE_EVENTS_PG = Prepared(
    insert_unnested(outbox, EVENT_COLUMNS, constants=(outbox.c.created_at,))
)
_WRITE_EVENTS = insert(outbox)


def event_arrays(events: Sequence[Event]) -> dict[str, list[Any]]:
    """The events as outbox rows, one array per column (`unnest` inserts)."""
    return {
        "topic": [e.topic for e in events],
        "kind": [e.kind.value for e in events],
        "key": [e.key for e in events],
        "payload": [orjson.dumps(encode(e)).decode() for e in events],
    }


async def write_events(conn: AsyncConnection, events: Sequence[Event], now: datetime) -> None:
    arrays = event_arrays(events)
    if conn.dialect.name == "postgresql":
        await prepared.execute(conn, _WRITE_EVENTS_PG, {**arrays, "created_at": now})
        return
    await conn.execute(
        _WRITE_EVENTS,
        [
            {"topic": e.topic, "kind": e.kind.value, "key": e.key, "payload": p, "created_at": now}
            for e, p in zip(events, arrays["payload"], strict=True)
        ],
    )


def encode_message(sequence: int, topic: str, kind: str, key: str | None, payload: str) -> bytes:
    """The wire format on the broker: one JSON object per event, payload embedded as is
    (`persistence.broker.Message.decode` reads it)."""
    return b'{"sequence":%d,"topic":%s,"kind":%s,"key":%s,"payload":%s}' % (
        sequence,
        orjson.dumps(topic),
        orjson.dumps(kind),
        orjson.dumps(key),
        payload.encode(),
    )


class OutboxRelay:
    def __init__(
        self,
        database: Database,
        broker: Broker,
        now: Callable[[], datetime],
        *,
        poll_interval: float = 0.5,
        batch_size: int = 500,
        round_spacing: float = ROUND_SPACING,
    ) -> None:
        self._database = database
        self._broker = broker
        self._now = now
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._round_spacing = round_spacing
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._nudging: asyncio.Task[None] | None = None
        self._nudge_again = False
        self._stopping = False
        self._leading = False  # this relay holds the lock across rounds (PostgreSQL, `_lead`)
        # The last sequence the leader's last round published (0: none), which the next marks
        # as published with every one before it, and when it went out.
        self._unmarked: tuple[int, datetime | None] = (0, None)
        # Every row up to this sequence is known to be marked published (marks only ever move
        # up, whichever process's relay made them): each mark starts above it, so a round's
        # search steps over only its own rows' index entries, not every entry marked since the
        # last vacuum.
        self._marked = 0

    def wake(self) -> None:
        """Called after a commit that wrote events, so they go out without waiting for a poll."""
        self._wakeup.set()

    def committed(self) -> None:
        """A commit in this process wrote events: wake this relay, and the others through the
        broker (whichever process holds the lock publishes). Nudges in flight are coalesced.
        While this process's relay leads (holds the lock, awake) no other relay could publish
        them, so none is nudged."""
        self.wake()
        if self._leading:
            return
        if self._nudging is not None and not self._nudging.done():
            self._nudge_again = True
            return
        self._nudging = asyncio.create_task(self._nudge(), name="outbox-nudge")

    async def _nudge(self) -> None:
        while True:
            self._nudge_again = False
            try:
                await self._broker.nudge()
            except Exception:
                log.debug("could not nudge the other relays; they poll", exc_info=True)
            if not self._nudge_again:
                return

    def start(self) -> None:
        self._broker.on_nudge(self.wake)
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Finish the round under way (so no connection is cut mid-statement), then end."""
        if self._nudging is not None:
            self._nudging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._nudging
        if self._task is None:
            return
        self._stopping = True
        self._wakeup.set()
        done, _ = await asyncio.wait({self._task}, timeout=grace_seconds)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            standing_by = False
            try:
                if self._database.is_sqlite:
                    while await self.relay_once() == self._batch_size and not self._stopping:
                        pass  # a full batch: there may be more waiting
                else:
                    standing_by = not await self._lead()
            except Exception as error:
                # The broker or database is away; the rows wait in the outbox for the next try.
                # A database away (a restart) is said in one line, not a traceback per round.
                log.warning(
                    "outbox relay round failed; retrying",
                    exc_info=not isinstance(error, ServiceUnavailable),
                )
            if self._stopping:
                return
            if standing_by:
                # Another process's relay leads and is nudged by every commit: this one does
                # not try the lock on each of its own, only after a pause (wake-ups are kept).
                await asyncio.sleep(min(self._poll_interval, STANDBY_SECONDS))
            await self._woken_within(self._poll_interval)

    async def _woken_within(self, seconds: float) -> bool:
        """Waits for a wake-up (True) or `seconds` (False), and consumes the wake-up."""
        woken = False
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()
                woken = True
        self._wakeup.clear()
        return woken

    async def _lead(self) -> bool:
        """PostgreSQL: take the lock and keep it, one connection, round after round, for as
        long as wake-ups keep coming; let it go after a poll interval without any and a round
        that found nothing. False if another relay holds it.

        A round is then one statement (mark the last round's rows; number and read), not three
        (lock; number and read; mark and unlock),
        and only the leader's process works per event: under a steady stream of events the
        lock was taken and let go for each, and the other process's relay tried it in vain
        for each (BENCHMARKS.md "Subscription fan-out", fifth session)."""
        async with self._database.read() as conn:
            try:
                if not await conn.scalar(_TRY_LOCK, {"lock": RELAY_LOCK_KEY}):
                    return False
                self._leading = True
                try:
                    idle = False
                    loop = asyncio.get_running_loop()
                    while not self._stopping:
                        started = loop.time()
                        published = await self._round(conn)
                        if published == self._batch_size:
                            continue  # a full batch: there may be more waiting
                        if idle and not published:
                            break
                        idle = not await self._woken_within(self._poll_interval)
                        if not idle and (rest := started + self._round_spacing - loop.time()) > 0:
                            await asyncio.sleep(rest)
                finally:
                    self._leading = False
                through, at = self._unmarked
                if through:
                    await conn.execute(_MARK_PG, self._mark(through, at))
                    self._marked_up_to(through)
                    self._unmarked = (0, None)
                await conn.scalar(_UNLOCK, {"lock": RELAY_LOCK_KEY})
                return True
            except BaseException:
                # Whatever failed, the session's lock must not go back to the pool with the
                # connection: closing it releases the lock on the server.
                self._leading = False
                self._unmarked = (0, None)  # the next leader publishes them again
                await conn.invalidate()
                raise

    async def _round(self, conn: AsyncConnection) -> int:
        """A leading relay's round: mark what the last round published, number what is new,
        publish (marked by the next round, or when the lead ends, with the time it went out).
        Rows published but not yet marked when a leader dies are published again by the next
        one, under the same sequences (streams drop what they have already seen)."""
        through, at = self._unmarked
        rows = await prepared.fetch(
            conn, _MARK_AND_NEXT_PG, {"batch": self._batch_size, **self._mark(through, at)}
        )
        self._marked_up_to(through)
        self._unmarked = (0, None)
        if not rows:
            return 0
        await self._publish(rows)
        self._unmarked = (rows[-1].sequence, self._now())  # rows come in sequence order
        return len(rows)

    async def relay_once(self) -> int:
        """One round: sequence what is new, publish what is sequenced. Returns rows published."""
        if self._database.is_sqlite:
            await self._sequence_new_rows()
            return await self._publish_sequenced_rows()
        # PostgreSQL: three statements on one autocommit connection (lock; number and read;
        # mark and unlock) where there were a dozen round trips on four: at 100 events/s the
        # relay's rounds were a fifth of a server's CPU (BENCHMARKS.md "Fan-out").
        async with self._database.read() as conn:
            try:
                if not await conn.scalar(_TRY_LOCK, {"lock": RELAY_LOCK_KEY}):
                    return 0  # another process's relay is active; this one stands by
                rows = (await conn.execute(_NEXT_PG, {"batch": self._batch_size})).all()
                through = 0  # the last sequence sent (rows come in sequence order); 0: none
                try:
                    await self._publish(rows)
                    through = rows[-1].sequence if rows else 0
                finally:
                    await conn.execute(
                        _PUBLISHED_PG, {**self._mark(through, self._now()), "lock": RELAY_LOCK_KEY}
                    )
                    self._marked_up_to(through)
                return len(rows)
            except BaseException:
                # Whatever failed, the session's lock must not go back to the pool with the
                # connection: closing it releases the lock on the server.
                await conn.invalidate()
                raise

    def _mark(self, through: int, at: datetime | None) -> dict[str, Any]:
        """The parameters of a statement that marks every row up to `through` published at
        `at` (`_MARK`), searching above `self._marked` (those are marked already; `through`
        0 marks nothing). Once the statement has run, `_marked_up_to(through)`."""
        return {"marked": min(self._marked, through), "through": through, "now": at}

    def _marked_up_to(self, through: int) -> None:
        self._marked = max(self._marked, through)

    async def _publish(self, rows: Sequence[Any]) -> None:
        # One round trip for the whole batch: a relay on a busy event loop that awaited
        # each row's publish fell behind at ~85 events/s.
        await self._broker.publish_many(
            [(r.topic, encode_message(r.sequence, r.topic, r.kind, r.key, r.payload)) for r in rows]
        )

    async def _sequence_new_rows(self) -> None:
        """SQLite: one relay, one process; number the oldest new rows one by one."""
        async with self._database.transaction() as conn:
            new_ids = (
                await conn.scalars(
                    select(outbox.c.id)
                    .where(outbox.c.sequence.is_(None))
                    .order_by(outbox.c.id)
                    .limit(self._batch_size)
                )
            ).all()
            if not new_ids:
                return
            last = await conn.scalar(select(func.coalesce(func.max(outbox.c.sequence), 0)))
            assert last is not None
            for offset, row_id in enumerate(new_ids, start=1):
                await conn.execute(
                    update(outbox).where(outbox.c.id == row_id).values(sequence=last + offset)
                )

    async def _publish_sequenced_rows(self) -> int:
        async with self._database.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        outbox.c.id,
                        outbox.c.sequence,
                        outbox.c.topic,
                        outbox.c.kind,
                        outbox.c.key,
                        outbox.c.payload,
                    )
                    .where(outbox.c.sequence.is_not(None), outbox.c.published_at.is_(None))
                    .order_by(outbox.c.sequence)
                    .limit(self._batch_size)
                )
            ).all()
        published: list[int] = []
        try:
            await self._publish(rows)
            published = [r.id for r in rows]
        finally:
            if published:
                async with self._database.transaction() as conn:
                    await conn.execute(
                        update(outbox)
                        .where(outbox.c.id.in_(published))
                        .values(published_at=self._now())
                    )
        return len(published)


async def replay(
    conn: AsyncConnection, topics: Sequence[str], after: int, limit: int = 500
) -> list[Message]:
    """Sequenced events of these topics after `after`, in order: what a client missed."""
    rows = await conn.execute(
        select(outbox.c.sequence, outbox.c.topic, outbox.c.kind, outbox.c.key, outbox.c.payload)
        .where(
            outbox.c.topic.in_(list(topics)),
            outbox.c.sequence.is_not(None),
            outbox.c.sequence > after,
        )
        .order_by(outbox.c.sequence)
        .limit(limit)
    )
    return [Message(r.sequence, r.topic, r.kind, orjson.loads(r.payload), r.key) for r in rows]


class Replays:
    """Catch-up reads of the outbox, shared: when a broker reconnect makes every stream of a
    topic catch up from the same position, the process reads it once, not once per stream.
    Nothing is kept once a read is done (only reads in flight are shared)."""

    def __init__(self, database: Database, page: int = 500, limit: int = 20_000) -> None:
        self._database = database
        self._page = page
        self._limit = limit  # more missed than this: the client resumes with afterSequence
        self._reading: dict[tuple[str, int], asyncio.Future[list[Message]]] = {}

    async def after(self, topic: str, after: int) -> list[Message]:
        key = (topic, after)
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.ensure_future(self._read(topic, after))
            self._reading[key] = reading
            reading.add_done_callback(lambda _: self._reading.pop(key, None))
        # shield: one stream going away must not cancel the read the others wait for
        return await asyncio.shield(reading)

    async def _read(self, topic: str, after: int) -> list[Message]:
        messages: list[Message] = []
        async with self._database.read() as conn:
            while True:
                page = await replay(conn, [topic], after, self._page)
                messages += page
                if len(page) < self._page:
                    return messages
                if len(messages) >= self._limit:
                    raise SubscriberTooSlow(
                        "too many events were missed while the broker was away; "
                        "resume with afterSequence"
                    )
                after = page[-1].sequence


async def last_sequence(conn: AsyncConnection) -> int:
    """The newest sequence given so far (0 before any): where a new live stream starts."""
    return int(await conn.scalar(select(func.coalesce(func.max(outbox.c.sequence), 0))) or 0)


async def prune_published(conn: AsyncConnection, before: datetime) -> int:
    """Drop published events older than the replay window; returns how many."""
    result = await conn.execute(
        outbox.delete().where(outbox.c.published_at.is_not(None), outbox.c.published_at < before)
    )
    return int(result.rowcount)
