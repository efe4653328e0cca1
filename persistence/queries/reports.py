"""Report queries: sums over the rollups, never over raw calls.

A range reads its whole UTC days from `usage_daily`, the whole UTC hours left from
`usage_hourly`, and only the quarter hours left after that from `usage_quarter_hour`: a range
in Asia/Kolkata starts and ends at half past a UTC hour, one in Asia/Kathmandu at a quarter to.
The three tables are written in the same transaction by ingestion, each coarser one the exact
sum of the finer, so the parts together count every call once. Every zone offset in use since
1979 is a whole number of quarter hours; a bound that is not (a local midnight in 1900) counts
a quarter by the side its start is on.
"""

from __future__ import annotations

import uuid
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Subquery,
    Table,
    cast,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.money import Tier
from domain.usage import CallStatus
from persistence.merges import members_of, merged_t
from persistence.usage import STATUS_COLUMNS, SUMMED_COLUMNS, daily_t, quarter_t, rollup_t

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The rollups, coarsest first: table, its period column, its period.
LEVELS: tuple[tuple[Table, str, timedelta], ...] = (
    (daily_t, "day_utc", timedelta(days=1)),
    (rollup_t, "hour_utc", timedelta(hours=1)),
    (quarter_t, "quarter_utc", timedelta(minutes=15)),
)
Span = tuple[datetime, datetime | None]  # [start, end); None: open


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

    @property
    def failed_calls(self) -> int:
        return self.by_status.get(CallStatus.FAILED, 0)


@dataclass
class ClientUsage:
    """What the agency report shows of one client's range: totals, without tiers or the
    other statuses, so that its statement sums and groups less (one row per client)."""

    calls: int = 0
    seconds: int = 0
    overage_seconds: int = 0
    spent_micros: int = 0
    cost_micros: int = 0
    failed_calls: int = 0


CLIENT_COLUMNS = (
    "calls",
    "seconds",
    "overage_seconds",
    "spent_micros",
    "cost_micros",
    STATUS_COLUMNS[CallStatus.FAILED],
)


def _floor(moment: datetime, period: timedelta) -> datetime:
    return moment - (moment - EPOCH) % period


def _ceil(moment: datetime, period: timedelta) -> datetime:
    floor = _floor(moment, period)
    return floor if floor == moment else floor + period


def whole_periods(start: datetime, end: datetime | None, period: timedelta) -> Span | None:
    """The whole UTC periods (days, hours, quarters) inside [start, end): the first one's start
    and the end of the last (None: open), or None when there are none."""
    first = _ceil(start, period)
    if end is None:
        return first, None
    last = _floor(end, period)
    return (first, last) if first < last else None


def whole_days(start: datetime, end: datetime | None) -> Span | None:
    """The whole UTC days inside [start, end): first midnight and end midnight (None: open)."""
    return whole_periods(start, end, LEVELS[0][2])


def _split(lo: datetime, hi: datetime | None, level: int, into: list[list[Span]]) -> None:
    """[lo, hi) as the whole periods of `level` it holds and, around them, finer ones."""
    period = LEVELS[level][2]
    whole = whole_periods(lo, hi, period) if level < len(LEVELS) - 1 else None
    if whole is None:
        if level < len(LEVELS) - 1:
            _split(lo, hi, level + 1, into)
        else:
            into[level].append((lo, hi))
        return
    first, last = whole
    into[level].append(whole)
    if lo < first:
        _split(lo, first, level + 1, into)
    if last is not None and hi is not None and last < hi:
        _split(last, hi, level + 1, into)


