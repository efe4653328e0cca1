"""Live streams for subscriptions: authorised on subscribe and again whenever access changes,
gap-free across broker reconnects, resumable by sequence.

Every stream also listens on the viewer's own user topic; a role change, removal or ownership
transfer announces ACCESS_CHANGED there, and the stream re-checks the policy at once, ending
with UNAUTHENTICATED or FORBIDDEN when the viewer may no longer watch.

A stream keeps, per topic, the last sequence it has handled. It starts at `afterSequence`
(replaying what the outbox still holds after it) or, without one, at the newest sequence when
it subscribes. Whenever the broker (re)subscribes a topic it queues a `Resync`: the stream
catches up from the outbox after its position (one read per topic and position for the whole
process, however many streams wait for it), then goes on live, dropping what it already had.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping

from domain.errors import DomainError, ErrorCode, SubscriberTooSlow
from domain.events import EventKind, user_topic
from domain.policy import Viewer

# Message is also what the streams below yield: schema/ names it from here, as it may not
# import persistence/.
from persistence import metrics
from persistence.broker import Message, Resync
from persistence.outbox import last_sequence
from resolvers.context import RequestContext


def parse_sequence(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit():
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "afterSequence is a sequence number from an event.",
            ("afterSequence",),
        )
    return int(raw)


async def authorized_messages(
    ctx: RequestContext,
    topics_for: Callable[[Viewer], list[str]],
    check: Callable[[Viewer], None],
    after_sequence: int | None = None,
    wanted: Callable[[Message], bool] | None = None,
    keys: Mapping[str, str] | None = None,
) -> AsyncIterator[Message]:
    """The stream's messages: on `topics_for(viewer)`, only the given key of a topic in `keys`,
    only those `wanted` accepts (live ones are filtered in the fan-out, replayed ones here)."""
    viewer = await ctx.viewer()
    check(viewer)
    own_topic = user_topic(viewer.user_id)
    topics = [*topics_for(viewer), own_topic]
    services = ctx.services
    if after_sequence is None:
        async with services.database.read() as conn:
            start = await last_sequence(conn)
    else:
        start = after_sequence
    last = dict.fromkeys(topics, start)
    keys = keys or {}

    def accepts(message: Message) -> bool:
        return message.topic == own_topic or wanted is None or wanted(message)

    def replayed(messages: Iterable[Message]) -> Iterable[Message]:
        for message in messages:
            key = keys.get(message.topic)
            if (key is None or message.key == key) and accepts(message):
                yield message

    async def handled(message: Message) -> Message | None:
        """The message if the stream should show it; None if seen already or internal."""
        if message.sequence <= last[message.topic]:
            return None
        last[message.topic] = message.sequence
        if message.topic == own_topic:
            if message.kind == EventKind.ACCESS_CHANGED:
                ctx.forget_session()
                check(await ctx.viewer())
            return None
        return message

    try:
        async with services.broker.subscribe(
            topics, services.subscriber_queue_size, accepts, keys=keys, start=start
        ) as subscription:
            if after_sequence is not None:
                for topic in topics:
                    for message in replayed(await services.replays.after(topic, start)):
                        if (shown := await handled(message)) is not None:
                            yield shown
            async for item in subscription:
                if isinstance(item, Resync):
                    after = max(last[item.topic], item.after or 0)
                    for message in replayed(await services.replays.after(item.topic, after)):
                        if (shown := await handled(message)) is not None:
                            yield shown
                elif (shown := await handled(item)) is not None:
                    yield shown
    except SubscriberTooSlow:
        metrics.SUBSCRIBERS_TOO_SLOW.inc()
        raise
