"""The outbox and its relay: nothing committed is lost, nothing rolled back is announced,
sequences only grow, on every database and every broker."""

import asyncio
import contextlib
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from domain.events import Event, EventKind
from domain.live import AgencyTotals
from persistence.broker import Message, RedisBroker
from persistence.outbox import OutboxRelay, write_events
from persistence.tables import OutboxRow
from persistence.unit_of_work import UnitOfWork

# Redis pub/sub channels are shared by every database number: these files use fixed topic
# names, so under pytest-xdist they run on one worker (`--dist loadgroup`), one at a time.
pytestmark = pytest.mark.xdist_group("fixed-redis-channels")

outbox = OutboxRow.__table__


def now():
    return datetime.now(UTC)


def ping(topic, n=0):
    """An event whose payload carries `n` (as an agency total), to tell events apart."""
    return Event(topic, EventKind.AGENCY_TOTALS_UPDATED, AgencyTotals(n, 0))


@contextlib.asynccontextmanager
async def live(broker, topics):
    """A subscription Redis has confirmed: what is published from now on reaches it (a stream
    would catch up what came before from the outbox; these tests read the broker raw)."""
    async with broker.subscribe(topics) as subscription:
        async with asyncio.timeout(5):
            await subscription.live()
        yield subscription


def n_of(message):
    return message["payload"]["seconds_this_period"]


async def next_messages(subscription, count, timeout=5):
    """The next `count` events as the wire has them (past Redis's Resync markers)."""

    async def take():
        found = []
        while len(found) < count:
            item = await anext(subscription)
            if isinstance(item, Message):
                found.append(
                    {
                        "sequence": item.sequence,
                        "topic": item.topic,
                        "kind": item.kind,
                        "payload": item.payload,
                    }
                )
        return found

    return await asyncio.wait_for(take(), timeout)


async def test_committed_events_reach_subscribers_in_sequence_order(database, broker):
    # given a subscriber and a relay
    relay = OutboxRelay(database, broker, now)
    async with live(broker, ["agency:a"]) as subscription:
        # when two units of work commit events
        for n in range(2):
            async with UnitOfWork(database, now) as uow:
                uow.publish(ping("agency:a", n))
                uow.publish(ping("agency:b", n))
        assert await relay.relay_once() == 4
        # then the subscriber of agency:a sees its two, with increasing sequences
        messages = await next_messages(subscription, 2)
    assert [n_of(m) for m in messages] == [0, 1]
    assert messages[0]["sequence"] < messages[1]["sequence"]
    assert {m["topic"] for m in messages} == {"agency:a"}


async def test_rolled_back_work_announces_nothing(database, broker):
    relay = OutboxRelay(database, broker, now)
    with pytest.raises(RuntimeError):
        async with UnitOfWork(database, now) as uow:
            uow.publish(ping("agency:a"))
            raise RuntimeError("rule broken half-way")
    assert await relay.relay_once() == 0
    async with database.read() as conn:
        assert (await conn.execute(select(outbox))).all() == []


async def test_a_slow_transaction_with_a_smaller_id_is_not_skipped(database, broker):
    if database.is_sqlite:
        pytest.skip("SQLite has one writer: ids are committed in order")
    relay = OutboxRelay(database, broker, now)
    async with live(broker, ["agency:slow"]) as subscription:
        # given a transaction that takes an outbox id and has not committed yet
        slow = database.transaction()
        conn = await slow.__aenter__()
        await write_events(conn, [ping("agency:slow", 1)], now())
        # when a later transaction commits and the relay runs
        async with UnitOfWork(database, now) as uow:
            uow.publish(ping("agency:slow", 2))
        assert await relay.relay_once() == 1
        # and the slow one commits afterwards
        await slow.__aexit__(None, None, None)
        assert await relay.relay_once() == 1
        messages = await next_messages(subscription, 2)
    # then both are delivered, the late one with the later sequence
    assert [n_of(m) for m in messages] == [2, 1]
    assert messages[0]["sequence"] < messages[1]["sequence"]


async def test_events_wait_in_the_outbox_while_the_broker_is_down(database):
    # given a broker that cannot reach Redis
    broker = RedisBroker("redis://127.0.0.1:1/0", reconnect_delay=0.05)
    await broker.start()
    relay = OutboxRelay(database, broker, now)
    async with UnitOfWork(database, now) as uow:
        uow.publish(ping("agency:a"))
    # when the relay tries to publish, it fails and nothing is marked published
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises for no connection
        await relay.relay_once()
    await broker.close()
    async with database.read() as conn:
        row = (await conn.execute(select(outbox.c.sequence, outbox.c.published_at))).one()
    assert row.sequence is not None and row.published_at is None
    # then a relay with a working broker delivers it later
    from persistence.broker import InProcessBroker

    healthy = InProcessBroker()
    later = OutboxRelay(database, healthy, now)
    async with live(healthy, ["agency:a"]) as subscription:
        assert await later.relay_once() == 1
        [message] = await next_messages(subscription, 1)
    assert message["sequence"] == row.sequence


async def test_two_relays_never_give_one_sequence_twice(database, broker):
    relays = [OutboxRelay(database, broker, now, batch_size=7) for _ in range(2)]
    for n in range(40):
        async with UnitOfWork(database, now) as uow:
            uow.publish(ping("agency:many", n))
    while sum(await asyncio.gather(*(r.relay_once() for r in relays))):
        pass
    async with database.read() as conn:
        rows = (await conn.execute(select(outbox.c.sequence, outbox.c.published_at))).all()
    sequences = [r.sequence for r in rows]
    assert len(rows) == 40 and all(r.published_at is not None for r in rows)
    assert sorted(sequences) == list(range(1, 41))


