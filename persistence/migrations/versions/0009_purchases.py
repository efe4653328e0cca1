"""purchases of minutes and the Stripe webhook events applied

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 00:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "purchase",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("payer_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=False),
        sa.Column("seconds", sa.BigInteger(), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("profit_micros", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_payment_method_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=254), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_purchase_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["payer_id"], ["sub_account.id"], name=op.f("fk_purchase_payer_id_sub_account")
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_purchase_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase")),
        sa.UniqueConstraint(
            "sub_account_id", "period_start", "tier", name=op.f("uq_purchase_sub_account_id")
        ),
    )
    with op.batch_alter_table("purchase", schema=None) as batch_op:
        batch_op.create_index(
            "ix_purchase_agency_completed", ["agency_id", "completed_at"], unique=False
        )
        batch_op.create_index("ix_purchase_intent", ["stripe_payment_intent_id"], unique=False)
        batch_op.create_index(
            "ix_purchase_pending",
            ["created_at"],
            unique=False,
            postgresql_where=sa.text("status = 'PENDING'"),
            sqlite_where=sa.text("status = 'PENDING'"),
        )
        batch_op.create_index(
            "ix_purchase_sub_account_created",
            ["sub_account_id", "created_at", "id"],
            unique=False,
        )
    op.create_table(
        "stripe_event",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("received_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_event")),
    )


def downgrade() -> None:
    op.drop_table("stripe_event")
    with op.batch_alter_table("purchase", schema=None) as batch_op:
        batch_op.drop_index("ix_purchase_sub_account_created")
        batch_op.drop_index("ix_purchase_pending")
        batch_op.drop_index("ix_purchase_intent")
        batch_op.drop_index("ix_purchase_agency_completed")
    op.drop_table("purchase")
