"""billing adjustments: the discounts and credits of the billing summary

One row per discount or credit an owner or agency admin gave a sub-account, dated in agency-local
days; the summary of a range counts the rows dated in it. Amounts are integer micro-dollars,
more than zero (the kind says which way they count).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "billing_adjustment",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("dated_on", sa.Date(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "amount_micros > 0", name=op.f("ck_billing_adjustment_amount_positive")
        ),
        sa.CheckConstraint(
            "kind IN ('DISCOUNT', 'CREDIT')", name=op.f("ck_billing_adjustment_kind_known")
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_billing_adjustment_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_billing_adjustment_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_adjustment")),
    )
    with op.batch_alter_table("billing_adjustment", schema=None) as batch_op:
        batch_op.create_index(
            "ix_billing_adjustment_agency_dated_on", ["agency_id", "dated_on"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("billing_adjustment", schema=None) as batch_op:
        batch_op.drop_index("ix_billing_adjustment_agency_dated_on")
    op.drop_table("billing_adjustment")
