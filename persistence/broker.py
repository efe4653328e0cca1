"""Brokers carry published events to the subscribers of every server process.

Two implementations share one local fan-out: `InProcessBroker` (the embedded default: one
process) and `RedisBroker` (one pub/sub connection per process, topics subscribed while at
least one local subscriber wants them). Every subscriber has a bounded queue; one that falls
too far behind is cut off with `SubscriberTooSlow` instead of slowing anyone else.

The fan-out decodes each event once into a `Message` that every local subscriber shares, and
hands it only to the subscribers of its topic that want its key (or the whole topic) and
whose `accepts` test passes: a screen watching one sub-account is not woken by the others.

Redis pub/sub is at most once: what is published while a connection is not subscribed is gone.
So after every (re)subscription of a topic on the pub/sub connection (confirmed by Redis), each
local subscriber of it receives a `Resync(topic, after)`: catch up from the outbox after
`after`, the last sequence this process received on the topic. Every reconnect, including
redis-py's own, goes through that path (`_PubSub.on_connect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson
import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from domain.errors import SubscriberTooSlow
from persistence.metrics import EVENTS_DELIVERED

log = logging.getLogger(__name__)

CONTROL_CHANNEL = "agencyhub:control"
NUDGE = b"relay-wake"  # on CONTROL_CHANNEL: a process committed events; relays, look now


class Message:
    """One published event, decoded once per process and shared by its local subscribers.

    `memo` holds what consumers build from it once for all of them (e.g. the GraphQL event);
    it lives exactly as long as some subscriber still holds the message.
    """

    __slots__ = ("key", "kind", "memo", "payload", "sequence", "topic")

    def __init__(
        self, sequence: int, topic: str, kind: str, payload: dict[str, Any], key: str | None
    ) -> None:
        self.sequence = sequence
        self.topic = topic
        self.kind = kind
        self.payload = payload
        self.key = key
        self.memo: dict[Any, Any] = {}

    @classmethod
    def decode(cls, data: bytes | str) -> Message:
        raw = orjson.loads(data)
        return cls(raw["sequence"], raw["topic"], raw["kind"], raw["payload"], raw.get("key"))


class Resync:
    """The topic was (re)subscribed: events after `after` may have been missed on the way."""

    __slots__ = ("after", "topic")

    def __init__(self, topic: str, after: int | None) -> None:
        self.topic = topic
        self.after = after


class _Overflow:
    pass


_OVERFLOW = _Overflow()

Accepts = Callable[[Message], bool]
Item = Message | Resync


class Subscription:
    """One subscriber's bounded mailbox of messages and resync markers.

    Not an asyncio.Queue: that is four deques (~3 KB) per subscriber whether anything waits or
    not, and an idle monitoring screen should cost next to nothing. Here an idle subscription
    holds no buffer, and at most one future while its stream waits.
    """

    def __init__(
        self,
        topics: Sequence[str],
        max_queue: int,
        accepts: Accepts | None,
        keys: Mapping[str, str] | None = None,
    ) -> None:
        self.topics = tuple(dict.fromkeys(topics))
        self.keys = dict(keys or {})  # topic -> the one key wanted there
        self.accepts = accepts
        self.pending: set[str] = set()  # topics whose subscription Redis has not confirmed
        self._max_queue = max_queue
        self._items: deque[Item | _Overflow] | None = None
        self._waiter: asyncio.Future[None] | None = None  # the stream, waiting for an item
        self._live: asyncio.Future[None] | None = None  # live(), waiting for confirmations
        self._overflowed = False

    def wait_for(self, topics: set[str]) -> None:
        """These topics are not (or no longer) subscribed until Redis confirms them."""
        self.pending = set(topics)

    def confirm(self, topic: str, after: int | None) -> None:
        """Redis confirmed the topic: catch up what may have been missed on it."""
        if topic in self.pending:
            self.pending.discard(topic)
            self.deliver(Resync(topic, after))
            if not self.pending and self._live is not None and not self._live.done():
                self._live.set_result(None)

    async def live(self) -> None:
        """Until every topic is subscribed: what is published from then on arrives (tests,
        and anything that must not start before; streams need not wait, they resync)."""
        while self.pending:
            if self._live is None or self._live.done():
                self._live = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._live)

    def deliver(self, item: Item) -> None:
        if self._overflowed:
            return
        if self._items is None:
            self._items = deque()
        if len(self._items) >= self._max_queue:
            self._overflowed = True  # what waits is dropped: the stream must resume
            self._items.clear()
            self._items.append(_OVERFLOW)
        else:
            self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> AsyncIterator[Item]:
        return self

    async def __anext__(self) -> Item:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if not self._items:
            self._items = None  # nothing kept while idle
        if isinstance(item, _Overflow):
            raise SubscriberTooSlow("too many events were waiting; resume with afterSequence")
        return item


class Fanout:
    """Local subscribers by (topic, key), and the last sequence received on each topic."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str | None], set[Subscription]] = defaultdict(set)
        self._count: dict[str, int] = defaultdict(int)
        self.position: dict[str, int | None] = {}

    def add(self, subscription: Subscription, start: int | None) -> list[str]:
        """Returns the topics that gained their first local subscriber."""
        first = []
        for topic in subscription.topics:
            if not self._count[topic]:
                first.append(topic)
                self.position[topic] = start
            self._count[topic] += 1
            self._routes[topic, subscription.keys.get(topic)].add(subscription)
        return first

    def remove(self, subscription: Subscription) -> list[str]:
        """Returns the topics that lost their last local subscriber."""
        last = []
        for topic in subscription.topics:
            route = (topic, subscription.keys.get(topic))
            subscribers = self._routes.get(route)
            if subscribers is None or subscription not in subscribers:
                continue
            subscribers.discard(subscription)
            if not subscribers:
                del self._routes[route]
            self._count[topic] -= 1
            if not self._count[topic]:
                del self._count[topic]
                self.position.pop(topic, None)
                last.append(topic)
        return last

    def subscribers(self, topic: str) -> list[Subscription]:
        return [s for (t, _), subs in self._routes.items() if t == topic for s in subs]

    def all_subscribers(self) -> list[Subscription]:
        return list({s for subs in self._routes.values() for s in subs})

    def deliver(self, data: bytes | str) -> None:
        message = Message.decode(data)
        known = self.position.get(message.topic)
        if message.topic not in self._count:
            return
        if known is None or message.sequence > known:
            self.position[message.topic] = message.sequence
        everyone = self._routes.get((message.topic, None), ())
        keyed = self._routes.get((message.topic, message.key), ()) if message.key else ()
        delivered = 0
        for subscription in (*everyone, *keyed):
            if subscription.accepts is None or subscription.accepts(message):
                subscription.deliver(message)
                delivered += 1
        if delivered:
            EVENTS_DELIVERED.inc(delivered)

    @property
    def topics(self) -> list[str]:
        return list(self._count)


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
        self,
        topics: Sequence[str],
        max_queue: int = 256,
        accepts: Accepts | None = None,
        *,
        keys: Mapping[str, str] | None = None,
        start: int | None = None,
    ) -> contextlib.AbstractAsyncContextManager[Subscription]:
        """`keys`: per topic, the one key wanted there (else all of it). `start`: the last
        sequence the subscriber knows of (the position a Resync of a new topic catches up from).
        """
        ...


