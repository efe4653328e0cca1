"""The live audit feed of an agency (owner and admins)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry

from domain.events import AuditKind
from resolvers import audit
from resolvers.context import RequestContext

AuditKindEnum = strawberry.enum(AuditKind, name="AuditKind")


@strawberry.type
class AuditEvent:
    sequence: str = strawberry.field(description="Increasing across all events of the service.")
    kind: AuditKindEnum
    occurred_at: datetime
    email: str | None


@strawberry.type
class AuditSubscriptions:
    @strawberry.subscription(description="Sign-ins and failed sign-ins in the viewer's agency.")
    async def audit_events(
        self, info: strawberry.Info[RequestContext, None]
    ) -> AsyncGenerator[AuditEvent, None]:
        async for entry in audit.audit_events(info.context):
            yield AuditEvent(
                sequence=str(entry.sequence),
                kind=entry.kind,
                occurred_at=entry.occurred_at,
                email=entry.email,
            )
