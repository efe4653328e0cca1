"""quarter-hour rollup: reports exact in zones whose offset is not a whole hour

Every zone offset in use is a whole number of quarter hours, so local days and local hours
are made of whole UTC quarters. Existing usage is split into quarters here: counts, seconds,
directions and statuses from the calls themselves; each hour's overage goes to its
latest-starting calls (calls are billed in start order, so the balance ran out on the last
ones); its money to its quarters in proportion to their seconds (exact when the hour's calls
had one price). The quarters of an hour add up to the hourly row exactly, so nothing already
reported by whole hours or days changes. Then the current periods' live counters are summed
again, by quarter, in each agency's zone.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 10:00:00
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from alembic import op

from domain.billing_cycle import period_start, period_started_at
from persistence.types import UTCDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

SUMMED = (
    "calls",
    "seconds",
    "overage_seconds",
    "spent_micros",
    "cost_micros",
    "inbound",
    "outbound",
    "completed",
    "failed",
    "no_answer",
    "busy",
    "voicemail",
)
STATUS_COLUMNS = {
    "COMPLETED": "completed",
    "FAILED": "failed",
    "NO_ANSWER": "no_answer",
    "BUSY": "busy",
    "VOICEMAIL": "voicemail",
}
CHUNK = 5_000


def upgrade() -> None:
    op.create_table(
        "usage_quarter_hour",
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=False),
        sa.Column("quarter_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        *(sa.Column(c, sa.BigInteger(), server_default="0", nullable=False) for c in SUMMED),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_usage_quarter_hour_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_usage_quarter_hour_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint(
            "sub_account_id", "tier", "quarter_utc", name=op.f("pk_usage_quarter_hour")
        ),
    )
    with op.batch_alter_table("usage_quarter_hour", schema=None) as batch_op:
        batch_op.create_index(
            "ix_usage_quarter_hour_agency_quarter", ["agency_id", "quarter_utc"], unique=False
        )
    _split_hours_into_quarters()
    _sum_current_periods_again(datetime.now(UTC))


def downgrade() -> None:
    with op.batch_alter_table("usage_quarter_hour", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_quarter_hour_agency_quarter")
    op.drop_table("usage_quarter_hour")


_call = sa.table(
    "call",
    sa.column("sub_account_id", sa.Uuid()),
    sa.column("external_id", sa.String()),
    sa.column("tier", sa.String()),
    sa.column("direction", sa.String()),
    sa.column("status", sa.String()),
    sa.column("started_at", UTCDateTime()),
    sa.column("duration_seconds", sa.Integer()),
)
_hourly = sa.table(
    "usage_hourly",
    sa.column("sub_account_id", sa.Uuid()),
    sa.column("tier", sa.String()),
    sa.column("hour_utc", UTCDateTime()),
    sa.column("agency_id", sa.Uuid()),
    *(sa.column(c, sa.BigInteger()) for c in SUMMED),
)
_quarter = sa.table(
    "usage_quarter_hour",
    sa.column("sub_account_id", sa.Uuid()),
    sa.column("tier", sa.String()),
    sa.column("quarter_utc", UTCDateTime()),
    sa.column("agency_id", sa.Uuid()),
    *(sa.column(c, sa.BigInteger()) for c in SUMMED),
)


def _split_hours_into_quarters() -> None:
    """One sub-account at a time: its hourly rows and its calls (by the call table's index on
    sub-account and start), split per quarter."""
    bind = op.get_bind()
    accounts = bind.execute(sa.select(_hourly.c.sub_account_id).distinct()).scalars().all()
    pending: list[dict[str, Any]] = []
    for account in accounts:
        calls: dict[tuple[str, datetime], list[Any]] = defaultdict(list)
        for c in bind.execute(
            sa.select(_call)
            .where(_call.c.sub_account_id == account)
            .order_by(_call.c.started_at, _call.c.external_id)
        ):
            calls[c.tier, c.started_at.replace(minute=0, second=0, microsecond=0)].append(c)
        for hour in bind.execute(sa.select(_hourly).where(_hourly.c.sub_account_id == account)):
            pending.extend(quarters_of(hour._mapping, calls.get((hour.tier, hour.hour_utc), [])))
            if len(pending) >= CHUNK:
                bind.execute(_quarter.insert(), pending)
                pending = []
    if pending:
        bind.execute(_quarter.insert(), pending)


def quarters_of(hour: Any, calls: list[Any]) -> list[dict[str, Any]]:
    """An hourly row as quarter rows that add up to it exactly; `calls` are its calls in
    billing order (start, external id)."""
    key = {k: hour[k] for k in ("sub_account_id", "tier", "agency_id")}
    if len(calls) != hour["calls"] or sum(c.duration_seconds for c in calls) != hour["seconds"]:
        # Not the calls this row counted (rows written by hand): the row stays whole.
        return [{**key, "quarter_utc": hour["hour_utc"], **{c: hour[c] for c in SUMMED}}]
    sums: dict[datetime, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SUMMED, 0))
    overage = hour["overage_seconds"]
    for call in reversed(calls):  # overage falls on the last calls billed
        at = call.started_at
        row = sums[at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)]
        row["calls"] += 1
        row["seconds"] += call.duration_seconds
        row["inbound" if call.direction == "INBOUND" else "outbound"] += 1
        row[STATUS_COLUMNS[call.status]] += 1
        short = min(overage, call.duration_seconds)
        row["overage_seconds"] += short
        overage -= short
    quarters = sorted(sums)
    weights = [sums[q]["seconds"] for q in quarters]
    for column in ("spent_micros", "cost_micros"):
        for q, share in zip(quarters, shares(hour[column], weights), strict=True):
            sums[q][column] = share
    return [{**key, "quarter_utc": q, **sums[q]} for q in quarters]


def shares(total: int, weights: list[int]) -> Iterable[int]:
    """`total` split in proportion to `weights`, whole numbers that add up to it (largest
    remainders first); all of it to the first when the weights are all zero."""
    whole = sum(weights)
    if whole == 0:
        return [total, *([0] * (len(weights) - 1))]
    floors = [total * w // whole for w in weights]
    order = sorted(range(len(weights)), key=lambda i: -(total * weights[i] % whole))
    for i in order[: total - sum(floors)]:
        floors[i] += 1
    return floors


def _sum_current_periods_again(now: datetime) -> None:
    """The live counters of the periods under way, as ingestion keeps them from now on: by
    quarter, so a period starting at half past a UTC hour counts from there."""
    bind = op.get_bind()
    agency = sa.table(
        "agency",
        sa.column("id", sa.Uuid()),
        sa.column("plan_started_on", sa.Date()),
        sa.column("time_zone", sa.String()),
    )
    sub_account = sa.table(
        "sub_account",
        sa.column("id", sa.Uuid()),
        sa.column("agency_id", sa.Uuid()),
        sa.column("subscription_start_date", sa.Date()),
    )
    usage_period = sa.table(
        "usage_period",
        sa.column("sub_account_id", sa.Uuid()),
        sa.column("period_start", sa.Date()),
        sa.column("agency_id", sa.Uuid()),
        sa.column("seconds", sa.BigInteger()),
        sa.column("spent_micros", sa.BigInteger()),
    )
    agency_period = sa.table(
        "agency_usage_period",
        sa.column("agency_id", sa.Uuid()),
        sa.column("period_start", sa.Date()),
        sa.column("seconds", sa.BigInteger()),
    )
    zones: dict[UUID, str] = {}
    for row in bind.execute(sa.select(agency.c.id, agency.c.plan_started_on, agency.c.time_zone)):
        zones[row.id] = row.time_zone
        first_day = period_start(row.plan_started_on, _local_today(now, row.time_zone))
        since = period_started_at(row.plan_started_on, now, row.time_zone)
        seconds = bind.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(_quarter.c.seconds), 0)).where(
                _quarter.c.agency_id == row.id, _quarter.c.quarter_utc >= since
            )
        )
        bind.execute(
            agency_period.delete().where(
                agency_period.c.agency_id == row.id, agency_period.c.period_start == first_day
            )
        )
        if seconds:
            bind.execute(
                agency_period.insert().values(
                    agency_id=row.id, period_start=first_day, seconds=int(seconds)
                )
            )
    for row in bind.execute(
        sa.select(sub_account.c.id, sub_account.c.agency_id, sub_account.c.subscription_start_date)
    ):
        zone = zones[row.agency_id]
        first_day = period_start(row.subscription_start_date, _local_today(now, zone))
        since = period_started_at(row.subscription_start_date, now, zone)
        seconds, spent = bind.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(_quarter.c.seconds), 0),
                sa.func.coalesce(sa.func.sum(_quarter.c.spent_micros), 0),
            ).where(_quarter.c.sub_account_id == row.id, _quarter.c.quarter_utc >= since)
        ).one()
        bind.execute(
            usage_period.delete().where(
                usage_period.c.sub_account_id == row.id,
                usage_period.c.period_start == first_day,
            )
        )
        if seconds or spent:
            bind.execute(
                usage_period.insert().values(
                    sub_account_id=row.id,
                    period_start=first_day,
                    agency_id=row.agency_id,
                    seconds=int(seconds),
                    spent_micros=int(spent),
                )
            )


def _local_today(now: datetime, zone: str) -> Any:
    from zoneinfo import ZoneInfo

    return now.astimezone(ZoneInfo(zone)).date()
