"""Live streams for subscriptions: authorised on subscribe and again whenever access changes,
resumable by sequence.

Every stream also listens on the viewer's own user topic; a role change, removal or ownership
transfer announces ACCESS_CHANGED there, and the stream re-checks the policy at once, ending
with UNAUTHENTICATED or FORBIDDEN when the viewer may no longer watch.

With `after_sequence`, the stream first subscribes to the broker (so nothing published from
then on is missed), replays what the outbox still holds after that sequence, then goes live,
dropping anything it already sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from domain.errors import DomainError, ErrorCode
from domain.events import ACCESS_CHANGED, user_topic
from domain.policy import Viewer
from persistence.outbox import decode_message, replay
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
    wanted: Callable[[dict[str, Any]], bool] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """The stream's messages, only those `wanted` accepts: live ones are filtered in the
    fan-out before they are queued, replayed ones here."""
    viewer = await ctx.viewer()
    check(viewer)
    own_topic = user_topic(viewer.user_id)
    topics = topics_for(viewer)
    broker = ctx.services.broker

    def accepts(message: dict[str, Any]) -> bool:
        return message["topic"] == own_topic or wanted is None or wanted(message)

    async with broker.subscribe(
        [*topics, own_topic], ctx.services.subscriber_queue_size, accepts
    ) as subscription:
        last = after_sequence or 0
        if after_sequence is not None:
            while True:
                async with ctx.services.database.read() as conn:
                    missed = await replay(conn, topics, last)
                for message in missed:
                    last = message["sequence"]
                    if wanted is None or wanted(message):
                        yield message
                if len(missed) < 500:
                    break
        async for raw in subscription:
            message = decode_message(raw)
            if message["topic"] == own_topic:
                if message["kind"] == ACCESS_CHANGED:
                    ctx.forget_session()
                    check(await ctx.viewer())
                continue
            if message["sequence"] <= last:
                continue  # already replayed
            last = message["sequence"]
            yield message
