"""The live audit feed: sign-ins and failed sign-ins of an agency, for its owner and admins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from domain.events import AuditKind, agency_topic
from domain.policy import Action, Target, require
from persistence.outbox import decode_message
from resolvers.context import RequestContext

_AUDIT_KINDS = frozenset(kind.value for kind in AuditKind)


@dataclass(frozen=True)
class AuditEntry:
    sequence: int
    kind: AuditKind
    occurred_at: datetime
    email: str | None


async def audit_events(ctx: RequestContext) -> AsyncIterator[AuditEntry]:
    """Reads from the broker only: the outbox relay is what feeds it."""
    viewer = await ctx.viewer()
    require(viewer, Action.VIEW_AUDIT_EVENTS, Target(viewer.agency_id))
    broker = ctx.services.broker
    async with broker.subscribe(
        [agency_topic(viewer.agency_id)], ctx.services.subscriber_queue_size
    ) as subscription:
        async for raw in subscription:
            message = decode_message(raw)
            if message["kind"] not in _AUDIT_KINDS:
                continue
            payload = message["payload"]
            yield AuditEntry(
                sequence=message["sequence"],
                kind=AuditKind(message["kind"]),
                occurred_at=datetime.fromisoformat(payload["occurred_at"]),
                email=payload.get("email"),
            )
