"""Live streams for subscriptions: authorised on subscribe and again whenever access changes.

Every stream also listens on the viewer's own user topic; a role change, removal or ownership
transfer announces ACCESS_CHANGED there, and the stream re-checks the policy at once, ending
with UNAUTHENTICATED or FORBIDDEN when the viewer may no longer watch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from domain.events import ACCESS_CHANGED, user_topic
from domain.policy import Viewer
from persistence.outbox import decode_message
from resolvers.context import RequestContext


async def authorized_messages(
    ctx: RequestContext,
    topics_for: Callable[[Viewer], list[str]],
    check: Callable[[Viewer], None],
) -> AsyncIterator[dict[str, Any]]:
    viewer = await ctx.viewer()
    check(viewer)
    own_topic = user_topic(viewer.user_id)
    broker = ctx.services.broker
    async with broker.subscribe(
        [*topics_for(viewer), own_topic], ctx.services.subscriber_queue_size
    ) as subscription:
        async for raw in subscription:
            message = decode_message(raw)
            if message["topic"] == own_topic:
                if message["kind"] == ACCESS_CHANGED:
                    ctx.forget_session()
                    check(await ctx.viewer())
                continue
            yield message
