"""Broker fan-out: topics reach their subscribers only, and a slow subscriber is cut off."""

import asyncio

import pytest

from persistence.broker import SubscriberTooSlow


async def test_messages_reach_only_the_subscribers_of_their_topic(broker):
    async with broker.subscribe(["t:1"]) as one, broker.subscribe(["t:1", "t:2"]) as both:
        await broker.publish("t:2", b"two")
        await broker.publish("t:1", b"one")
        assert await asyncio.wait_for(anext(one), 5) == b"one"
        assert [await asyncio.wait_for(anext(both), 5) for _ in range(2)] == [b"two", b"one"]


async def test_a_subscriber_that_falls_behind_is_told_and_others_are_not_slowed(broker):
    async with (
        broker.subscribe(["t:busy"], max_queue=3) as slow,
        broker.subscribe(["t:busy"], max_queue=100) as fast,
    ):
        for n in range(10):
            await broker.publish("t:busy", str(n).encode())
        received = [await asyncio.wait_for(anext(fast), 5) for _ in range(10)]
        assert received == [str(n).encode() for n in range(10)]
        with pytest.raises(SubscriberTooSlow):
            while True:
                await asyncio.wait_for(anext(slow), 5)


async def test_leaving_a_topic_stops_delivery(broker):
    async with broker.subscribe(["t:gone"]):
        pass
    async with broker.subscribe(["t:other"]) as other:
        await broker.publish("t:gone", b"nobody")
        await broker.publish("t:other", b"someone")
        assert await asyncio.wait_for(anext(other), 5) == b"someone"
    await broker.ping()


async def test_a_subscriber_gets_only_the_messages_it_accepts(broker):
    def for_b(message):
        return message["payload"]["sub_account_id"] == "b"

    async with (
        broker.subscribe(["agency:1"], accepts=for_b) as only_b,
        broker.subscribe(["agency:1"]) as everything,
    ):
        for key in ("a", "b", "a"):
            await broker.publish("agency:1", b'{"payload":{"sub_account_id":"%s"}}' % key.encode())
        received = [await asyncio.wait_for(anext(everything), 5) for _ in range(3)]
        assert len(received) == 3
        assert await asyncio.wait_for(anext(only_b), 5) == b'{"payload":{"sub_account_id":"b"}}'
        assert only_b._queue.empty()  # the two others were never queued for it
