"""The audit log of an agency (owners and agency admins): pages of it and the live feed."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry

from domain.audit import AuditKind, AuditRecord
from resolvers import audit
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.paging import PageInfo, page_info

AuditKindEnum = strawberry.enum(AuditKind, name="AuditKind")
Info = strawberry.Info[RequestContext, None]


@strawberry.type(description="One change in an agency: who did what, when.")
class AuditEvent:
    sequence: str = strawberry.field(
        description="The entry's number in the log: increasing, the same live and in auditLog."
    )
    kind: AuditKindEnum
    occurred_at: datetime
    email: str | None = strawberry.field(
        description="The signed-in user's email (the subject's for sign-ins)."
    )
    subject_id: strawberry.ID | None = strawberry.field(
        description="Global ID of what was acted on (sub-account, user, invitation...)."
    )
    summary: str = strawberry.field(
        description="A short human-readable line, e.g. 'moved 30 PREMIUM minutes from Acme "
        "to Beta'."
    )

    @classmethod
    def from_domain(cls, record: AuditRecord) -> AuditEvent:
        subject = record.subject
        return cls(
            sequence=str(record.id),
            kind=record.kind,
            occurred_at=record.occurred_at,
            email=record.email,
            subject_id=None
            if subject is None
            else strawberry.ID(to_global_id(subject.type_name, subject.id)),
            summary=record.summary,
        )


@strawberry.type
class AuditEventEdge:
    node: AuditEvent
    cursor: str


@strawberry.type
class AuditEventConnection:
    edges: list[AuditEventEdge]
    page_info: PageInfo
    total_count: int


async def audit_log_connection(
    info: Info,
    agency_id: object,
    first: int | None,
    after: str | None,
    kinds: list[AuditKind] | None,
) -> AuditEventConnection:
    page, total = await audit.audit_log(info.context, agency_id, kinds, first, after)  # type: ignore[arg-type]
    return AuditEventConnection(
        edges=[
            AuditEventEdge(node=AuditEvent.from_domain(record), cursor=cursor)
            for record, cursor in zip(page.items, page.cursors, strict=True)
        ],
        page_info=page_info(page),
        total_count=total,
    )


@strawberry.type
class AuditSubscriptions:
    @strawberry.subscription(
        description="Every change and sign-in in the viewer's agency as it is logged "
        "(owners and agency admins)."
    )
    async def audit_events(self, info: Info) -> AsyncGenerator[AuditEvent, None]:
        async for record in audit.audit_events(info.context):
            yield AuditEvent.from_domain(record)
