"""initial tables

Revision ID: 0001
Revises:
Create Date: 2026-11-23 18:19:24.914653
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agency",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("plan_name", sa.String(length=60), nullable=False),
        sa.Column("billing_model", sa.String(length=20), nullable=False),
        sa.Column("sub_account_cap", sa.Integer(), nullable=True),
        sa.Column("included_monthly_minutes", sa.Integer(), nullable=False),
        sa.Column("included_tier", sa.String(length=10), nullable=False),
        sa.Column("plan_started_on", sa.Date(), nullable=False),
        sa.Column("time_zone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("payout_threshold_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_payment_method_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_connect_account_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agency")),
    )
    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("topic", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("sequence", name=op.f("uq_outbox_sequence")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_topic_sequence", ["topic", "sequence"], unique=False)
        batch_op.create_index(
            "ix_outbox_unpublished",
            ["sequence"],
            unique=False,
            postgresql_where=sa.text("sequence IS NOT NULL AND published_at IS NULL"),
            sqlite_where=sa.text("sequence IS NOT NULL AND published_at IS NULL"),
        )
        batch_op.create_index(
            "ix_outbox_unsequenced",
            ["id"],
            unique=False,
            postgresql_where=sa.text("sequence IS NULL"),
            sqlite_where=sa.text("sequence IS NULL"),
        )

    op.create_table(
        "app_user",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("all_sub_accounts", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_app_user_agency_id_agency")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("email", name=op.f("uq_app_user_email")),
    )
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_app_user_agency_id"), ["agency_id"], unique=False)

    op.create_table(
        "sub_account",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("login_email", sa.String(length=254), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="ACTIVE", nullable=False),
        sa.Column("subscription_start_date", sa.Date(), nullable=False),
        sa.Column(
            "balance_source", sa.String(length=10), server_default="CUSTOMER", nullable=False
        ),
        sa.Column("markup_basic_bp", sa.Integer(), server_default="0", nullable=False),
        sa.Column("markup_premium_bp", sa.Integer(), server_default="0", nullable=False),
        sa.Column("knowledge_pack_credits", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "knowledge_pack_credits >= 0", name=op.f("ck_sub_account_kp_credits_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_sub_account_agency_id_agency")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sub_account")),
        sa.UniqueConstraint("login_email", name=op.f("uq_sub_account_login_email")),
    )
    with op.batch_alter_table("sub_account", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sub_account_agency_id"), ["agency_id"], unique=False)
        batch_op.create_index(
            "uq_sub_account_one_primary",
            ["agency_id"],
            unique=True,
            postgresql_where=sa.text("kind = 'PRIMARY'"),
            sqlite_where=sa.text("kind = 'PRIMARY'"),
        )

    op.create_table(
        "auth_session",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app_user.id"],
            name=op.f("fk_auth_session_user_id_app_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_session")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_auth_session_token_hash")),
    )
    with op.batch_alter_table("auth_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_session_user_id"), ["user_id"], unique=False)

    op.create_table(
        "balance",
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=False),
        sa.Column("seconds", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint("seconds >= 0", name=op.f("ck_balance_seconds_not_negative")),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_balance_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("sub_account_id", "tier", name=op.f("pk_balance")),
    )
    op.create_table(
        "ledger_entry",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.String(length=10), nullable=False),
        sa.Column("delta_seconds", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_ledger_entry_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_ledger_entry_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entry")),
    )
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_entry_account_tier", ["sub_account_id", "tier"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_ledger_entry_agency_id"), ["agency_id"], unique=False)

    op.create_table(
        "user_grant",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_user_grant_sub_account_id_sub_account"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app_user.id"],
            name=op.f("fk_user_grant_user_id_app_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "sub_account_id", name=op.f("pk_user_grant")),
    )


def downgrade() -> None:
    op.drop_table("user_grant")
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_entry_agency_id"))
        batch_op.drop_index("ix_ledger_entry_account_tier")

    op.drop_table("ledger_entry")
    op.drop_table("balance")
    with op.batch_alter_table("auth_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_session_user_id"))

    op.drop_table("auth_session")
    with op.batch_alter_table("sub_account", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_sub_account_one_primary",
            postgresql_where=sa.text("kind = 'PRIMARY'"),
            sqlite_where=sa.text("kind = 'PRIMARY'"),
        )
        batch_op.drop_index(batch_op.f("ix_sub_account_agency_id"))

    op.drop_table("sub_account")
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app_user_agency_id"))

    op.drop_table("app_user")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_outbox_unsequenced",
            postgresql_where=sa.text("sequence IS NULL"),
            sqlite_where=sa.text("sequence IS NULL"),
        )
        batch_op.drop_index(
            "ix_outbox_unpublished",
            postgresql_where=sa.text("sequence IS NOT NULL AND published_at IS NULL"),
            sqlite_where=sa.text("sequence IS NOT NULL AND published_at IS NULL"),
        )
        batch_op.drop_index("ix_outbox_topic_sequence")

    op.drop_table("outbox")
    op.drop_table("agency")
