"""The audit log's table: entries written by the unit of work, and pages of them, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.audit import Actor, AuditKind, AuditNote, AuditRecord, Subject
from domain.events import Event, audit_recorded, encode
from domain.paging import Page
from persistence import prepared
from persistence.arrays import unnested
from persistence.outbox import EVENT_COLUMNS, event_arrays, outbox, write_events
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


_NO_ID = -1  # an entry's id before the insert gives it


def _entry(actor: Actor, note: AuditNote, now: datetime) -> AuditRecord:
    """The note as an entry, its id still to come (`_NO_ID`)."""
    return AuditRecord(
        id=_NO_ID,
        agency_id=actor.agency_id,
        kind=note.kind,
        occurred_at=now,
        email=note.email if note.email is not None else actor.email,
        subject=note.subject,
        summary=note.summary,
    )


def _row(entry: AuditRecord) -> dict[str, Any]:
    """The entry's columns, but its id (the insert gives it)."""
    subject = entry.subject
    return {
        "agency_id": entry.agency_id,
        "kind": entry.kind.value,
        "occurred_at": entry.occurred_at,
        "email": entry.email,
        "subject_type": None if subject is None else subject.type_name,
        "subject_id": None if subject is None else subject.id,
        "summary": entry.summary,
    }


async def record(
    conn: AsyncConnection, notes: Sequence[tuple[Actor, AuditNote]], now: datetime
) -> list[AuditRecord]:
    """Stores the notes (in order) and returns them as records, with their ids."""
    records = []
    for actor, note in notes:  # a unit of work records one, at most a few
        entry = _entry(actor, note, now)
        entry_id = await prepared.fetch_value(conn, _RECORD, _row(entry))
        assert entry_id is not None
        records.append(replace(entry, id=int(entry_id)))
    return records


# PostgreSQL: a unit of work's one audit entry and all its events, the entry's own announcement
# last, in one statement at commit, where there were two. The announcement carries the entry's
# id, which only the insert knows: its payload is written around it (`_around_id`).
_AUDITED_EVENTS_PG = Prepared(
    text(
        f"WITH entry AS (INSERT INTO {audit_t.name}"
        " (agency_id, kind, occurred_at, email, subject_type, subject_id, summary)"
        " VALUES (CAST(:a_agency_id AS UUID), CAST(:a_kind AS VARCHAR), :a_occurred_at,"
        " CAST(:a_email AS VARCHAR), CAST(:a_subject_type AS VARCHAR),"
        " CAST(:a_subject_id AS UUID), CAST(:a_summary AS TEXT)) RETURNING id)"
        f" INSERT INTO {outbox.name} (created_at, topic, kind, key, payload)"
        " SELECT :a_occurred_at, topic, kind, key, payload FROM ("
        "  SELECT rows.topic, rows.kind, rows.key, rows.payload, rows.n FROM"
        f" {unnested(EVENT_COLUMNS, ordinality='n')}"
        "  UNION ALL SELECT CAST(:e_topic AS VARCHAR), CAST(:e_kind AS VARCHAR),"
        " CAST(:e_key AS VARCHAR),"
        " CAST(:e_head AS TEXT) || CAST(entry.id AS TEXT) || CAST(:e_tail AS TEXT), NULL"
        " FROM entry) AS events"
        # The outbox's ids, which the relay numbers in, follow the events' order: explicitly
        # (the announcement last), not by UNION ALL's output order, which SQL does not promise.
        " ORDER BY n NULLS LAST"
        " RETURNING (SELECT id FROM entry)"
    )
)


def _around_id(payload: str) -> tuple[str, str]:
    """An audit entry's payload, encoded with id `_NO_ID`, as what comes before and after it."""
    head, marker, tail = payload.partition(f'"id":{_NO_ID}')
    assert marker and head == "{", "the id leads an audit entry's payload"
    return head + '"id":', tail


async def record_with_events(
    conn: AsyncConnection, actor: Actor, note: AuditNote, events: Sequence[Event], now: datetime
) -> AuditRecord:
    """`record` of one note, and `outbox.write_events` of `events` followed by the entry's own
    announcement (`audit_recorded`): one statement on PostgreSQL, two elsewhere."""
    if conn.dialect.name != "postgresql":
        [entry] = await record(conn, [(actor, note)], now)
        await write_events(conn, [*events, audit_recorded(entry)], now)
        return entry
    entry = _entry(actor, note, now)
    announced = audit_recorded(entry)
    head, tail = _around_id(orjson.dumps(encode(announced)).decode())
    rows = await prepared.fetch(
        conn,
        _AUDITED_EVENTS_PG,
        {
            **{f"a_{name}": value for name, value in _row(entry).items()},
            **event_arrays(events),
            "e_topic": announced.topic,
            "e_kind": announced.kind.value,
            "e_key": announced.key,
            "e_head": head,
            "e_tail": tail,
        },
    )
    return replace(entry, id=int(rows[0][0]))


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