def _merged(spans: list[Span]) -> list[Span]:
    """Adjacent spans as one (a series' hours make one condition, not thousands)."""
    out: list[Span] = []
    for lo, hi in sorted(spans, key=lambda s: s[0]):
        if out and out[-1][1] == lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def pieces(bounds: Sequence[datetime], end: datetime | None) -> list[list[Span]]:
    """[min(bounds), end) cut at every bound, each part split into whole UTC days, then whole
    UTC hours, then quarter hours: the spans to read from each rollup, coarsest first.

    Every span lies between two consecutive bounds, so a rollup row (a day, an hour or a
    quarter) read for it is wholly inside or wholly outside each range those bounds came from.
    """
    points = sorted(set(bounds))
    into: list[list[Span]] = [[] for _ in LEVELS]
    for lo, hi in zip(points, [*points[1:], end], strict=True):
        _split(lo, hi, 0, into)
    return [_merged(spans) for spans in into]


def rollup_rows(
    columns: Sequence[str],
    ranges: Sequence[Span],
    *,
    agency_id: uuid.UUID | None = None,
    sub_account_id: uuid.UUID | None = None,
) -> Subquery:
    """(sub_account_id, tier, at, *columns) rows of the rollups covering the union of the
    ranges once, each row wholly inside or outside each range (`at`: its day, hour or
    quarter). One account's rows include those of the accounts merged into it."""

    def part(table: Table, at: str, spans: list[Span]) -> Select[Any]:
        moment = table.c[at]
        query = select(
            table.c.sub_account_id,
            table.c.tier,
            moment.label("at"),
            *(table.c[c] for c in columns),
        ).where(
            or_(
                *(
                    (moment >= lo) if hi is None else (moment >= lo) & (moment < hi)
                    for lo, hi in spans
                )
            )
        )
        if agency_id is not None:
            query = query.where(table.c.agency_id == agency_id)
        if sub_account_id is not None:
            # The account's own rows and those of the accounts merged into it.
            query = query.where(
                or_(
                    table.c.sub_account_id == sub_account_id,
                    table.c.sub_account_id.in_(members_of(sub_account_id)),
                )
            )
        return query

    ends = [e for _, e in ranges]
    end = None if None in ends else max(e for e in ends if e is not None)
    bounds = [*(s for s, _ in ranges), *(e for e in ends if e is not None and e != end)]
    parts = [
        part(table, at, spans)
        for (table, at, _), spans in zip(LEVELS, pieces(bounds, end), strict=True)
        if spans
    ]
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
    sub-account of the agency (or of one), in one statement that reads each row once.

    A merged sub-account's rows count for the account its history rolls up into
    (`merged_account.owner_id`): its target, or that one's target if it merged on."""
    windows = {"": detailed, **seconds_only}
    rows = rollup_rows(
        SUMMED_COLUMNS,
        list(windows.values()),
        agency_id=agency_id,
        sub_account_id=sub_account_id,
    )

    def inside(window: tuple[datetime, datetime]) -> ColumnElement[bool]:
        return (rows.c.at >= window[0]) & (rows.c.at < window[1])

    sums = [
        *(_sum(rows.c[c], inside(detailed)).label(c) for c in SUMMED_COLUMNS),
        *(_sum(rows.c.seconds, inside(w)).label(f"seconds_{n}") for n, w in seconds_only.items()),
    ]
    if sub_account_id is not None:  # a constant: every row is this account's
        owner: ColumnElement[Any] = literal(sub_account_id, merged_t.c.owner_id.type)
        query = select(owner.label("sub_account_id"), rows.c.tier, *sums).group_by(rows.c.tier)
    else:
        # Per account and tier first, then per account its history rolls up into (see
        # `client_usage_in_windows`: grouped by the COALESCE alone, PostgreSQL sorts every row).
        per_account = (
            select(rows.c.sub_account_id, rows.c.tier, *sums)
            .group_by(rows.c.sub_account_id, rows.c.tier)
            .subquery()
        )
        owner = func.coalesce(merged_t.c.owner_id, per_account.c.sub_account_id)
        query = (
            select(
                owner.label("sub_account_id"),
                per_account.c.tier,
                *(_sum(per_account.c[s.name]).label(s.name) for s in sums),
            )
            .select_from(
                per_account.outerjoin(
                    merged_t, merged_t.c.sub_account_id == per_account.c.sub_account_id
                )
            )
            .group_by(owner, per_account.c.tier)
        )
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


