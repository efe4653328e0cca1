"""merge requests and merged accounts' history owners

`merge_request` holds each request (one PENDING per source: a partial unique index);
`merged_account` maps each merged sub-account to the account it merged into and to the live
account its history rolls up into (reports read "an account and what it owns").

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "merge_request",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column("source_id", sa.Uuid(), nullable=False),
        sa.Column("target_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("requested_by", sa.Uuid(), nullable=True),
        sa.Column("requested_by_email", sa.String(length=254), nullable=False),
        sa.Column("decided_by", sa.Uuid(), nullable=True),
        sa.Column("decided_by_email", sa.String(length=254), nullable=True),
        sa.Column("requested_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_merge_request_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sub_account.id"],
            name=op.f("fk_merge_request_source_id_sub_account"),
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["sub_account.id"],
            name=op.f("fk_merge_request_target_id_sub_account"),
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["app_user.id"],
            name=op.f("fk_merge_request_requested_by_app_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"],
            ["app_user.id"],
            name=op.f("fk_merge_request_decided_by_app_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merge_request")),
    )
    with op.batch_alter_table("merge_request", schema=None) as batch_op:
        batch_op.create_index(
            "ix_merge_request_agency", ["agency_id", "requested_at", "id"], unique=False
        )
        batch_op.create_index(
            "uq_merge_request_pending_source",
            ["source_id"],
            unique=True,
            postgresql_where=sa.text("status = 'PENDING'"),
            sqlite_where=sa.text("status = 'PENDING'"),
        )
    op.create_table(
        "merged_account",
        sa.Column("sub_account_id", sa.Uuid(), nullable=False),
        sa.Column("merged_into_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("merged_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["sub_account_id"],
            ["sub_account.id"],
            name=op.f("fk_merged_account_sub_account_id_sub_account"),
        ),
        sa.ForeignKeyConstraint(
            ["merged_into_id"],
            ["sub_account.id"],
            name=op.f("fk_merged_account_merged_into_id_sub_account"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["sub_account.id"],
            name=op.f("fk_merged_account_owner_id_sub_account"),
        ),
        sa.PrimaryKeyConstraint("sub_account_id", name=op.f("pk_merged_account")),
    )
    with op.batch_alter_table("merged_account", schema=None) as batch_op:
        batch_op.create_index("ix_merged_account_owner", ["owner_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("merged_account", schema=None) as batch_op:
        batch_op.drop_index("ix_merged_account_owner")
    op.drop_table("merged_account")
    with op.batch_alter_table("merge_request", schema=None) as batch_op:
        batch_op.drop_index("uq_merge_request_pending_source")
        batch_op.drop_index("ix_merge_request_agency")
    op.drop_table("merge_request")
