"""Brokers carry published events to the subscribers of every server process.

Two implementations share one local fan-out: `InProcessBroker` (the embedded default: one
process) and `RedisBroker` (one pub/sub connection per process, topics subscribed while at
least one local subscriber wants them). Every subscriber has a bounded queue; one that falls
too far behind is cut off with `SubscriberTooSlow` instead of slowing anyone else.

A subscriber may pass `accepts`, a test of the decoded message: the fan-out decodes each
message once and queues it only for the subscribers that accept it, so a screen watching one
sub-account is not woken by every event of its agency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

import orjson
import redis.asyncio as redis

log = logging.getLogger(__name__)

CONTROL_CHANNEL = "agencyhub:control"
NUDGE = b"relay-wake"  # on CONTROL_CHANNEL: a process committed events; relays, look now


class SubscriberTooSlow(Exception):
    """The subscriber's queue overflowed; it should reconnect and resume by sequence."""


class _Overflow:
    pass


_OVERFLOW = _Overflow()


Accepts = Callable[[Any], bool]


class Subscription:
    """One subscriber's bounded queue of raw messages."""

    def __init__(self, topics: Sequence[str], max_queue: int, accepts: Accepts | None) -> None:
        self.topics = tuple(topics)
        self.accepts = accepts
        self._queue: asyncio.Queue[bytes | _Overflow] = asyncio.Queue(max_queue)
        self._overflowed = False

    def deliver(self, message: bytes) -> None:
        if self._overflowed:
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self._overflowed = True
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(_OVERFLOW)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        item = await self._queue.get()
        if isinstance(item, _Overflow):
            raise SubscriberTooSlow("too many events were waiting; resume with afterSequence")
        return item


class Fanout:
    """Local subscribers by topic. Returns whether a topic gained its first or lost its last."""

    def __init__(self) -> None:
        self._by_topic: dict[str, set[Subscription]] = defaultdict(set)

    def add(self, subscription: Subscription) -> list[str]:
        first = []
        for topic in subscription.topics:
            if not self._by_topic[topic]:
                first.append(topic)
            self._by_topic[topic].add(subscription)
        return first

    def remove(self, subscription: Subscription) -> list[str]:
        last = []
        for topic in subscription.topics:
            subscribers = self._by_topic.get(topic)
            if subscribers is None:
                continue
            subscribers.discard(subscription)
            if not subscribers:
                del self._by_topic[topic]
                last.append(topic)
        return last

    def deliver(self, topic: str, message: bytes) -> None:
        subscribers = self._by_topic.get(topic)
        if not subscribers:
            return
        decoded: Any = None
        for subscription in tuple(subscribers):
            if subscription.accepts is not None:
                if decoded is None:
                    decoded = orjson.loads(message)  # once, however many subscribers test it
                if not subscription.accepts(decoded):
                    continue
            subscription.deliver(message)

    @property
    def topics(self) -> list[str]:
        return list(self._by_topic)


class Broker(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def publish(self, topic: str, message: bytes) -> None: ...
    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """In order; all or, on an error, a prefix of them (the outbox republishes the rest)."""
        ...

    async def nudge(self) -> None:
        """Tell the other processes' `on_nudge` callbacks that events wait."""
        ...

    def on_nudge(self, callback: Callable[[], None]) -> None: ...

    def subscribe(
        self, topics: Sequence[str], max_queue: int = 256, accepts: Accepts | None = None
    ) -> contextlib.AbstractAsyncContextManager[Subscription]: ...


class InProcessBroker:
    def __init__(self) -> None:
        self._fanout = Fanout()

    async def nudge(self) -> None:
        pass  # one process: the committing code woke its relay itself

    def on_nudge(self, callback: Callable[[], None]) -> None:
        pass  # no other process can nudge

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    async def publish(self, topic: str, message: bytes) -> None:
        self._fanout.deliver(topic, message)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for topic, message in messages:
            self._fanout.deliver(topic, message)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, topics: Sequence[str], max_queue: int = 256, accepts: Accepts | None = None
    ) -> AsyncIterator[Subscription]:
        subscription = Subscription(topics, max_queue, accepts)
        self._fanout.add(subscription)
        try:
            yield subscription
        finally:
            self._fanout.remove(subscription)


class RedisBroker:
    """One Redis connection for publishing, one pub/sub connection per process for reading."""

    def __init__(self, url: str, reconnect_delay: float = 0.5) -> None:
        self._url = url
        self._reconnect_delay = reconnect_delay
        self._fanout = Fanout()
        self._nudged: list[Callable[[], None]] = []
        self._client: redis.Redis | None = None
        self._pubsub: redis.client.PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self._client = redis.Redis.from_url(self._url, socket_connect_timeout=2)
        self._reader = asyncio.create_task(self._read_forever(), name="redis-broker-reader")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()
        if self._client is not None:
            await self._client.aclose()

    async def ping(self) -> None:
        assert self._client is not None
        await self._client.ping()

    async def publish(self, topic: str, message: bytes) -> None:
        assert self._client is not None
        await self._client.publish(topic, message)

    async def nudge(self) -> None:
        assert self._client is not None
        await self._client.publish(CONTROL_CHANNEL, NUDGE)

    def on_nudge(self, callback: Callable[[], None]) -> None:
        self._nudged.append(callback)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """One round trip: a pipeline (not a MULTI transaction) of PUBLISH commands."""
        assert self._client is not None
        if not messages:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for topic, message in messages:
                pipe.publish(topic, message)
            await pipe.execute()

    @contextlib.asynccontextmanager
    async def subscribe(
        self, topics: Sequence[str], max_queue: int = 256, accepts: Accepts | None = None
    ) -> AsyncIterator[Subscription]:
        subscription = Subscription(topics, max_queue, accepts)
        first = self._fanout.add(subscription)
        try:
            if first and self._pubsub is not None:
                await self._pubsub.subscribe(*first)
            yield subscription
        finally:
            last = self._fanout.remove(subscription)
            if last and self._pubsub is not None:
                with contextlib.suppress(redis.RedisError):
                    await self._pubsub.unsubscribe(*last)

    async def _read_forever(self) -> None:
        assert self._client is not None
        while True:
            try:
                self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                # Resubscribe whatever local subscribers want (after a reconnect too).
                await self._pubsub.subscribe(CONTROL_CHANNEL, *self._fanout.topics)
                self._subscribed.set()
                for callback in self._nudged:
                    callback()  # events may have been committed while disconnected
                async for raw in self._pubsub.listen():
                    if raw.get("type") == "message":
                        topic = raw["channel"].decode()
                        if topic == CONTROL_CHANNEL:
                            if raw["data"] == NUDGE:
                                for callback in self._nudged:
                                    callback()
                            continue
                        self._fanout.deliver(topic, raw["data"])
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError):
                log.warning("redis pub/sub connection lost; reconnecting", exc_info=True)
                self._subscribed.clear()
                if self._pubsub is not None:
                    with contextlib.suppress(Exception):
                        await self._pubsub.aclose()
                    self._pubsub = None
                await asyncio.sleep(self._reconnect_delay)

    async def wait_ready(self) -> None:
        """Until the pub/sub connection is subscribed (used by tests; bound it with a timeout)."""
        await self._subscribed.wait()