async def client_usage_in_windows(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    detailed: tuple[datetime, datetime],
    seconds_only: dict[str, tuple[datetime, datetime]],
) -> tuple[dict[uuid.UUID, ClientUsage], dict[str, dict[uuid.UUID, int]]]:
    """`usage_in_windows` for every client of an agency, cut to what the agency report shows:
    the `detailed` range's totals (`ClientUsage`) and the seconds of the other ranges, grouped
    by client alone. Read once, like `usage_in_windows`, with merged accounts rolled up."""
    windows = {"": detailed, **seconds_only}
    rows = rollup_rows(CLIENT_COLUMNS, list(windows.values()), agency_id=agency_id)

    def inside(window: tuple[datetime, datetime]) -> ColumnElement[bool]:
        return (rows.c.at >= window[0]) & (rows.c.at < window[1])

    # Summed per account first, then per account its history rolls up into: grouped by the
    # account's own column, PostgreSQL knows there are about as many groups as clients and
    # hashes them; grouped by the COALESCE it guessed a group per row and sorted them all
    # (on disk, at 10 M calls).
    sums = [
        *(_sum(rows.c[c], inside(detailed)).label(c) for c in CLIENT_COLUMNS),
        *(_sum(rows.c.seconds, inside(w)).label(f"seconds_{n}") for n, w in seconds_only.items()),
    ]
    per_account = select(rows.c.sub_account_id, *sums).group_by(rows.c.sub_account_id).subquery()
    owner = func.coalesce(merged_t.c.owner_id, per_account.c.sub_account_id)
    query = (
        select(
            owner.label("sub_account_id"),
            *(_sum(per_account.c[s.name]).label(s.name) for s in sums),
        )
        .select_from(
            per_account.outerjoin(
                merged_t, merged_t.c.sub_account_id == per_account.c.sub_account_id
            )
        )
        .group_by(owner)
    )
    totals: dict[uuid.UUID, ClientUsage] = {}
    others: dict[str, dict[uuid.UUID, int]] = {name: {} for name in seconds_only}
    failed = STATUS_COLUMNS[CallStatus.FAILED]
    for row in await conn.execute(query):
        m = row._mapping
        for name in seconds_only:
            if m[f"seconds_{name}"]:
                others[name][row.sub_account_id] = m[f"seconds_{name}"]
        if m["calls"] or m["seconds"]:
            totals[row.sub_account_id] = ClientUsage(
                m["calls"],
                m["seconds"],
                m["overage_seconds"],
                m["spent_micros"],
                m["cost_micros"],
                m[failed],
            )
    return totals, others


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
class PeriodUsage:
    start: datetime
    calls: int
    seconds: int
    spent_micros: int


async def usage_per_period(
    conn: AsyncConnection, sub_account_id: uuid.UUID, starts: Sequence[datetime]
) -> list[PeriodUsage]:
    """A sub-account's calls, seconds and spending in each period [starts[i], starts[i + 1])
    that has any, in order (a chart's points: local days or hours)."""
    rows = rollup_rows(
        ("calls", "seconds", "spent_micros"),
        list(pairwise(starts)),
        sub_account_id=sub_account_id,
    )
    found = await conn.execute(
        select(rows.c.at, _sum(rows.c.calls), _sum(rows.c.seconds), _sum(rows.c.spent_micros))
        .group_by(rows.c.at)
        .order_by(rows.c.at)
    )
    sums: dict[int, list[int]] = {}
    for at, calls, seconds, spent in found:
        into = sums.setdefault(bisect_right(starts, at) - 1, [0, 0, 0])
        into[0] += calls
        into[1] += seconds
        into[2] += spent
    return [PeriodUsage(starts[i], *sums[i]) for i in sorted(sums)]
