"""Alert rows (one per sub-account, kind and day: the unique key) and who receives them."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.alerts import Alert, AlertKind
from domain.policy import Role
from persistence.database import dialect_insert
from persistence.tables import AgencyRow, AlertRow, SubAccountRow, UserGrantRow, UserRow

JOB = "send-alerts"

alert_t = AlertRow.__table__
user_t = UserRow.__table__
grant_t = UserGrantRow.__table__
sub_account_t = SubAccountRow.__table__
agency_t = AgencyRow.__table__


async def add(conn: AsyncConnection, alert: Alert, now: datetime) -> bool:
    """The alert's row, unless this sub-account had one of this kind today (false)."""
    result = await conn.execute(
        dialect_insert(conn, alert_t)
        .values(
            id=uuid.uuid4(),
            agency_id=alert.agency_id,
            sub_account_id=alert.sub_account_id,
            kind=alert.kind.value,
            day=alert.day,
            data=json.dumps(dict(alert.data), sort_keys=True, default=str),
            created_at=now,
        )
        .on_conflict_do_nothing()
    )
    return bool(result.rowcount == 1)


@dataclass(frozen=True)
class Unsent:
    id: uuid.UUID
    agency_id: uuid.UUID
    sub_account_id: uuid.UUID
    sub_account_name: str
    kind: AlertKind
    day: date
    data: dict[str, Any]


async def unsent(conn: AsyncConnection, limit: int = 200) -> list[Unsent]:
    rows = await conn.execute(
        select(alert_t, sub_account_t.c.name.label("sub_account_name"))
        .join(sub_account_t, sub_account_t.c.id == alert_t.c.sub_account_id)
        .where(alert_t.c.sent_at.is_(None))
        .order_by(alert_t.c.created_at, alert_t.c.id)
        .limit(limit)
    )
    return [
        Unsent(
            r.id,
            r.agency_id,
            r.sub_account_id,
            r.sub_account_name,
            AlertKind(r.kind),
            r.day,
            json.loads(r.data),
        )
        for r in rows
    ]


async def recipients(
    conn: AsyncConnection, agency_id: uuid.UUID, sub_account_id: uuid.UUID
) -> list[str]:
    """The agency's owner and admins, and the sub-account's own admins (all its sub-accounts,
    or a grant of this one), by email."""
    granted = (
        select(grant_t.c.user_id)
        .where(grant_t.c.user_id == user_t.c.id, grant_t.c.sub_account_id == sub_account_id)
        .exists()
    )
    rows = await conn.execute(
        select(user_t.c.email)
        .where(
            user_t.c.agency_id == agency_id,
            or_(
                user_t.c.role.in_([Role.AGENCY_OWNER.value, Role.AGENCY_ADMIN.value]),
                and_(
                    user_t.c.role == Role.SUBACCOUNT_ADMIN.value,
                    or_(user_t.c.all_sub_accounts, granted),
                ),
            ),
        )
        .order_by(user_t.c.email)
    )
    return [r.email for r in rows]


async def mark_sent(conn: AsyncConnection, alert_id: uuid.UUID, now: datetime) -> None:
    await conn.execute(
        update(alert_t)
        .where(alert_t.c.id == alert_id, alert_t.c.sent_at.is_(None))
        .values(sent_at=now)
    )


async def live_sub_accounts(conn: AsyncConnection) -> dict[tuple[uuid.UUID, str], list[uuid.UUID]]:
    """Every ACTIVE sub-account, by (agency, its time zone)."""
    rows = await conn.execute(
        select(sub_account_t.c.agency_id, agency_t.c.time_zone, sub_account_t.c.id)
        .join(agency_t, agency_t.c.id == sub_account_t.c.agency_id)
        .where(sub_account_t.c.status == "ACTIVE")
        .order_by(sub_account_t.c.agency_id, sub_account_t.c.id)
    )
    found: dict[tuple[uuid.UUID, str], list[uuid.UUID]] = {}
    for r in rows:
        found.setdefault((r.agency_id, r.time_zone), []).append(r.id)
    return found
