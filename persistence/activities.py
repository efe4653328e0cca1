"""Campaigns, inbound agents and automations, and what suspension does to them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import case, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.activity import Activity
from domain.sub_account import ActivityKind, ActivityStatus
from persistence.tables import ActivityRow

activity_t = ActivityRow.__table__
ACTIVITY_COLUMNS = (
    activity_t.c.id,
    activity_t.c.agency_id,
    activity_t.c.sub_account_id,
    activity_t.c.kind,
    activity_t.c.name,
    activity_t.c.status,
    activity_t.c.created_at,
)


def activity_from(row: Any) -> Activity:
    return Activity(
        row.id,
        row.agency_id,
        row.sub_account_id,
        ActivityKind(row.kind),
        row.name,
        ActivityStatus(row.status),
        row.created_at,
    )


async def add_activity(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    sub_account_id: uuid.UUID,
    kind: ActivityKind,
    name: str,
    status: ActivityStatus,
    now: datetime,
) -> Activity:
    activity = Activity(uuid.uuid4(), agency_id, sub_account_id, kind, name, status, now)
    await conn.execute(
        insert(activity_t).values(
            id=activity.id,
            agency_id=agency_id,
            sub_account_id=sub_account_id,
            kind=kind.value,
            name=name,
            status=status.value,
            created_at=now,
        )
    )
    return activity


async def activity_by_id(conn: AsyncConnection, activity_id: uuid.UUID) -> Activity | None:
    row = (
        await conn.execute(select(*ACTIVITY_COLUMNS).where(activity_t.c.id == activity_id))
    ).first()
    return None if row is None else activity_from(row)


async def set_status(conn: AsyncConnection, activity_id: uuid.UUID, status: ActivityStatus) -> None:
    await conn.execute(
        update(activity_t)
        .where(activity_t.c.id == activity_id)
        .values(status=status.value, paused_by_suspension=False, paused_by_cap=False)
    )


async def pause_for_suspension(conn: AsyncConnection, sub_account_id: uuid.UUID) -> int:
    """Pause exactly what is active, and remember that suspension did it. What the spending
    cap paused is marked too: lifting the cap during the suspension must not bring it back."""
    result = await conn.execute(
        update(activity_t)
        .where(
            activity_t.c.sub_account_id == sub_account_id,
            or_(activity_t.c.status == "ACTIVE", activity_t.c.paused_by_cap),
        )
        .values(status="PAUSED", paused_by_suspension=True)
    )
    return result.rowcount


async def resume_after_suspension(conn: AsyncConnection, sub_account_id: uuid.UUID) -> int:
    """Bring back exactly what suspension paused; what was paused before stays paused, and
    what the spending cap holds too stays paused until the cap lets it go."""
    result = await conn.execute(
        update(activity_t)
        .where(activity_t.c.sub_account_id == sub_account_id, activity_t.c.paused_by_suspension)
        .values(
            status=case((activity_t.c.paused_by_cap, "PAUSED"), else_="ACTIVE"),
            paused_by_suspension=False,
        )
    )
    return result.rowcount


async def pause_for_cap(conn: AsyncConnection, sub_account_id: uuid.UUID) -> int:
    """The spending cap pauses the active campaigns, and marks them as its own; a campaign
    suspension paused (it was active before) is marked too, so restoring the sub-account
    leaves it paused while the cap holds."""
    result = await conn.execute(
        update(activity_t)
        .where(
            activity_t.c.sub_account_id == sub_account_id,
            activity_t.c.kind == ActivityKind.CAMPAIGN.value,
            or_(activity_t.c.status == "ACTIVE", activity_t.c.paused_by_suspension),
        )
        .values(status="PAUSED", paused_by_cap=True)
    )
    return result.rowcount


async def resume_after_cap(conn: AsyncConnection, sub_account_id: uuid.UUID) -> int:
    """Bring back exactly what the cap paused, unless a suspension holds it too."""
    result = await conn.execute(
        update(activity_t)
        .where(activity_t.c.sub_account_id == sub_account_id, activity_t.c.paused_by_cap)
        .values(
            status=case((activity_t.c.paused_by_suspension, "PAUSED"), else_="ACTIVE"),
            paused_by_cap=False,
        )
    )
    return result.rowcount


async def stop_all(conn: AsyncConnection, sub_account_id: uuid.UUID) -> None:
    """Removal stops everything for good."""
    await conn.execute(
        update(activity_t)
        .where(activity_t.c.sub_account_id == sub_account_id)
        .values(status="PAUSED", paused_by_suspension=False, paused_by_cap=False)
    )
