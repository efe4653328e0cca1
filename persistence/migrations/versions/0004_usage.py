"""usage

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 19:35:59.944493
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=12), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_call_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"], ["sub_account.id"], name=op.f("fk_call_sub_account_id_sub_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call")),
        sa.UniqueConstraint("agency_id", "external_id", name=op.f("uq_call_agency_id")),
    )
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.create_index(
            "ix_call_sub_account_started", ["sub_account_id", "started_at"], unique=False
        )

    op.create_table(
        "usage_hourly",
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=False),
        sa.Column("hour_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("calls", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("seconds", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("overage_seconds", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("spent_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("inbound", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("outbound", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("completed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("failed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("no_answer", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("busy", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("voicemail", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_usage_hourly_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_usage_hourly_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("sub_account_id", "tier", "hour_utc", name=op.f("pk_usage_hourly")),
    )
    with op.batch_alter_table("usage_hourly", schema=None) as batch_op:
        batch_op.create_index(
            "ix_usage_hourly_agency_hour", ["agency_id", "hour_utc"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_hourly", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_hourly_agency_hour")

    op.drop_table("usage_hourly")
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.drop_index("ix_call_sub_account_started")

    op.drop_table("call")