class InProcessBroker:
    """One process: nothing is published that this process does not receive, no resyncs."""

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
        self._fanout.deliver(message)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for _, message in messages:
            self._fanout.deliver(message)

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        topics: Sequence[str],
        max_queue: int = 256,
        accepts: Accepts | None = None,
        *,
        keys: Mapping[str, str] | None = None,
        start: int | None = None,
    ) -> AsyncIterator[Subscription]:
        subscription = Subscription(topics, max_queue, accepts, keys)
        self._fanout.add(subscription, start)
        try:
            yield subscription
        finally:
            self._fanout.remove(subscription)


class _PubSub(PubSub):
    """redis-py's PubSub, telling the broker of every (re)connection before it resubscribes."""

    def __init__(self, broker: RedisBroker, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._broker = broker

    async def on_connect(self, connection: Any) -> None:
        self._broker._connected_again()
        await super().on_connect(connection)
        missing = [t for t in self._broker._fanout.topics if t.encode() not in self.channels]
        if missing:
            await self._broker._send_subscribe(missing)


class RedisBroker:
    """One Redis connection for publishing, one pub/sub connection per process for reading."""

    def __init__(self, url: str, reconnect_delay: float = 0.5) -> None:
        self._url = url
        self._reconnect_delay = reconnect_delay
        self._fanout = Fanout()
        self._nudged: list[Callable[[], None]] = []
        self._client: redis.Redis | None = None
        self._listener: redis.Redis | None = None
        self._pubsub: _PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        # SUBSCRIBE commands sent per topic whose confirmation has not come back yet
        self._in_flight: dict[str, int] = defaultdict(int)

    async def start(self) -> None:
        self._client = redis.Redis.from_url(self._url, socket_connect_timeout=2)
        # No silent retries on the listening connection: a reconnect must be seen (on_connect).
        # RESP2: redis-py 8 reads RESP3 pub/sub pushes through a handler that formats every
        # message for a debug log whether or not it is on (a third of a server's CPU at 100
        # events/s to 10,000 sockets, BENCHMARKS.md "Fan-out").
        self._listener = redis.Redis.from_url(
            self._url, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0), protocol=2
        )
        self._pubsub = _PubSub(self, self._listener.connection_pool)
        self._reader = asyncio.create_task(self._read_forever(), name="redis-broker-reader")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()
        for client in (self._client, self._listener):
            if client is not None:
                await client.aclose()

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
        self,
        topics: Sequence[str],
        max_queue: int = 256,
        accepts: Accepts | None = None,
        *,
        keys: Mapping[str, str] | None = None,
        start: int | None = None,
    ) -> AsyncIterator[Subscription]:
        subscription = Subscription(topics, max_queue, accepts, keys)
        first = self._fanout.add(subscription, start)
        if self._subscribed.is_set():
            subscription.wait_for(
                {t for t in subscription.topics if t in first or self._in_flight.get(t)}
            )
        else:
            subscription.wait_for(set(subscription.topics))  # the reconnect will resync them
        try:
            if first:
                with contextlib.suppress(redis.RedisError, OSError):
                    await self._send_subscribe(first)  # or at the reconnect, if it fails
            yield subscription
        finally:
            last = self._fanout.remove(subscription)
            if last and self._pubsub is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    await self._pubsub.unsubscribe(*last)

    async def _send_subscribe(self, topics: Sequence[str]) -> None:
        assert self._pubsub is not None
        for topic in topics:
            self._in_flight[topic] += 1
        await self._pubsub.subscribe(*topics)

    def _connected_again(self) -> None:
        """A new connection: nothing is subscribed on it until Redis confirms it again."""
        self._in_flight.clear()
        for topic in self._pubsub.channels if self._pubsub is not None else ():
            self._in_flight[topic.decode()] += 1
        for subscription in self._fanout.all_subscribers():
            subscription.wait_for(set(subscription.topics))

    def _confirmed(self, topic: str) -> None:
        """Redis confirmed a SUBSCRIBE: once the last one sent is, the topic is live again."""
        waiting = self._in_flight.get(topic, 0) - 1
        if waiting > 0:
            self._in_flight[topic] = waiting
            return
        self._in_flight.pop(topic, None)
        after = self._fanout.position.get(topic)
        for subscription in self._fanout.subscribers(topic):
            subscription.confirm(topic, after)

    async def _read_forever(self) -> None:
        assert self._pubsub is not None
        pubsub = self._pubsub
        await self._subscribe_all(pubsub)
        while True:
            try:
                async for raw in pubsub.listen():
                    self._handle(raw)
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as error:
                log.warning("redis pub/sub connection lost (%r); reconnecting", error)
                self._subscribed.clear()
                await asyncio.sleep(self._reconnect_delay)
                with contextlib.suppress(redis.RedisError, OSError):
                    await pubsub.connect()  # on_connect resubscribes everything

    async def _subscribe_all(self, pubsub: _PubSub) -> None:
        while True:
            try:
                await self._send_subscribe([CONTROL_CHANNEL, *self._fanout.topics])
                return
            except (redis.RedisError, OSError):
                log.warning("redis pub/sub not reachable; retrying")
                self._in_flight.clear()
                await asyncio.sleep(self._reconnect_delay)

    def _handle(self, raw: dict[str, Any]) -> None:
        kind = raw.get("type")
        topic = raw["channel"].decode() if raw.get("channel") is not None else None
        if kind == "message":
            if topic == CONTROL_CHANNEL:
                if raw["data"] == NUDGE:
                    self._wake_relays()
                return
            self._fanout.deliver(raw["data"])
        elif kind == "subscribe" and topic is not None:
            if topic == CONTROL_CHANNEL:
                self._in_flight.pop(topic, None)
                self._subscribed.set()
                self._wake_relays()  # events may have been committed while disconnected
                return
            self._confirmed(topic)

    def _wake_relays(self) -> None:
        for callback in self._nudged:
            callback()

    async def wait_ready(self) -> None:
        """Until the pub/sub connection is subscribed (used by tests; bound it with a timeout)."""
        await self._subscribed.wait()
