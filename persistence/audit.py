"""The audit log's table: entries written by the unit of work, and pages of them, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.audit import Actor, AuditKind, AuditNote, AuditRecord, Subject
from domain.paging import Page
from persistence import prepared
from persistence.prepared import Prepared
from persistence.queries.paging import decode_id_cursor, encode_id_cursor
from persistence.tables import AuditLogRow

audit_t = AuditLogRow.__table__
_COLUMNS = (
    audit_t.c.id,
    audit_t.c.agency_id,
    audit_t.c.kind,
    audit_t.c.occurred_at,
    audit_t.c.email,
    audit_t.c.subject_type,
    audit_t.c.subject_id,
    audit_t.c.summary,
)


# Nearly every change writes one: built and compiled once (persistence/prepared.py).
_RECORD = Prepared(
    insert(audit_t)
    .values(
        {
            audit_t.c[name]: bindparam(name)
            for name in (
                "agency_id",
                "kind",
                "occurred_at",
                "email",
                "subject_type",
                "subject_id",
                "summary",
            )
        }
    )
    .returning(audit_t.c.id)
)


async def record(
    conn: AsyncConnection, notes: Sequence[tuple[Actor, AuditNote]], now: datetime
) -> list[AuditRecord]:
    """Stores the notes (in order) and returns them as records, with their ids."""
    records = []
    for actor, note in notes:  # a unit of work records one, at most a few
        subject = note.subject
        row = {
            "agency_id": actor.agency_id,
            "kind": note.kind.value,
            "occurred_at": now,
            "email": note.email if note.email is not None else actor.email,
            "subject_type": None if subject is None else subject.type_name,
            "subject_id": None if subject is None else subject.id,
            "summary": note.summary,
        }
        entry_id = await prepared.fetch_value(conn, _RECORD, row)
        assert entry_id is not None
        records.append(
            AuditRecord(
                id=int(entry_id),
                agency_id=actor.agency_id,
                kind=note.kind,
                occurred_at=now,
                email=row["email"],
                subject=subject,
                summary=note.summary,
            )
        )
    return records


def _record(row: Any) -> AuditRecord:
    return AuditRecord(
        id=int(row.id),
        agency_id=row.agency_id,
        kind=AuditKind(row.kind),
        occurred_at=row.occurred_at,
        email=row.email,
        subject=None if row.subject_type is None else Subject(row.subject_type, row.subject_id),
        summary=row.summary,
    )


async def audit_page(
    conn: AsyncConnection,
    agency_id: UUID,
    kinds: Sequence[AuditKind] | None,
    first: int,
    after: str | None,
) -> tuple[Page[AuditRecord], int]:
    """The agency's entries, newest first, optionally of some kinds; and how many there are."""
    where = [audit_t.c.agency_id == agency_id]
    if kinds:
        where.append(audit_t.c.kind.in_([k.value for k in kinds]))
    query = select(*_COLUMNS).where(*where)
    if after is not None:
        query = query.where(audit_t.c.id < decode_id_cursor("audit", after))
    rows = (await conn.execute(query.order_by(audit_t.c.id.desc()).limit(first + 1))).all()
    total = await conn.scalar(select(func.count()).select_from(audit_t).where(*where))
    records = [_record(r) for r in rows[:first]]
    page = Page(
        records, [encode_id_cursor("audit", r.id) for r in records], has_next_page=len(rows) > first
    )
    return page, int(total or 0)
