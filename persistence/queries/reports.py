"""Report queries: sums over the rollups, never over raw calls.

A range reads its whole UTC days from `usage_daily` and only the hours of its partial days at
either end from `usage_hourly` (a range in a time zone ahead of or behind UTC starts and ends
mid-day in UTC). Both tables are written in the same transaction by ingestion, so the two
parts together count every call once.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, Subquery, Table, func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.money import Tier
from domain.usage import CallStatus
from persistence.usage import STATUS_COLUMNS, SUMMED_COLUMNS, daily_t, rollup_t


@dataclass
class UsageTotals:
    calls: int = 0
    inbound: int = 0
    outbound: int = 0
    seconds_by_tier: dict[Tier, int] = field(default_factory=dict)
    overage_seconds: int = 0
    spent_micros: int = 0
    cost_micros: int = 0
    by_status: dict[CallStatus, int] = field(default_factory=dict)

    @property
    def seconds(self) -> int:
        return sum(self.seconds_by_tier.values())


def whole_days(start: datetime, end: datetime | None) -> tuple[datetime, datetime | None] | None:
    """The whole UTC days inside [start, end): first midnight and end midnight (None: open)."""
    first = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if first < start:
        first += timedelta(days=1)
    if end is None:
        return first, None
    last = end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (first, last) if first < last else None


def rollup_rows(
    columns: Sequence[str],
    start: datetime,
    end: datetime | None,
    *,
    agency_id: uuid.UUID | None = None,
    sub_account_id: uuid.UUID | None = None,
) -> Subquery:
    """(sub_account_id, tier, *columns) rows of both rollups covering [start, end) once."""

    def part(table: Table, within: ColumnElement[bool]) -> Select[Any]:
        query = select(table.c.sub_account_id, table.c.tier, *(table.c[c] for c in columns))
        query = query.where(within)
        if agency_id is not None:
            query = query.where(table.c.agency_id == agency_id)
        if sub_account_id is not None:
            query = query.where(table.c.sub_account_id == sub_account_id)
        return query

    hour = rollup_t.c.hour_utc
    days = whole_days(start, end)
    if days is None:
        assert end is not None
        return part(rollup_t, (hour >= start) & (hour < end)).subquery()
    first, last = days
    day = daily_t.c.day_utc
    daily = part(daily_t, day >= first if last is None else (day >= first) & (day < last))
    edges = [(hour >= start) & (hour < first)]
    if last is not None and end is not None:
        edges.append((hour >= last) & (hour < end))
    return union_all(daily, part(rollup_t, or_(*edges))).subquery()


async def usage_by_sub_account(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    start: datetime,
    end: datetime,
    sub_account_id: uuid.UUID | None = None,
) -> dict[uuid.UUID, UsageTotals]:
    """One grouped statement for the whole agency (or one sub-account) and range."""
    rows = rollup_rows(
        SUMMED_COLUMNS, start, end, agency_id=agency_id, sub_account_id=sub_account_id
    )
    query = select(
        rows.c.sub_account_id, rows.c.tier, *(func.sum(rows.c[c]).label(c) for c in SUMMED_COLUMNS)
    ).group_by(rows.c.sub_account_id, rows.c.tier)
    totals: dict[uuid.UUID, UsageTotals] = defaultdict(UsageTotals)
    for row in await conn.execute(query):
        t = totals[row.sub_account_id]
        t.calls += int(row.calls)
        t.inbound += int(row.inbound)
        t.outbound += int(row.outbound)
        t.seconds_by_tier[Tier(row.tier)] = int(row.seconds)
        t.overage_seconds += int(row.overage_seconds)
        t.spent_micros += int(row.spent_micros)
        t.cost_micros += int(row.cost_micros)
        for status, column in STATUS_COLUMNS.items():
            t.by_status[status] = t.by_status.get(status, 0) + int(row._mapping[column])
    return dict(totals)


@dataclass(frozen=True)
class HourPoint:
    hour_utc: datetime
    calls: int
    seconds: int
    spent_micros: int


async def hourly_series(
    conn: AsyncConnection, sub_account_id: uuid.UUID, start: datetime, end: datetime
) -> list[HourPoint]:
    rows = await conn.execute(
        select(
            rollup_t.c.hour_utc,
            func.sum(rollup_t.c.calls),
            func.sum(rollup_t.c.seconds),
            func.sum(rollup_t.c.spent_micros),
        )
        .where(
            rollup_t.c.sub_account_id == sub_account_id,
            rollup_t.c.hour_utc >= start,
            rollup_t.c.hour_utc < end,
        )
        .group_by(rollup_t.c.hour_utc)
        .order_by(rollup_t.c.hour_utc)
    )
    return [HourPoint(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]
