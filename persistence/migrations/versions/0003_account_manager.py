"""account manager

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 19:15:18.929309
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_key",
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_key")),
    )
    op.create_table(
        "plan_grant",
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_plan_grant_agency_id_agency")
        ),
        sa.PrimaryKeyConstraint("agency_id", "period_start", name=op.f("pk_plan_grant")),
    )
    op.create_table(
        "activity",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("paused_by_suspension", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_activity_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_activity_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity")),
    )
    with op.batch_alter_table("activity", schema=None) as batch_op:
        batch_op.create_index(
            "ix_activity_sub_account_kind", ["sub_account_id", "kind", "created_at"], unique=False
        )

    op.create_table(
        "auto_allocation",
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("basic_minutes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("premium_minutes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_auto_allocation_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("sub_account_id", name=op.f("pk_auto_allocation")),
    )
    op.create_table(
        "minute_transfer",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("from_sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("to_sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=False),
        sa.Column("sent_seconds", sa.BigInteger(), nullable=False),
        sa.Column("received_seconds", sa.BigInteger(), nullable=False),
        sa.Column("base_micros_per_minute", sa.BigInteger(), nullable=False),
        sa.Column("from_markup_bp", sa.Integer(), nullable=False),
        sa.Column("to_markup_bp", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_minute_transfer_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["from_sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_minute_transfer_from_sub_account_id_sub_account"),
        ),
        sa.ForeignKeyConstraint(
            ["to_sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_minute_transfer_to_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_minute_transfer")),
    )
    with op.batch_alter_table("minute_transfer", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_minute_transfer_agency_id"), ["agency_id"], unique=False
        )

    with op.batch_alter_table("sub_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("suspension_note", sa.String(length=150), nullable=True))
        batch_op.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sub_account", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
        batch_op.drop_column("removed_at")
        batch_op.drop_column("suspension_note")
        batch_op.drop_column("suspended_at")

    with op.batch_alter_table("minute_transfer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_minute_transfer_agency_id"))

    op.drop_table("minute_transfer")
    op.drop_table("auto_allocation")
    with op.batch_alter_table("activity", schema=None) as batch_op:
        batch_op.drop_index("ix_activity_sub_account_kind")

    op.drop_table("activity")
    op.drop_table("plan_grant")
    op.drop_table("idempotency_key")
