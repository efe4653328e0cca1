"""The billing summary's reads: a range's line holdings with their lines, and its
adjustments, each one statement for the whole agency (usage comes from the report queries'
rollups, persistence/queries/reports.py)."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.billing import BillingAdjustment
from domain.lines import LineHolding, PhoneLine
from persistence.billing import adjustment_from, adjustment_t
from persistence.lines import LINE_COLUMNS, holding_t, line_from, line_t


async def holdings_in(
    conn: AsyncConnection, agency_id: uuid.UUID, first: date, last: date
) -> tuple[dict[uuid.UUID, PhoneLine], list[LineHolding]]:
    """Every holding of the agency's lines that covers a day of [first, last], released
    lines included, and those lines by id."""
    query = (
        select(
            *LINE_COLUMNS,
            holding_t.c.line_id,
            holding_t.c.sub_account_id.label("holder_id"),
            holding_t.c.from_date,
            holding_t.c.to_date,
        )
        .select_from(holding_t.join(line_t, line_t.c.id == holding_t.c.line_id))
        .where(
            holding_t.c.agency_id == agency_id,
            holding_t.c.from_date <= last,
            or_(holding_t.c.to_date.is_(None), holding_t.c.to_date > first),
        )
    )
    lines: dict[uuid.UUID, PhoneLine] = {}
    holdings = []
    for row in await conn.execute(query):
        if row.id not in lines:
            lines[row.id] = line_from(row)
        holdings.append(LineHolding(row.line_id, row.holder_id, row.from_date, row.to_date))
    return lines, holdings


async def adjustments_in(
    conn: AsyncConnection, agency_id: uuid.UUID, first: date, last: date
) -> list[BillingAdjustment]:
    rows = await conn.execute(
        select(adjustment_t).where(
            adjustment_t.c.agency_id == agency_id,
            adjustment_t.c.dated_on >= first,
            adjustment_t.c.dated_on <= last,
        )
    )
    return [adjustment_from(row) for row in rows]