async def test_the_background_relay_delivers_after_commit_without_being_called(database, broker):
    wakeups = []
    relay = OutboxRelay(database, broker, now, poll_interval=5)
    relay.start()
    try:
        async with live(broker, ["agency:live"]) as subscription:
            async with UnitOfWork(database, now, lambda: (wakeups.append(1), relay.wake())):
                pass  # no events: the relay is not woken
            async with UnitOfWork(database, now, lambda: (wakeups.append(1), relay.wake())) as uow:
                uow.publish(ping("agency:live"))
            [message] = await next_messages(subscription, 1, timeout=2)
    finally:
        await relay.stop()
    assert message["kind"] == EventKind.AGENCY_TOTALS_UPDATED and wakeups == [1]


async def test_published_events_older_than_the_window_are_pruned(database, broker):
    from datetime import timedelta

    from persistence.outbox import prune_published

    relay = OutboxRelay(database, broker, now)
    async with UnitOfWork(database, now) as uow:
        uow.publish(ping("agency:old"))
    async with UnitOfWork(database, now) as uow:
        uow.publish(ping("agency:unpublished-yet"))
    await relay.relay_once()
    async with UnitOfWork(database, now) as uow:
        uow.publish(ping("agency:new"))  # committed, not yet relayed
    async with database.transaction() as conn:
        assert await prune_published(conn, now() - timedelta(hours=1)) == 0
        assert await prune_published(conn, now() + timedelta(seconds=1)) == 2
    async with database.read() as conn:
        left = (await conn.execute(select(outbox.c.topic))).scalars().all()
    assert left == ["agency:new"]


async def test_a_commit_in_another_process_wakes_the_relay_at_once(database_url, broker_url):
    """The committing process nudges the others through Redis: a relay that nobody called,
    polling only every minute, publishes at once. Each side has its own engine and broker
    connection, as two server processes would."""
    from persistence.broker import RedisBroker
    from persistence.database import Database

    if broker_url is None:
        pytest.skip("the in-process broker serves one process")
    mine, theirs = Database(database_url), Database(database_url)
    my_broker, their_broker = RedisBroker(broker_url), RedisBroker(broker_url)
    for b in (my_broker, their_broker):
        await b.start()
        await asyncio.wait_for(b.wait_ready(), 5)
    relay = OutboxRelay(mine, my_broker, now, poll_interval=60)  # polling alone: too late
    their_relay = OutboxRelay(theirs, their_broker, now)  # not started: it only nudges
    relay.start()
    try:
        async with live(my_broker, ["agency:far"]) as subscription:
            await relay.relay_once()  # the start-up round is over
            async with UnitOfWork(theirs, now, their_relay.committed) as uow:
                uow.publish(ping("agency:far"))
            [message] = await next_messages(subscription, 1, timeout=5)
    finally:
        await relay.stop()
        await their_relay.stop()
        for b in (my_broker, their_broker):
            await b.close()
        await mine.dispose()
        await theirs.dispose()
    assert message["kind"] == EventKind.AGENCY_TOTALS_UPDATED


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_relay_keeps_the_lock_while_events_come_and_another_takes_over_after_it(
    database, broker
):
    """PostgreSQL: the relay that took the lock keeps it between rounds (another relay stands
    by, so a commit nobody woke a relay for waits for the leader's poll), nudges no other
    process for its own process's commits, and lets the lock go when it stops: the next relay
    then publishes, in sequence, with nothing lost or repeated."""
    nudges = []
    real_nudge = broker.nudge

    async def counted_nudge():
        nudges.append(1)
        await real_nudge()

    broker.nudge = counted_nudge

    async def unmarked():
        return await unmarked_sequences(database)

    leader = OutboxRelay(database, broker, now, poll_interval=1)
    other = OutboxRelay(database, broker, now, poll_interval=1)
    leader.start()
    received = []
    try:
        async with live(broker, ["agency:lead"]) as subscription:
            async with UnitOfWork(database, now, leader.committed) as uow:
                uow.publish(ping("agency:lead", 0))
            received += await next_messages(subscription, 1)
            nudges.clear()
            for n in (1, 2, 3):
                async with UnitOfWork(database, now, leader.committed) as uow:
                    uow.publish(ping("agency:lead", n))
            received += await next_messages(subscription, 3)
            assert nudges == [], "the leader's own commits need no other relay"

            async with UnitOfWork(database, now) as uow:  # wakes no relay
                uow.publish(ping("agency:lead", 4))
            assert await other.relay_once() == 0, "the leader holds the lock between rounds"
            received += await next_messages(subscription, 1)  # at the leader's poll

            await leader.stop()
            assert await unmarked() == [], "what the leader published is marked when it stops"
            other.start()
            for n in (5, 6):
                async with UnitOfWork(database, now, other.committed) as uow:
                    uow.publish(ping("agency:lead", n))
            received += await next_messages(subscription, 2)
    finally:
        await leader.stop()
        await other.stop()
    assert [n_of(m) for m in received] == list(range(7))
    assert [m["sequence"] for m in received] == list(range(1, 8))
    assert await unmarked() == []


async def unmarked_sequences(database):
    async with database.read() as conn:
        return (
            await conn.scalars(select(outbox.c.sequence).where(outbox.c.published_at.is_(None)))
        ).all()
