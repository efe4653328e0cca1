"""An audited unit of work commits a change together with its audit entry, or not at all."""

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy import func, select

from domain.agency import sign_up
from domain.audit import Actor, AuditKind, AuditNote, Subject
from domain.events import Event, EventKind, agency_topic, audit_recorded, decode, encode
from domain.live import AgencyTotals
from persistence import agencies, audit
from persistence.outbox import outbox
from persistence.tables import AgencyRow, AuditLogRow
from persistence.unit_of_work import Unaudited, UnitOfWork

now = lambda: datetime.now(UTC)


def new_signup():
    return sign_up(
        "Audited Co", f"{uuid.uuid4().hex}@x.example", "correct-horse-battery", None, now()
    )


async def count(database, table):
    async with database.read() as conn:
        return await conn.scalar(select(func.count()).select_from(table))


async def test_an_audited_change_without_an_entry_fails_and_commits_nothing(database):
    # given a unit of work that must audit its change
    with pytest.raises(Unaudited):
        async with UnitOfWork(database, now, audited=True) as uow:
            # when it changes something and commits without uow.audit
            await agencies.add_agency(uow.conn, new_signup(), now())
    # then the change was rolled back, and nothing was logged or announced
    assert await count(database, AgencyRow.__table__) == 0
    assert await count(database, AuditLogRow.__table__) == 0
    assert await count(database, outbox) == 0


async def test_an_audited_change_commits_with_its_entry_and_announces_it(database):
    # given a unit of work that must audit its change
    async with UnitOfWork(database, now, audited=True) as uow:
        # when it changes something and says so
        agency = await agencies.add_agency(uow.conn, new_signup(), now())
        uow.audit(
            Actor(agency.id, "owner@x.example"),
            AuditNote(AuditKind.AGENCY_SIGNED_UP, "signed up", Subject("Agency", agency.id)),
        )
    # then the change, its entry and the entry's live event are committed together
    async with database.read() as conn:
        page, total = await audit.audit_page(conn, agency.id, None, 10, None)
        kinds = (await conn.execute(select(outbox.c.kind))).scalars().all()
    [entry] = page.items
    assert total == 1
    assert (entry.kind, entry.email, entry.subject) == (
        AuditKind.AGENCY_SIGNED_UP,
        "owner@x.example",
        Subject("Agency", agency.id),
    )
    assert kinds == ["AUDIT_RECORDED"]


async def test_a_unit_of_work_that_changed_nothing_commits_without_an_entry(database):
    # given an agency
    async with UnitOfWork(database, now) as uow:
        agency = await agencies.add_agency(uow.conn, new_signup(), now())
    # when an audited unit of work finds nothing to change and says so
    async with UnitOfWork(database, now, audited=True) as uow:
        await agencies.agency_for_update(uow.conn, agency.id)
        uow.nothing_changed()
    # then it committed quietly
    assert await count(database, AuditLogRow.__table__) == 0


@pytest.mark.parametrize("notes", [1, 2])
async def test_a_units_entries_and_events_go_to_the_outbox_in_order_with_the_entries_ids(
    database, notes
):
    # given a unit of work with an event of its own and one or two audit notes
    async with UnitOfWork(database, now, audited=True) as uow:
        agency = await agencies.add_agency(uow.conn, new_signup(), now())
        actor = Actor(agency.id, "owner@x.example")
        totals = AgencyTotals(5, 1)
        uow.publish(Event(agency_topic(agency.id), EventKind.AGENCY_TOTALS_UPDATED, totals))
        for n in range(notes):
            uow.audit(actor, AuditNote(AuditKind.AGENCY_SIGNED_UP, f'note {n} "q" é', None))
    # then the outbox holds the event, then each entry's announcement with the entry as stored
    async with database.read() as conn:
        page, _ = await audit.audit_page(conn, agency.id, None, 10, None)
        rows = (await conn.execute(select(outbox).order_by(outbox.c.id))).all()
    entries = sorted(page.items, key=lambda e: e.id)
    assert [r.kind for r in rows] == ["AGENCY_TOTALS_UPDATED"] + ["AUDIT_RECORDED"] * notes
    assert decode("AGENCY_TOTALS_UPDATED", orjson.loads(rows[0].payload)) == totals
    for row, entry in zip(rows[1:], entries, strict=True):
        assert (row.topic, row.key) == (agency_topic(agency.id), None)
        assert orjson.loads(row.payload) == encode(audit_recorded(entry))
