"""The audit log of an agency, for owners and agency admins: pages of it, newest first, and
the live feed of new entries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from uuid import UUID

from domain.audit import AuditKind, AuditRecord
from domain.events import EventKind, agency_topic
from domain.paging import Page
from domain.policy import Action, Target, Viewer, require
from persistence import audit
from persistence.broker import Message
from resolvers.context import RequestContext
from resolvers.live import authorized_messages
from resolvers.monitoring import payload_of
from resolvers.paging import page_size


def _may_watch(viewer: Viewer) -> None:
    require(viewer, Action.VIEW_AUDIT_EVENTS, Target(viewer.agency_id))


def _is_audit(message: Message) -> bool:
    return message.kind == EventKind.AUDIT_RECORDED


async def audit_events(ctx: RequestContext) -> AsyncIterator[AuditRecord]:
    """Each entry as it is recorded, from the outbox through the broker."""
    messages = authorized_messages(
        ctx, lambda v: [agency_topic(v.agency_id)], _may_watch, wanted=_is_audit
    )
    async for message in messages:
        record = payload_of(message)
        if isinstance(record, AuditRecord):
            yield record


async def audit_log(
    ctx: RequestContext,
    agency_id: UUID,
    kinds: Sequence[AuditKind] | None,
    first: int | None,
    after: str | None,
) -> tuple[Page[AuditRecord], int]:
    viewer = await ctx.viewer()
    require(viewer, Action.VIEW_AUDIT_EVENTS, Target(agency_id))
    async with ctx.services.database.read() as conn:
        return await audit.audit_page(conn, agency_id, kinds, page_size(first), after)
