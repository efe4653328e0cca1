"""Figures for live screens: spending this period, agency totals."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.queries.reports import rollup_rows
from persistence.records import sub_account_t


async def spent_since(conn: AsyncConnection, sub_account_id: uuid.UUID, start: datetime) -> int:
    rows = rollup_rows(("spent_micros",), [(start, None)], sub_account_id=sub_account_id)
    total = await conn.scalar(select(func.coalesce(func.sum(rows.c.spent_micros), 0)))
    return int(total or 0)


async def agency_seconds_since(conn: AsyncConnection, agency_id: uuid.UUID, start: datetime) -> int:
    rows = rollup_rows(("seconds",), [(start, None)], agency_id=agency_id)
    total = await conn.scalar(select(func.coalesce(func.sum(rows.c.seconds), 0)))
    return int(total or 0)


async def active_sub_accounts(conn: AsyncConnection, agency_id: uuid.UUID) -> int:
    total = await conn.scalar(
        select(func.count())
        .select_from(sub_account_t)
        .where(sub_account_t.c.agency_id == agency_id, sub_account_t.c.status == "ACTIVE")
    )
    return int(total or 0)
