"""daily rollups: the hourly sums per UTC day, so long report ranges read few rows

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 21:02:18.172355
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0005"
down_revision: str | None = "0004"
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


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=False),
        sa.Column("day_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        *(sa.Column(c, sa.BigInteger(), server_default="0", nullable=False) for c in SUMMED),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_usage_daily_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_usage_daily_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("sub_account_id", "tier", "day_utc", name=op.f("pk_usage_daily")),
    )
    with op.batch_alter_table("usage_daily", schema=None) as batch_op:
        batch_op.create_index("ix_usage_daily_agency_day", ["agency_id", "day_utc"], unique=False)

    # Existing hourly rows, summed per UTC day.
    if op.get_bind().dialect.name == "postgresql":
        day = "date_trunc('day', hour_utc AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    else:  # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC
        day = "substr(hour_utc, 1, 10) || ' 00:00:00.000000'"
    columns = ", ".join(SUMMED)
    sums = ", ".join(f"sum({c})" for c in SUMMED)
    op.execute(
        f"INSERT INTO usage_daily (sub_account_id, tier, day_utc, agency_id, {columns}) "
        f"SELECT sub_account_id, tier, {day}, agency_id, {sums} FROM usage_hourly "
        f"GROUP BY sub_account_id, tier, {day}, agency_id"
    )


def downgrade() -> None:
    with op.batch_alter_table("usage_daily", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_daily_agency_day")

    op.drop_table("usage_daily")
