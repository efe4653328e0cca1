"""Usage storage: calls (unique per agency on external id) and the hourly and daily rollups."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.agency import Agency, SubAccount, SubAccountKind, SubAccountStatus
from domain.money import Tier
from domain.pricing import to_micros
from domain.usage import CallStatus, ReportedCall, RollupLine
from persistence.arrays import insert_unnested, insert_unnested_sql
from persistence.records import (
    AGENCY_COLUMNS,
    SUB_ACCOUNT_COLUMNS,
    agency_from,
    agency_t,
    sub_account_from,
    sub_account_t,
)
from persistence.tables import CallRow, UsageDailyRow, UsageHourlyRow

call_t = CallRow.__table__
rollup_t = UsageHourlyRow.__table__
daily_t = UsageDailyRow.__table__
STATUS_COLUMNS = {
    CallStatus.COMPLETED: "completed",
    CallStatus.FAILED: "failed",
    CallStatus.NO_ANSWER: "no_answer",
    CallStatus.BUSY: "busy",
    CallStatus.VOICEMAIL: "voicemail",
}


@dataclass(frozen=True)
class BatchContext:
    """What billing a batch needs to know first, read in two statements."""

    agency: Agency
    active_sub_accounts: int  # for the agency totals its events carry (a batch changes none)
    primary: SubAccount
    accounts: dict[uuid.UUID, SubAccount]  # the batch's sub-accounts found in the agency


_ACTIVE = (
    select(func.count())
    .where(
        sub_account_t.c.agency_id == agency_t.c.id,
        sub_account_t.c.status == SubAccountStatus.ACTIVE.value,
    )
    .scalar_subquery()
)


# Built once: every batch runs both, and building them afresh (with their cache keys) cost
# more CPU than running them.
_AGENCY = select(*AGENCY_COLUMNS, _ACTIVE.label("active")).where(
    agency_t.c.id == bindparam("agency_id")
)
_SUB_ACCOUNTS = select(*SUB_ACCOUNT_COLUMNS).where(
    or_(
        sub_account_t.c.id.in_(bindparam("ids", expanding=True)),
        and_(
            sub_account_t.c.agency_id == bindparam("agency_id"),
            sub_account_t.c.kind == SubAccountKind.PRIMARY.value,
        ),
    )
)


async def batch_context(
    conn: AsyncConnection, agency_id: uuid.UUID, sub_account_ids: list[uuid.UUID]
) -> BatchContext:
    row = (await conn.execute(_AGENCY, {"agency_id": agency_id})).one()
    rows = await conn.execute(_SUB_ACCOUNTS, {"agency_id": agency_id, "ids": sub_account_ids})
    found = [sub_account_from(r) for r in rows]
    [primary] = [s for s in found if s.is_primary and s.agency_id == agency_id]
    wanted = set(sub_account_ids)
    return BatchContext(
        agency_from(row),
        int(row.active),
        primary,
        {s.id: s for s in found if s.id in wanted and s.agency_id == agency_id},
    )


def _insert(conn: AsyncConnection, table: object) -> postgresql.Insert | sqlite.Insert:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)  # type: ignore[arg-type]


# Every column of `call` a batch supplies per call; the agency and the time it was recorded
# are the batch's.
_CALL_ARRAYS = [c for c in call_t.columns if c.name not in ("id", "agency_id", "recorded_at")]
_INSERT_CALLS_PG = insert_unnested(
    call_t,
    _CALL_ARRAYS,
    constants=(call_t.c.agency_id, call_t.c.recorded_at),
    tail="ON CONFLICT (agency_id, external_id) DO NOTHING RETURNING external_id",
)


async def insert_new_calls(
    conn: AsyncConnection, agency_id: uuid.UUID, calls: list[ReportedCall], now: datetime
) -> set[str]:
    """Insert the calls; returns the external ids that were new (the rest were duplicates).

    In external-id order, whatever the batch's order: a batch waits on the unique-index entry
    of an uncommitted twin, and two batches re-sending the same calls in different orders
    would otherwise each hold an entry the other waits for.
    """
    if not calls:
        return set()
    calls = sorted(calls, key=lambda c: c.external_id)
    if conn.dialect.name == "postgresql":
        arrays = {c.name: [getattr(call, c.name) for call in calls] for c in _CALL_ARRAYS}
        params = {"agency_id": agency_id, "recorded_at": now, **arrays}
        result = await conn.execute(_INSERT_CALLS_PG, params)
        return set(result.scalars().all())
    statement = (
        _insert(conn, call_t)
        .values(
            [
                {
                    "agency_id": agency_id,
                    "external_id": c.external_id,
                    "sub_account_id": c.sub_account_id,
                    "direction": c.direction.value,
                    "channel": c.channel.value,
                    "status": c.status.value,
                    "tier": c.tier.value,
                    "started_at": c.started_at,
                    "duration_seconds": c.duration_seconds,
                    "recorded_at": now,
                }
                for c in calls
            ]
        )
        .on_conflict_do_nothing(index_elements=["agency_id", "external_id"])
        .returning(call_t.c.external_id)
    )
    return set((await conn.scalars(statement)).all())


# What both rollups add up: every column but the row's key and its agency.
SUMMED_COLUMNS = tuple(
    c.name for c in rollup_t.columns if not c.primary_key and c.name != "agency_id"
)
assert set(STATUS_COLUMNS.values()) <= set(SUMMED_COLUMNS)


def hourly_rows(
    agency_id: uuid.UUID, lines: dict[tuple[uuid.UUID, Tier, datetime], RollupLine]
) -> list[dict[str, Any]]:
    """A batch's rollup lines as `usage_hourly` rows, money rounded to the micro-dollar once."""
    rows = []
    for (sub_account_id, tier, hour), line in sorted(
        lines.items(), key=lambda item: (item[0][0], item[0][1].value, item[0][2])
    ):
        counts = line.by_status or {}
        rows.append(
            {
                "sub_account_id": sub_account_id,
                "tier": tier.value,
                "hour_utc": hour,
                "agency_id": agency_id,
                "calls": line.calls,
                "seconds": line.seconds,
                "overage_seconds": line.overage_seconds,
                "spent_micros": to_micros(line.spent),
                "cost_micros": to_micros(line.cost),
                "inbound": line.inbound,
                "outbound": line.outbound,
                **{column: counts.get(status, 0) for status, column in STATUS_COLUMNS.items()},
            }
        )
    return rows


