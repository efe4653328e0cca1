"""outbox notify: committing events wakes every server's relay at once (PostgreSQL)

A statement-level trigger NOTIFYs `agencyhub_outbox` when events are written. PostgreSQL
delivers a notification only when its transaction commits (and one per transaction, however
many rows), so relays in other processes publish a change within milliseconds instead of at
their next poll. SQLite has one process and needs none.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 21:45:00
"""

from collections.abc import Sequence

from alembic import op


revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify('agencyhub_outbox', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute("DROP FUNCTION outbox_notify()")
