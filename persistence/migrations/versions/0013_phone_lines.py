"""phone lines and the Available pool: the lines, and who held each over which days

`phone_line` holds each line's current holder (NULL: the pool); a number is unique among an
agency's unreleased lines (a partial unique index), so a released number can come back.
`line_holding` keeps one row per holding in agency-local days, half-open [from_date,
to_date), at most one open per line: what billing prorates from.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "phone_line",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("sub_account_id", sa.Uuid(), nullable=True),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("monthly_price_micros", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("released_at", UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "monthly_price_micros >= 0", name=op.f("ck_phone_line_price_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_phone_line_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_phone_line_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phone_line")),
    )
    with op.batch_alter_table("phone_line", schema=None) as batch_op:
        batch_op.create_index(
            "ix_phone_line_holder",
            ["agency_id", "sub_account_id", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "uq_phone_line_live_number",
            ["agency_id", "number"],
            unique=True,
            postgresql_where=sa.text("released_at IS NULL"),
            sqlite_where=sa.text("released_at IS NULL"),
        )
    op.create_table(
        "line_holding",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("line_id", sa.Uuid(), nullable=False),
        sa.Column("sub_account_id", sa.Uuid(), nullable=True),
        sa.Column("from_date", sa.Date(), nullable=False),
        sa.Column("to_date", sa.Date(), nullable=True),
        sa.CheckConstraint(
            "to_date IS NULL OR to_date >= from_date",
            name=op.f("ck_line_holding_ends_after_start"),
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_line_holding_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["line_id"], ["phone_line.id"], name=op.f("fk_line_holding_line_id_phone_line")
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_line_holding_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_line_holding")),
    )
    with op.batch_alter_table("line_holding", schema=None) as batch_op:
        batch_op.create_index(
            "ix_line_holding_agency_dates", ["agency_id", "from_date"], unique=False
        )
        batch_op.create_index("ix_line_holding_line", ["line_id", "from_date"], unique=False)
        batch_op.create_index(
            "uq_line_holding_open",
            ["line_id"],
            unique=True,
            postgresql_where=sa.text("to_date IS NULL"),
            sqlite_where=sa.text("to_date IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("line_holding", schema=None) as batch_op:
        batch_op.drop_index("uq_line_holding_open")
        batch_op.drop_index("ix_line_holding_line")
        batch_op.drop_index("ix_line_holding_agency_dates")
    op.drop_table("line_holding")
    with op.batch_alter_table("phone_line", schema=None) as batch_op:
        batch_op.drop_index("uq_phone_line_live_number")
        batch_op.drop_index("ix_phone_line_holder")
    op.drop_table("phone_line")