def _summed(batches: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Batches' hourly rows as one row per (sub-account, tier, hour), in that order."""
    if len(batches) == 1:
        return batches[0]
    return _sum_rows((row for batch in batches for row in batch), "hour_utc", lambda hour: hour)


def daily_rows(hourly: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same rows summed per UTC day: a day is exactly the sum of its (rounded) hours."""
    return _sum_rows(
        hourly,
        "day_utc",
        lambda hour: hour.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0),
    )


def _sum_rows(
    rows: Iterable[dict[str, Any]], period: str, period_of: Callable[[datetime], datetime]
) -> list[dict[str, Any]]:
    """Hourly rows added up per (sub-account, tier, `period_of` their hour), in that order; the
    period goes in column `period`."""
    sums: dict[tuple[uuid.UUID, str, datetime], dict[str, Any]] = {}
    for row in rows:
        moment = period_of(row["hour_utc"])
        key = (row["sub_account_id"], row["tier"], moment)
        into = sums.get(key)
        if into is None:
            sums[key] = {
                "sub_account_id": row["sub_account_id"],
                "tier": row["tier"],
                period: moment,
                "agency_id": row["agency_id"],
                **{c: row[c] for c in SUMMED_COLUMNS},
            }
        else:
            for c in SUMMED_COLUMNS:
                into[c] += row[c]
    return [sums[k] for k in sorted(sums)]


def _upsert_sql(table: Table, prefix: str) -> str:
    """Adds each row's sums to the row of its (sub-account, tier, hour or day)."""
    key = ", ".join(c.name for c in table.primary_key.columns)
    added = ", ".join(f"{c} = {table.name}.{c} + excluded.{c}" for c in SUMMED_COLUMNS)
    return insert_unnested_sql(
        table, list(table.columns), tail=f"ON CONFLICT ({key}) DO UPDATE SET {added}", prefix=prefix
    )


# Both rollups in one statement (one round trip); the day's parameters are named `day_…`.
_UPSERT_BOTH_PG = text(
    f"WITH hourly AS ({_upsert_sql(rollup_t, '')}) {_upsert_sql(daily_t, 'day_')}"
)


async def add_to_rollups(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    batches: Sequence[dict[tuple[uuid.UUID, Tier, datetime], RollupLine]],
) -> None:
    """One upsert per rollup table for the batches billed together: each row adds to what is
    there. Each batch's money is rounded on its own, as if it had been written alone."""
    hourly = _summed([hourly_rows(agency_id, lines) for lines in batches if lines])
    if not hourly:
        return
    daily = daily_rows(hourly)
    if conn.dialect.name == "postgresql":
        arrays = {c.name: [r[c.name] for r in hourly] for c in rollup_t.columns}
        arrays |= {f"day_{c.name}": [r[c.name] for r in daily] for c in daily_t.columns}
        await conn.execute(_UPSERT_BOTH_PG, arrays)
        return
    for table, rows in ((rollup_t, hourly), (daily_t, daily)):
        statement = _insert(conn, table).values(rows)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[c.name for c in table.primary_key.columns],
                set_={c: table.c[c] + statement.excluded[c] for c in SUMMED_COLUMNS},
            )
        )
