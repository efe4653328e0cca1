"""payment cards: each payer's Stripe Customer (on its sub-account) and its saved cards

The agency's Customer is its primary's; the agency columns for a customer and a saved payment
method (never written) go: cards live in their own table, one default per payer.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 00:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_card",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("payer_id", sa.Uuid(), nullable=False),
        sa.Column("stripe_payment_method_id", sa.String(length=255), nullable=False),
        sa.Column("brand", sa.String(length=30), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("exp_month", sa.Integer(), nullable=False),
        sa.Column("exp_year", sa.Integer(), nullable=False),
        sa.Column("is_default", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_payment_card_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["payer_id"], ["sub_account.id"], name=op.f("fk_payment_card_payer_id_sub_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_card")),
        sa.UniqueConstraint(
            "stripe_payment_method_id", name=op.f("uq_payment_card_stripe_payment_method_id")
        ),
    )
    with op.batch_alter_table("payment_card", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payment_card_payer_created", ["payer_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "uq_payment_card_one_default",
            ["payer_id"],
            unique=True,
            postgresql_where=sa.text("is_default"),
            sqlite_where=sa.text("is_default"),
        )
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): batch mode would copy the agency table,
    # which every other table references.
    op.drop_column("agency", "stripe_customer_id")
    op.drop_column("agency", "stripe_payment_method_id")
    with op.batch_alter_table("sub_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stripe_customer_id", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sub_account", schema=None) as batch_op:
        batch_op.drop_column("stripe_customer_id")
    op.add_column("agency", sa.Column("stripe_payment_method_id", sa.String(255), nullable=True))
    op.add_column("agency", sa.Column("stripe_customer_id", sa.String(255), nullable=True))
    with op.batch_alter_table("payment_card", schema=None) as batch_op:
        batch_op.drop_index("uq_payment_card_one_default")
        batch_op.drop_index("ix_payment_card_payer_created")
    op.drop_table("payment_card")
