"""The live audit feed: sign-ins, team changes and API keys of an agency, for owner and admins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from domain.events import AuditKind, agency_topic
from domain.policy import Action, Target, Viewer, require
from persistence.broker import Message
from resolvers.context import RequestContext
from resolvers.live import authorized_messages

_AUDIT_KINDS = frozenset(kind.value for kind in AuditKind)


@dataclass(frozen=True)
class AuditEntry:
    sequence: int
    kind: AuditKind
    occurred_at: datetime
    email: str | None


def _is_audit(message: Message) -> bool:
    return message.kind in _AUDIT_KINDS


def _may_watch(viewer: Viewer) -> None:
    require(viewer, Action.VIEW_AUDIT_EVENTS, Target(viewer.agency_id))


async def audit_events(ctx: RequestContext) -> AsyncIterator[AuditEntry]:
    """Reads from the broker only: the outbox relay is what feeds it."""
    messages = authorized_messages(
        ctx, lambda v: [agency_topic(v.agency_id)], _may_watch, wanted=_is_audit
    )
    async for message in messages:
        payload = message.payload
        yield AuditEntry(
            sequence=message.sequence,
            kind=AuditKind(message.kind),
            occurred_at=datetime.fromisoformat(payload["occurred_at"]),
            email=payload.get("email"),
        )
