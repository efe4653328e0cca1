"""monthly auto allocation charges and reconciliation: the day each auto allocation was
turned on, the failed charges waiting for their next attempt, purchases' ledger credits by
reference

A period is charged when its first day is on or after the day its auto allocation was turned
on (SPEC), so the table keeps that day. Auto allocations already on count from the day they
were last changed (the best the table knew).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("auto_allocation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("enabled_on", sa.Date(), nullable=True))
    auto_allocation = sa.table(
        "auto_allocation",
        sa.column("sub_account_id", sa.Uuid()),
        sa.column("enabled", sa.Boolean()),
        sa.column("updated_at", UTCDateTime(timezone=True)),
        sa.column("enabled_on", sa.Date()),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(auto_allocation.c.sub_account_id, auto_allocation.c.updated_at).where(
            auto_allocation.c.enabled.is_(True)
        )
    ).all()
    for sub_account_id, updated_at in rows:
        conn.execute(
            sa.update(auto_allocation)
            .where(auto_allocation.c.sub_account_id == sub_account_id)
            .values(enabled_on=updated_at.date())
        )
    with op.batch_alter_table("purchase", schema=None) as batch_op:
        batch_op.create_index(
            "ix_purchase_retry",
            ["next_attempt_at"],
            unique=False,
            postgresql_where=sa.text("next_attempt_at IS NOT NULL"),
            sqlite_where=sa.text("next_attempt_at IS NOT NULL"),
        )


    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_entry_purchase",
            ["reference"],
            unique=False,
            postgresql_where=sa.text("kind IN ('PURCHASE', 'AUTO_ALLOCATION')"),
            sqlite_where=sa.text("kind IN ('PURCHASE', 'AUTO_ALLOCATION')"),
        )


def downgrade() -> None:
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entry_purchase")
    with op.batch_alter_table("purchase", schema=None) as batch_op:
        batch_op.drop_index("ix_purchase_retry")
    with op.batch_alter_table("auto_allocation", schema=None) as batch_op:
        batch_op.drop_column("enabled_on")
