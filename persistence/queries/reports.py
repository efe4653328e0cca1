"""Report queries: sums over the hourly rollups, never over raw calls."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.money import Tier
from domain.usage import CallStatus
from persistence.usage import STATUS_COLUMNS, rollup_t


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


_SUMMED = (
    "calls",
    "inbound",
    "outbound",
    "seconds",
    "overage_seconds",
    "spent_micros",
    "cost_micros",
    *STATUS_COLUMNS.values(),
)


async def usage_by_sub_account(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    start: datetime,
    end: datetime,
    sub_account_id: uuid.UUID | None = None,
) -> dict[uuid.UUID, UsageTotals]:
    """One grouped statement for the whole agency (or one sub-account) and range."""
    query = (
        select(
            rollup_t.c.sub_account_id,
            rollup_t.c.tier,
            *(func.sum(rollup_t.c[c]).label(c) for c in _SUMMED),
        )
        .where(
            rollup_t.c.agency_id == agency_id,
            rollup_t.c.hour_utc >= start,
            rollup_t.c.hour_utc < end,
        )
        .group_by(rollup_t.c.sub_account_id, rollup_t.c.tier)
    )
    if sub_account_id is not None:
        query = query.where(rollup_t.c.sub_account_id == sub_account_id)
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
