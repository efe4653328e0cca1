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

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Subquery,
    Table,
    cast,
    func,
    or_,
    select,
    union_all,
)
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


def _pieces(
    bounds: Sequence[datetime], end: datetime | None
) -> tuple[list[tuple[datetime, datetime | None]], list[tuple[datetime, datetime]]]:
    """Split [bounds[0], end) at every bound into whole UTC days and leftover hours.

    Every piece lies between two consecutive bounds, so a rollup row (a day or an hour) read
    for a piece is wholly inside or wholly outside each range those bounds came from.
    """
    points = sorted(set(bounds))
    days: list[tuple[datetime, datetime | None]] = []
    hours: list[tuple[datetime, datetime]] = []
    for lo, hi in zip(points, [*points[1:], end], strict=True):
        whole = whole_days(lo, hi)
        if whole is None:
            assert hi is not None
            hours.append((lo, hi))
            continue
        first, last = whole
        days.append((first, last))
        if lo < first:
            hours.append((lo, first))
        if last is not None and hi is not None and last < hi:
            hours.append((last, hi))
    return days, hours


def rollup_rows(
    columns: Sequence[str],
    ranges: Sequence[tuple[datetime, datetime | None]],
    *,
    agency_id: uuid.UUID | None = None,
    sub_account_id: uuid.UUID | None = None,
) -> Subquery:
    """(sub_account_id, tier, at, *columns) rows of both rollups covering the union of the
    ranges once, each row wholly inside or outside each range (`at`: its hour or day)."""

    def part(table: Table, at: str, within: ColumnElement[bool]) -> Select[Any]:
        query = select(
            table.c.sub_account_id,
            table.c.tier,
            table.c[at].label("at"),
            *(table.c[c] for c in columns),
        ).where(within)
        if agency_id is not None:
            query = query.where(table.c.agency_id == agency_id)
        if sub_account_id is not None:
            query = query.where(table.c.sub_account_id == sub_account_id)
        return query

    ends = [e for _, e in ranges]
    end = None if None in ends else max(e for e in ends if e is not None)
    bounds = [*(s for s, _ in ranges), *(e for e in ends if e is not None and e != end)]
    days, hours = _pieces(bounds, end)
    day, hour = daily_t.c.day_utc, rollup_t.c.hour_utc
    parts = []
    if days:
        parts.append(
            part(
                daily_t,
                "day_utc",
                or_(*((day >= lo) if hi is None else (day >= lo) & (day < hi) for lo, hi in days)),
            )
        )
    if hours:
        parts.append(
            part(rollup_t, "hour_utc", or_(*((hour >= lo) & (hour < hi) for lo, hi in hours)))
        )
    return (union_all(*parts) if len(parts) > 1 else parts[0]).subquery()


def _sum(column: ColumnElement[Any], where: ColumnElement[bool] | None = None) -> Any:
    """SUM as bigint: PostgreSQL sums bigints into numeric, which the driver hands back as
    Decimal; the cast keeps both sides in integers."""
    total = func.sum(column) if where is None else func.sum(column).filter(where)
    return func.coalesce(cast(total, BigInteger), 0)


async def usage_in_windows(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    detailed: tuple[datetime, datetime],
    seconds_only: dict[str, tuple[datetime, datetime]],
    sub_account_id: uuid.UUID | None = None,
) -> tuple[dict[uuid.UUID, UsageTotals], dict[str, dict[uuid.UUID, UsageTotals]]]:
    """Every figure for the `detailed` range and seconds per tier for the other ranges, per
    sub-account of the agency (or of one), in one statement that reads each row once."""
    windows = {"": detailed, **seconds_only}
    rows = rollup_rows(
        SUMMED_COLUMNS,
        list(windows.values()),
        agency_id=agency_id,
        sub_account_id=sub_account_id,
    )

    def inside(window: tuple[datetime, datetime]) -> ColumnElement[bool]:
        return (rows.c.at >= window[0]) & (rows.c.at < window[1])

    query = select(
        rows.c.sub_account_id,
        rows.c.tier,
        *(_sum(rows.c[c], inside(detailed)).label(c) for c in SUMMED_COLUMNS),
        *(_sum(rows.c.seconds, inside(w)).label(f"seconds_{n}") for n, w in seconds_only.items()),
    ).group_by(rows.c.sub_account_id, rows.c.tier)
    totals: dict[uuid.UUID, UsageTotals] = defaultdict(UsageTotals)
    others: dict[str, dict[uuid.UUID, UsageTotals]] = {
        name: defaultdict(UsageTotals) for name in seconds_only
    }
    for row in await conn.execute(query):
        m = row._mapping
        tier = Tier(row.tier)
        for name in seconds_only:
            if m[f"seconds_{name}"]:
                others[name][row.sub_account_id].seconds_by_tier[tier] = m[f"seconds_{name}"]
        if not m["calls"] and not m["seconds"]:
            continue  # nothing in the detailed range
        t = totals[row.sub_account_id]
        t.calls += m["calls"]
        t.inbound += m["inbound"]
        t.outbound += m["outbound"]
        t.seconds_by_tier[tier] = m["seconds"]
        t.overage_seconds += m["overage_seconds"]
        t.spent_micros += m["spent_micros"]
        t.cost_micros += m["cost_micros"]
        for status, column in STATUS_COLUMNS.items():
            t.by_status[status] = t.by_status.get(status, 0) + m[column]
    return dict(totals), {n: dict(v) for n, v in others.items()}


async def usage_by_sub_account(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    start: datetime,
    end: datetime,
    sub_account_id: uuid.UUID | None = None,
) -> dict[uuid.UUID, UsageTotals]:
    """Every figure for one range, per sub-account of the agency (or of one)."""
    totals, _ = await usage_in_windows(conn, agency_id, (start, end), {}, sub_account_id)
    return totals


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
