"""Broker fan-out: topics reach their subscribers only, keyed events only those of their key,
a slow subscriber is cut off, and every (re)subscription on Redis is followed by a Resync."""

import asyncio

import orjson
import pytest
import redis.asyncio as redis

from domain.errors import SubscriberTooSlow
from persistence.broker import Message, RedisBroker, Resync
from persistence.outbox import encode_message
from tests.conftest import REDIS_URL

# Redis pub/sub channels are shared by every database number: these files use fixed topic
# names, so under pytest-xdist they run on one worker (`--dist loadgroup`), one at a time.
pytestmark = pytest.mark.xdist_group("fixed-redis-channels")


def wire(sequence, topic, key=None, **payload):
    return encode_message(sequence, topic, "PING", key, orjson.dumps(payload).decode())


async def confirmed(*subscriptions):
    """Until Redis confirmed each subscription: what is published after it then arrives."""
    async with asyncio.timeout(5):
        for subscription in subscriptions:
            await subscription.live()


async def messages(subscription, count, timeout=5):
    """The next `count` messages, past any Resync markers."""

    async def take():
        found = []
        while len(found) < count:
            item = await anext(subscription)
            if isinstance(item, Message):
                found.append(item)
        return found

    return await asyncio.wait_for(take(), timeout)


async def test_messages_reach_only_the_subscribers_of_their_topic(broker):
    async with broker.subscribe(["t:1"]) as one, broker.subscribe(["t:1", "t:2"]) as both:
        await confirmed(one, both)
        await broker.publish("t:2", wire(1, "t:2"))
        await broker.publish("t:1", wire(2, "t:1"))
        assert [m.sequence for m in await messages(one, 1)] == [2]
        assert [(m.topic, m.sequence) for m in await messages(both, 2)] == [("t:2", 1), ("t:1", 2)]


async def test_every_local_subscriber_shares_one_decoded_message(broker):
    async with broker.subscribe(["t:s"]) as a, broker.subscribe(["t:s"]) as b:
        await confirmed(a, b)
        await broker.publish("t:s", wire(7, "t:s"))
        [first], [second] = await messages(a, 1), await messages(b, 1)
    assert first is second


async def test_a_subscriber_that_falls_behind_is_told_and_others_are_not_slowed(broker):
    async with (
        broker.subscribe(["t:busy"], max_queue=3) as slow,
        broker.subscribe(["t:busy"], max_queue=100) as fast,
    ):
        await confirmed(slow, fast)
        for n in range(10):
            await broker.publish("t:busy", wire(n + 1, "t:busy"))
        received = await messages(fast, 10)
        assert [m.sequence for m in received] == list(range(1, 11))
        with pytest.raises(SubscriberTooSlow):
            while True:
                await asyncio.wait_for(anext(slow), 5)


async def test_leaving_a_topic_stops_delivery(broker):
    async with broker.subscribe(["t:gone"]):
        pass
    async with broker.subscribe(["t:other"]) as other:
        await confirmed(other)
        await broker.publish("t:gone", wire(1, "t:gone"))
        await broker.publish("t:other", wire(2, "t:other"))
        assert [m.topic for m in await messages(other, 1)] == ["t:other"]
    await broker.ping()


async def test_a_keyed_subscriber_is_handed_only_its_key(broker):
    async with (
        broker.subscribe(["agency:1"], keys={"agency:1": "b"}) as only_b,
        broker.subscribe(["agency:1"]) as everything,
    ):
        await confirmed(only_b, everything)
        for sequence, key in enumerate(("a", "b", None, "a"), start=1):
            await broker.publish("agency:1", wire(sequence, "agency:1", key))
        assert [m.key for m in await messages(everything, 4)] == ["a", "b", None, "a"]
        assert [m.key for m in await messages(only_b, 1)] == ["b"]
        # the others were never queued for it (at most a Resync marker is)
        assert not any(isinstance(i, Message) for i in only_b._items or ())


async def test_a_subscriber_gets_only_the_messages_it_accepts(broker):
    def even(message):
        return message.sequence % 2 == 0

    async with broker.subscribe(["agency:2"], accepts=even) as evens:
        await confirmed(evens)
        for sequence in range(1, 5):
            await broker.publish("agency:2", wire(sequence, "agency:2"))
        assert [m.sequence for m in await messages(evens, 2)] == [2, 4]


async def resyncs(subscription, count, timeout=5):
    async def take():
        found = []
        while len(found) < count:
            item = await anext(subscription)
            if isinstance(item, Resync):
                found.append(item)
        return found

    return await asyncio.wait_for(take(), timeout)


async def test_redis_confirms_a_new_topic_with_a_resync_from_its_start():
    broker = RedisBroker(REDIS_URL)
    await broker.start()
    try:
        await asyncio.wait_for(broker.wait_ready(), 5)
        async with broker.subscribe(["t:new"], start=41) as subscription:
            [resync] = await resyncs(subscription, 1)
        assert (resync.topic, resync.after) == ("t:new", 41)
    finally:
        await broker.close()


async def test_every_redis_reconnect_resyncs_each_subscriber_from_the_last_sequence_received():
    broker = RedisBroker(REDIS_URL, reconnect_delay=0.05)
    admin = redis.Redis.from_url(REDIS_URL)
    await broker.start()
    try:
        await asyncio.wait_for(broker.wait_ready(), 5)
        async with (
            broker.subscribe(["t:r"], start=0) as subscription,
            broker.subscribe(["t:r"], keys={"t:r": "k"}, start=0) as keyed,
        ):
            await resyncs(subscription, 1)
            await resyncs(keyed, 1)
            await broker.publish("t:r", wire(5, "t:r"))
            assert [m.sequence for m in await messages(subscription, 1)] == [5]
            # when Redis drops the pub/sub connection (what a restart does)
            killed = await admin.client_kill_filter(_type="pubsub")
            assert killed >= 1
            # then both learn, once Redis has them again, where to catch up from
            for sub in (subscription, keyed):
                [resync] = await resyncs(sub, 1, timeout=10)
                assert (resync.topic, resync.after) == ("t:r", 5)
            await broker.publish("t:r", wire(6, "t:r"))
            assert [m.sequence for m in await messages(subscription, 1)] == [6]
    finally:
        await broker.close()
        await admin.aclose()
