"""team: invitations, api keys, one owner

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 18:31:31.397933
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_api_key_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["app_user.id"],
            name=op.f("fk_api_key_created_by_app_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_api_key_secret_hash")),
    )
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_key_agency_id"), ["agency_id"], unique=False)

    op.create_table(
        "invitation",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("all_sub_accounts", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("invited_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_invitation_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["invited_by"],
            ["app_user.id"],
            name=op.f("fk_invitation_invited_by_app_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitation")),
    )
    with op.batch_alter_table("invitation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invitation_agency_id"), ["agency_id"], unique=False)
        batch_op.create_index("ix_invitation_email", ["email"], unique=False)

    op.create_table(
        "invitation_grant",
        sa.Column("invitation_id", sa.Uuid(), nullable=False),
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invitation_id"],
            ["invitation.id"],
            name=op.f("fk_invitation_grant_invitation_id_invitation"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_invitation_grant_sub_account_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint(
            "invitation_id", "sub_account_id", name=op.f("pk_invitation_grant")
        ),
    )
    op.create_table(
        "invitation_secret",
        sa.Column("secret_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("invitation_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["invitation_id"],
            ["invitation.id"],
            name=op.f("fk_invitation_secret_invitation_id_invitation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("secret_hash", name=op.f("pk_invitation_secret")),
    )
    with op.batch_alter_table("invitation_secret", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_invitation_secret_invitation_id"), ["invitation_id"], unique=False
        )

    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.create_index(
            "uq_app_user_one_owner",
            ["agency_id"],
            unique=True,
            postgresql_where=sa.text("role = 'AGENCY_OWNER'"),
            sqlite_where=sa.text("role = 'AGENCY_OWNER'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_app_user_one_owner",
            postgresql_where=sa.text("role = 'AGENCY_OWNER'"),
            sqlite_where=sa.text("role = 'AGENCY_OWNER'"),
        )

    with op.batch_alter_table("invitation_secret", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invitation_secret_invitation_id"))

    op.drop_table("invitation_secret")
    op.drop_table("invitation_grant")
    with op.batch_alter_table("invitation", schema=None) as batch_op:
        batch_op.drop_index("ix_invitation_email")
        batch_op.drop_index(batch_op.f("ix_invitation_agency_id"))

    op.drop_table("invitation")
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_key_agency_id"))

    op.drop_table("api_key")
