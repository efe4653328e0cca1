"""live figures: use per billing period and per plan period, and a routing key on events

Events now carry the figures a live screen shows, written in the change's transaction; these
counters give "this period" without summing rollups. They are filled here for the current
periods from the hourly rollups (earlier periods are never shown live).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 14:40:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from domain.billing_cycle import period_start, period_started_at
from persistence.types import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key", sa.String(length=100), nullable=True))

    op.create_table(
        "usage_period",
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("seconds", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("spent_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_usage_period_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_usage_period_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("sub_account_id", "period_start", name=op.f("pk_usage_period")),
    )
    op.create_table(
        "agency_usage_period",
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("seconds", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_agency_usage_period_agency_id_agency")
        ),
        sa.PrimaryKeyConstraint(
            "agency_id", "period_start", name=op.f("pk_agency_usage_period")
        ),
    )
    _fill_current_periods(datetime.now(UTC))


def _fill_current_periods(now: datetime) -> None:
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
    hourly = sa.table(
        "usage_hourly",
        sa.column("sub_account_id", sa.Uuid()),
        sa.column("agency_id", sa.Uuid()),
        sa.column("hour_utc", UTCDateTime()),
        sa.column("seconds", sa.BigInteger()),
        sa.column("spent_micros", sa.BigInteger()),
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
    zones = {}
    for row in bind.execute(sa.select(agency.c.id, agency.c.plan_started_on, agency.c.time_zone)):
        zones[row.id] = row.time_zone
        local_today = now.astimezone(_zone(row.time_zone)).date()
        since = period_started_at(row.plan_started_on, now, row.time_zone)
        seconds = bind.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(hourly.c.seconds), 0)).where(
                hourly.c.agency_id == row.id, hourly.c.hour_utc >= since
            )
        )
        if seconds:
            bind.execute(
                agency_period.insert().values(
                    agency_id=row.id,
                    period_start=period_start(row.plan_started_on, local_today),
                    seconds=int(seconds),
                )
            )
    for row in bind.execute(
        sa.select(sub_account.c.id, sub_account.c.agency_id, sub_account.c.subscription_start_date)
    ):
        zone = zones[row.agency_id]
        since = period_started_at(row.subscription_start_date, now, zone)
        sums = bind.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(hourly.c.seconds), 0),
                sa.func.coalesce(sa.func.sum(hourly.c.spent_micros), 0),
            ).where(hourly.c.sub_account_id == row.id, hourly.c.hour_utc >= since)
        ).one()
        if sums[0] or sums[1]:
            local_today = now.astimezone(_zone(zone)).date()
            bind.execute(
                usage_period.insert().values(
                    sub_account_id=row.id,
                    period_start=period_start(row.subscription_start_date, local_today),
                    agency_id=row.agency_id,
                    seconds=int(sums[0]),
                    spent_micros=int(sums[1]),
                )
            )


def _zone(name: str):  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def downgrade() -> None:
    op.drop_table("agency_usage_period")
    op.drop_table("usage_period")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("key")
