"""wallet automation: threshold auto-recharge (settings and durable requests), spending caps
(settings, the activities and sub-accounts they pause, the checks ingestion asks for), and
alert mails (one row per sub-account, kind and day)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_alert_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"], ["sub_account.id"], name=op.f("fk_alert_sub_account_id_sub_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
        sa.UniqueConstraint("sub_account_id", "kind", "day", name=op.f("uq_alert_sub_account_id")),
    )
    op.create_index(
        "ix_alert_unsent",
        "alert",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("sent_at IS NULL"),
        sqlite_where=sa.text("sent_at IS NULL"),
    )
    op.create_table(
        "cap_check",
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("requested_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_cap_check_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_cap_check_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("sub_account_id", name=op.f("pk_cap_check")),
    )
    op.create_table(
        "spending_cap",
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_spending_cap_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_spending_cap_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("sub_account_id", name=op.f("pk_spending_cap")),
    )
    op.create_table(
        "auto_recharge",
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=False),
        sa.Column("threshold_minutes", sa.Integer(), nullable=False),
        sa.Column("top_up_minutes", sa.Integer(), nullable=False),
        sa.Column("last_purchase_id", sa.Uuid(), nullable=True),
        sa.Column("failed_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("blocked_until", UTCDateTime(timezone=True), nullable=True),
        sa.Column("blocked_card", sa.String(length=255), nullable=True),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_auto_recharge_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["last_purchase_id"],
            ["purchase.id"],
            name=op.f("fk_auto_recharge_last_purchase_id_purchase"),
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_auto_recharge_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("sub_account_id", name=op.f("pk_auto_recharge")),
    )
    op.create_table(
        "auto_recharge_request",
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("requested_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("purchase_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_auto_recharge_request_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["purchase_id"],
            ["purchase.id"],
            name=op.f("fk_auto_recharge_request_purchase_id_purchase"),
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_auto_recharge_request_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("sub_account_id", "tier", name=op.f("pk_auto_recharge_request")),
    )
    op.add_column(
        "activity",
        sa.Column("paused_by_cap", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_index(
        "uq_purchase_recharge_in_flight",
        "purchase",
        ["sub_account_id", "tier"],
        unique=True,
        postgresql_where=sa.text("kind = 'AUTO_RECHARGE' AND status = 'PENDING'"),
        sqlite_where=sa.text("kind = 'AUTO_RECHARGE' AND status = 'PENDING'"),
    )
    op.add_column("sub_account", sa.Column("capped_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("sub_account", "capped_at")
    op.drop_index(
        "uq_purchase_recharge_in_flight",
        table_name="purchase",
        postgresql_where=sa.text("kind = 'AUTO_RECHARGE' AND status = 'PENDING'"),
        sqlite_where=sa.text("kind = 'AUTO_RECHARGE' AND status = 'PENDING'"),
    )
    op.drop_column("activity", "paused_by_cap")
    op.drop_table("auto_recharge_request")
    op.drop_table("auto_recharge")
    op.drop_table("spending_cap")
    op.drop_table("cap_check")
    op.drop_index(
        "ix_alert_unsent",
        table_name="alert",
        postgresql_where=sa.text("sent_at IS NULL"),
        sqlite_where=sa.text("sent_at IS NULL"),
    )
    op.drop_table("alert")
