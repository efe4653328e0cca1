"""Usage storage: calls (unique per agency on external id) and the hourly and daily rollups."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.money import Tier
from domain.pricing import to_micros
from domain.usage import CallStatus, ReportedCall, RollupLine
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


def _insert(conn: AsyncConnection, table: object) -> postgresql.Insert | sqlite.Insert:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)  # type: ignore[arg-type]


# On PostgreSQL a batch travels as one array per column through unnest(): one short statement
# whatever the batch size, prepared once, instead of a VALUES list of ~10,000 parameters that
# SQLAlchemy compiles afresh for every batch (it was half of ingestion's CPU time).
_CALL_ARRAYS = (
    ("external_id", "varchar"),
    ("sub_account_id", "uuid"),
    ("direction", "varchar"),
    ("channel", "varchar"),
    ("status", "varchar"),
    ("tier", "varchar"),
    ("started_at", "timestamptz"),
    ("duration_seconds", "int"),
)
_INSERT_CALLS_PG = text(
    f"INSERT INTO call (agency_id, {', '.join(c for c, _ in _CALL_ARRAYS)}, recorded_at) "
    f"SELECT :agency_id, {', '.join(f'c.{c}' for c, _ in _CALL_ARRAYS)}, :now "
    f"FROM unnest({', '.join(f'CAST(:{c} AS {t}[])' for c, t in _CALL_ARRAYS)}) "
    f"AS c({', '.join(c for c, _ in _CALL_ARRAYS)}) "
    "ON CONFLICT (agency_id, external_id) DO NOTHING RETURNING external_id"
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
        arrays = {
            "external_id": [c.external_id for c in calls],
            "sub_account_id": [c.sub_account_id for c in calls],
            "direction": [c.direction.value for c in calls],
            "channel": [c.channel.value for c in calls],
            "status": [c.status.value for c in calls],
            "tier": [c.tier.value for c in calls],
            "started_at": [c.started_at for c in calls],
            "duration_seconds": [c.duration_seconds for c in calls],
        }
        params = {"agency_id": agency_id, "now": now, **arrays}
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


SUMMED_COLUMNS = (
    "calls",
    "seconds",
    "overage_seconds",
    "spent_micros",
    "cost_micros",
    "inbound",
    "outbound",
    *STATUS_COLUMNS.values(),
)


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


def daily_rows(hourly: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same rows summed per UTC day: a day is exactly the sum of its (rounded) hours."""
    days: dict[tuple[uuid.UUID, str, datetime], dict[str, Any]] = {}
    for row in hourly:
        day = row["hour_utc"].astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        key = (row["sub_account_id"], row["tier"], day)
        into = days.get(key)
        if into is None:
            days[key] = {
                "sub_account_id": row["sub_account_id"],
                "tier": row["tier"],
                "day_utc": day,
                "agency_id": row["agency_id"],
                **{c: row[c] for c in SUMMED_COLUMNS},
            }
        else:
            for c in SUMMED_COLUMNS:
                into[c] += row[c]
    return [days[k] for k in sorted(days, key=lambda k: (k[0], k[1], k[2]))]


def _upsert_pg(table: str, key: str) -> tuple[tuple[tuple[str, str], ...], TextClause]:
    columns = (
        ("sub_account_id", "uuid"),
        ("tier", "varchar"),
        (key, "timestamptz"),
        ("agency_id", "uuid"),
        *((c, "bigint") for c in SUMMED_COLUMNS),
    )
    names = ", ".join(c for c, _ in columns)
    return columns, text(
        f"INSERT INTO {table} ({names}) "
        f"SELECT * FROM unnest({', '.join(f'CAST(:{c} AS {t}[])' for c, t in columns)}) "
        f"ON CONFLICT (sub_account_id, tier, {key}) DO UPDATE SET "
        + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in SUMMED_COLUMNS)
    )


_UPSERT_PG = {
    key: _upsert_pg(table, key)
    for table, key in (("usage_hourly", "hour_utc"), ("usage_daily", "day_utc"))
}


async def add_to_rollups(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    lines: dict[tuple[uuid.UUID, Tier, datetime], RollupLine],
) -> None:
    """One upsert per rollup table for the whole batch: each row adds to what is there."""
    if not lines:
        return
    hourly = hourly_rows(agency_id, lines)
    for table, rows, key in (
        (rollup_t, hourly, "hour_utc"),
        (daily_t, daily_rows(hourly), "day_utc"),
    ):
        if conn.dialect.name == "postgresql":
            columns, upsert = _UPSERT_PG[key]
            await conn.execute(upsert, {column: [r[column] for r in rows] for column, _ in columns})
            continue
        statement = _insert(conn, table).values(rows)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["sub_account_id", "tier", key],
                set_={c: table.c[c] + statement.excluded[c] for c in SUMMED_COLUMNS},
            )
        )
