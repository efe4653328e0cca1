"""payouts of the agency's earnings, and the $100 default payout threshold

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 01:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payout",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("destination", sa.String(length=255), nullable=False),
        sa.Column("stripe_transfer_id", sa.String(length=255), nullable=True),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("requested_by", sa.String(length=254), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("paid_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["agency_id"], ["agency.id"], name=op.f("fk_payout_agency_id_agency")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout")),
    )
    with op.batch_alter_table("payout", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payout_agency_created", ["agency_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_payout_pending",
            ["created_at"],
            unique=False,
            postgresql_where=sa.text("status = 'PENDING'"),
            sqlite_where=sa.text("status = 'PENDING'"),
        )
    # Nobody could set a threshold before payouts existed: every agency gets the default.
    op.execute("UPDATE agency SET payout_threshold_micros = 100000000")


def downgrade() -> None:
    with op.batch_alter_table("payout", schema=None) as batch_op:
        batch_op.drop_index("ix_payout_pending")
        batch_op.drop_index("ix_payout_agency_created")
    op.drop_table("payout")
