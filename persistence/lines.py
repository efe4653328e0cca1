"""Phone lines and their holdings: statements for adding, locking, moving and releasing.

A line's row is locked (`FOR NO KEY UPDATE`) before its open holding is closed and the next
one opened, so two moves of one line run one after the other and the history stays a chain;
the partial unique index `uq_line_holding_open` refuses a second open holding regardless.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.lines import LineHolding, PhoneLine
from persistence.tables import LineHoldingRow, PhoneLineRow

line_t = PhoneLineRow.__table__
holding_t = LineHoldingRow.__table__
LINE_COLUMNS = (
    line_t.c.id,
    line_t.c.agency_id,
    line_t.c.sub_account_id,
    line_t.c.number,
    line_t.c.monthly_price_micros,
    line_t.c.created_at,
)
_LIVE = line_t.c.released_at.is_(None)


def line_from(row: Any) -> PhoneLine:
    return PhoneLine(
        row.id,
        row.agency_id,
        row.sub_account_id,
        row.number,
        row.monthly_price_micros,
        row.created_at,
    )


def _holding(row: Any) -> LineHolding:
    return LineHolding(row.line_id, row.sub_account_id, row.from_date, row.to_date)


async def taken_numbers(
    conn: AsyncConnection, agency_id: uuid.UUID, numbers: Sequence[str]
) -> frozenset[str]:
    """Which of `numbers` an unreleased line of the agency has already."""
    rows = await conn.execute(
        select(line_t.c.number).where(
            line_t.c.agency_id == agency_id, line_t.c.number.in_(numbers), _LIVE
        )
    )
    return frozenset(row.number for row in rows)


async def add_lines(
    conn: AsyncConnection, lines: Sequence[PhoneLine], holdings: Sequence[LineHolding]
) -> None:
    await conn.execute(
        insert(line_t),
        [
            {
                "id": line.id,
                "agency_id": line.agency_id,
                "sub_account_id": line.sub_account_id,
                "number": line.number,
                "monthly_price_micros": line.monthly_price_micros,
                "created_at": line.created_at,
            }
            for line in lines
        ],
    )
    await _open(conn, lines[0].agency_id, holdings)


async def _open(
    conn: AsyncConnection, agency_id: uuid.UUID, holdings: Sequence[LineHolding]
) -> None:
    if holdings:
        await conn.execute(
            insert(holding_t),
            [
                {
                    "agency_id": agency_id,
                    "line_id": h.line_id,
                    "sub_account_id": h.sub_account_id,
                    "from_date": h.from_date,
                }
                for h in holdings
            ],
        )


async def _close(conn: AsyncConnection, closed: Sequence[LineHolding]) -> None:
    """Set the end of each line's open holding, one statement per closing day."""
    by_day: dict[date, list[uuid.UUID]] = defaultdict(list)
    for holding in closed:
        assert holding.to_date is not None
        by_day[holding.to_date].append(holding.line_id)
    for day, line_ids in by_day.items():
        await conn.execute(
            update(holding_t)
            .where(holding_t.c.line_id.in_(line_ids), holding_t.c.to_date.is_(None))
            .values(to_date=day)
        )


async def line_by_id(conn: AsyncConnection, line_id: uuid.UUID) -> PhoneLine | None:
    """An unreleased line (a released one reads as absent)."""
    row = (await conn.execute(select(*LINE_COLUMNS).where(line_t.c.id == line_id, _LIVE))).first()
    return None if row is None else line_from(row)


async def line_for_update(
    conn: AsyncConnection, agency_id: uuid.UUID, line_id: uuid.UUID
) -> PhoneLine | None:
    """The agency's unreleased line, row-locked (FOR NO KEY UPDATE: the holdings' foreign-key
    checks on it go on)."""
    query = (
        select(*LINE_COLUMNS)
        .where(line_t.c.id == line_id, line_t.c.agency_id == agency_id, _LIVE)
        .with_for_update(key_share=True)
    )
    row = (await conn.execute(query)).first()
    return None if row is None else line_from(row)


async def lines_of_for_update(conn: AsyncConnection, sub_account_id: uuid.UUID) -> list[PhoneLine]:
    """A sub-account's unreleased lines, row-locked in id order."""
    query = (
        select(*LINE_COLUMNS)
        .where(line_t.c.sub_account_id == sub_account_id, _LIVE)
        .order_by(line_t.c.id)
        .with_for_update(key_share=True)
    )
    return [line_from(row) for row in await conn.execute(query)]


async def open_holdings(conn: AsyncConnection, line_ids: Sequence[uuid.UUID]) -> list[LineHolding]:
    """Each line's open holding, in the order of `line_ids`."""
    rows = await conn.execute(
        select(holding_t).where(holding_t.c.line_id.in_(line_ids), holding_t.c.to_date.is_(None))
    )
    found = {row.line_id: _holding(row) for row in rows}
    return [found[line_id] for line_id in line_ids]


async def save_move(
    conn: AsyncConnection, line: PhoneLine, closed: LineHolding, opened: LineHolding
) -> None:
    """`line` now with its new holder; the old holding closed, the new one opened."""
    await _close(conn, [closed])
    await _open(conn, line.agency_id, [opened])
    await conn.execute(
        update(line_t).where(line_t.c.id == line.id).values(sub_account_id=line.sub_account_id)
    )


async def release(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    closed: Sequence[LineHolding],
    now: datetime,
    opened: Sequence[LineHolding] = (),
) -> None:
    """Close the holdings; lines with an `opened` holding go to the pool, the rest are
    released for good (they keep their last holder and their history)."""
    await _close(conn, closed)
    await _open(conn, agency_id, opened)
    to_pool = [h.line_id for h in opened]
    gone = [h.line_id for h in closed if h.line_id not in frozenset(to_pool)]
    if to_pool:
        await conn.execute(
            update(line_t).where(line_t.c.id.in_(to_pool)).values(sub_account_id=None)
        )
    if gone:
        await conn.execute(update(line_t).where(line_t.c.id.in_(gone)).values(released_at=now))


async def holdings_of(conn: AsyncConnection, line_id: uuid.UUID) -> list[LineHolding]:
    """A line's whole history, oldest first."""
    rows = await conn.execute(
        select(holding_t)
        .where(holding_t.c.line_id == line_id)
        .order_by(holding_t.c.from_date, holding_t.c.id)
    )
    return [_holding(row) for row in rows]


async def line_counts(conn: AsyncConnection, sub_account_ids: Sequence[uuid.UUID]) -> list[int]:
    """A DataLoader batch: each sub-account's unreleased lines."""
    rows = await conn.execute(
        select(line_t.c.sub_account_id, func.count())
        .where(line_t.c.sub_account_id.in_(sub_account_ids), _LIVE)
        .group_by(line_t.c.sub_account_id)
    )
    found = {row[0]: int(row[1]) for row in rows}
    return [found.get(key, 0) for key in sub_account_ids]
