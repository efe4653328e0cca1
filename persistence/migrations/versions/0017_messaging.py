"""messaging: the messages the platform reports, the conversations they make, their quarter-hour
rollup, and each sub-account's monthly limit of outbound messages

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def _sub_account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["sub_account_id"], ["sub_account.id"], name=op.f(f"fk_{table}_sub_account_id_sub_account")
    )


def _agency_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["agency_id"], ["agency.id"], name=op.f(f"fk_{table}_agency_id_agency")
    )


def upgrade() -> None:
    op.create_table(
        "message",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sa.String(length=200), nullable=False),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("sent_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", UTCDateTime(timezone=True), nullable=False),
        _agency_fk("message"),
        _sub_account_fk("message"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message")),
        sa.UniqueConstraint("agency_id", "external_id", name=op.f("uq_message_agency_id")),
    )
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.create_index(
            "ix_message_sub_account_sent", ["sub_account_id", "sent_at"], unique=False
        )
    op.create_table(
        "conversation",
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("opened_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(length=200), nullable=False),
        sa.Column("opened_direction", sa.String(length=10), nullable=False),
        sa.Column("latest_inbound_at", UTCDateTime(timezone=True), nullable=True),
        _agency_fk("conversation"),
        _sub_account_fk("conversation"),
        sa.PrimaryKeyConstraint("sub_account_id", "external_id", name=op.f("pk_conversation")),
    )
    op.create_table(
        "messaging_quarter_hour",
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("quarter_utc", UTCDateTime(timezone=True), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        *(
            sa.Column(c, sa.BigInteger(), server_default="0", nullable=False)
            for c in ("sent", "received", "new_outbound", "new_inbound", "responded")
        ),
        _agency_fk("messaging_quarter_hour"),
        _sub_account_fk("messaging_quarter_hour"),
        sa.PrimaryKeyConstraint(
            "sub_account_id", "quarter_utc", name=op.f("pk_messaging_quarter_hour")
        ),
    )
    op.create_table(
        "messaging_limit",
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("monthly_limit", sa.Integer(), nullable=False),
        _sub_account_fk("messaging_limit"),
        sa.PrimaryKeyConstraint("sub_account_id", name=op.f("pk_messaging_limit")),
    )


def downgrade() -> None:
    op.drop_table("messaging_limit")
    op.drop_table("messaging_quarter_hour")
    op.drop_table("conversation")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_index("ix_message_sub_account_sent")
    op.drop_table("message")
