"""The retrying unit of work: a transaction PostgreSQL rolls back for concurrency's sake
(a real deadlock, a real serialization failure) runs again and commits; one that keeps losing
ends in TryAgain; anything else fails at once, untried."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import func, literal, select, text, update

from domain.agency import sign_up
from domain.errors import TryAgain
from persistence import agencies
from persistence.database import LOOKUP_POOL_SIZE, Database, Lookup
from persistence.errors import UniqueViolation
from persistence.records import agency_t
from persistence.unit_of_work import RetryPolicy, UnitOfWork, transact
from tests.deadlocks import Opponents

now = lambda: datetime.now(UTC)
postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
QUICK = RetryPolicy(attempts=4, first_delay=0.001, max_delay=0.005)


async def new_agency(database: Database) -> uuid.UUID:
    signup = sign_up("Retry", f"{uuid.uuid4().hex}@x.example", "correct-horse-battery", None, now())
    async with UnitOfWork(database, now) as uow:
        agency = await agencies.add_agency(uow.conn, signup, now())
    return agency.id


def renaming(agency_id: uuid.UUID, before: Callable[[UnitOfWork, int], Awaitable[None]]):
    """Work that renames the agency after `before(uow, attempt)`; counts its attempts."""
    attempts = 0

    async def work(uow: UnitOfWork) -> int:
        nonlocal attempts
        attempts += 1
        await before(uow, attempts)
        await agencies.update_agency(uow.conn, agency_id, name=f"Renamed {attempts}")
        return attempts

    return work


async def name_of(database: Database, agency_id: uuid.UUID) -> str:
    async with database.read() as conn:
        return str(await conn.scalar(select(agency_t.c.name).where(agency_t.c.id == agency_id)))


def retry_messages(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    records = [r for r in caplog.records if r.name == "persistence.unit_of_work"]
    assert all(r.exc_info is None for r in records)  # a line with its SQLSTATE, no traceback
    return [(r.levelname, r.getMessage()) for r in records]


@postgresql_only
async def test_a_deadlock_victim_is_run_again_and_commits(database, caplog):
    # given work that loses a real deadlock on its first attempt only
    agency_id = await new_agency(database)
    opponents = Opponents(database)

    async def first_attempt_deadlocks(uow: UnitOfWork, attempt: int) -> None:
        if attempt == 1:
            await opponents.deadlock(uow.conn)

    caplog.set_level(logging.INFO, "persistence.unit_of_work")

    # when it runs through the unit of work
    attempts = await transact(
        lambda: UnitOfWork(database, now), renaming(agency_id, first_attempt_deadlocks), QUICK
    )
    await opponents.finished()

    # then the second attempt committed, and the retry was logged with its SQLSTATE
    assert attempts == 2
    assert await name_of(database, agency_id) == "Renamed 2"
    [(level, message)] = retry_messages(caplog)
    assert level == "INFO" and "SQLSTATE 40P01" in message and "attempt 1 of 4" in message


@postgresql_only
async def test_a_serialization_failure_is_run_again_and_commits(database, caplog):
    # given work that, at its first attempt, updates a row changed since its snapshot
    agency_id = await new_agency(database)

    async def first_attempt_loses_the_race(uow: UnitOfWork, attempt: int) -> None:
        await uow.conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        await uow.conn.execute(select(agency_t.c.name).where(agency_t.c.id == agency_id))
        if attempt == 1:
            async with database.transaction() as other:
                await other.execute(
                    update(agency_t).where(agency_t.c.id == agency_id).values(name="Theirs")
                )

    caplog.set_level(logging.INFO, "persistence.unit_of_work")

    # when it runs through the unit of work
    attempts = await transact(
        lambda: UnitOfWork(database, now), renaming(agency_id, first_attempt_loses_the_race), QUICK
    )

    # then the first attempt failed with 40001 and the second committed over the other change
    assert attempts == 2
    assert await name_of(database, agency_id) == "Renamed 2"
    [(level, message)] = retry_messages(caplog)
    assert level == "INFO" and "SQLSTATE 40001" in message


@postgresql_only
async def test_a_transaction_that_keeps_deadlocking_ends_in_try_again(database, caplog):
    # given work that loses a real deadlock at every attempt
    agency_id = await new_agency(database)
    before = await name_of(database, agency_id)
    opponents = Opponents(database)

    async def always_deadlocks(uow: UnitOfWork, attempt: int) -> None:
        await opponents.deadlock(uow.conn)

    caplog.set_level(logging.INFO, "persistence.unit_of_work")
    work = renaming(agency_id, always_deadlocks)

    # when it runs through the unit of work
    with pytest.raises(TryAgain):
        await transact(lambda: UnitOfWork(database, now), work, QUICK)
    await opponents.finished()

    # then it was tried four times, changed nothing, and said so once at WARNING
    assert opponents.played == 4
    assert await name_of(database, agency_id) == before
    messages = retry_messages(caplog)
    assert [level for level, _ in messages] == ["INFO", "INFO", "INFO", "WARNING"]
    assert all("SQLSTATE 40P01" in message for _, message in messages)
    assert "gave up after 4 attempts" in messages[-1][1]


async def test_other_errors_are_not_retried(database, caplog):
    # given work that breaks a unique constraint, and work that a rule refuses
    agency_id = await new_agency(database)
    attempts = 0

    async def duplicate(uow: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        await uow.conn.execute(
            agency_t.insert().from_select(
                [c.name for c in agency_t.c],
                select(*agency_t.c).where(agency_t.c.id == agency_id),
            )
        )

    caplog.set_level(logging.INFO, "persistence.unit_of_work")

    # when it runs through the unit of work
    with pytest.raises(UniqueViolation) as refused:
        await transact(lambda: UnitOfWork(database, now), duplicate, QUICK)

    # then it ran once, and says which constraint refused it (PostgreSQL names it)
    if database.is_sqlite:
        assert refused.value.constraint is None and "agency.id" in refused.value.detail
    else:
        assert refused.value.constraint == "pk_agency"
    assert attempts == 1
    assert retry_messages(caplog) == []
    async with database.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(agency_t)) == 1


@sqlite_only
async def test_sqlite_busy_past_its_timeout_is_try_again_without_more_waiting(database_url, caplog):
    # given another writer holding SQLite's one write lock, and a 50 ms busy timeout
    database = Database(database_url, busy_timeout_ms=50)
    writer = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    attempts = 0

    async def work(uow: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1

    caplog.set_level(logging.INFO, "persistence.unit_of_work")
    try:
        # when a write transaction starts
        with pytest.raises(TryAgain):
            await transact(lambda: UnitOfWork(database, now), work, QUICK)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        await database.dispose()

    # then it gave up at once: the busy timeout was the waiting
    assert attempts == 0
    [(level, message)] = retry_messages(caplog)
    assert level == "WARNING" and "database is locked" in message


@postgresql_only
@pytest.mark.parametrize("way_in", ["transaction", "read"])
async def test_no_free_connection_in_time_is_try_again_not_an_unexpected_error(
    database_url, way_in
):
    # given a pool of one connection that someone holds
    database = Database(database_url, pool_size=1, pool_timeout=0.2)
    try:
        async with getattr(database, way_in)():
            # when another request waits longer than the pool timeout for a connection
            with pytest.raises(TryAgain, match="busy"):
                async with getattr(database, way_in)():
                    pass  # pragma: no cover - never reached
        # then, once the connection is free again, the next one gets through
        async with getattr(database, way_in)() as conn:
            assert await conn.scalar(text("SELECT 1")) == 1
    finally:
        await database.dispose()


@postgresql_only
async def test_a_lookup_with_every_connection_busy_is_try_again_in_time(database_url):
    # given the session lookup's pool with every connection held by someone else
    database = Database(database_url, pool_timeout=0.2)
    lookup = Lookup(select(literal(1).label("one")))
    held = []
    try:
        assert await database.lookup(lookup, {}) == {"one": 1}
        pool = database._lookups
        assert pool is not None
        held = [await pool.acquire() for _ in range(LOOKUP_POOL_SIZE)]
        # when a request looks up: the pool's timeout applies (no connection was idle)
        with pytest.raises(TryAgain, match="busy"):
            await asyncio.wait_for(database.lookup(lookup, {}), timeout=5)
        # then, once one is free again, the next lookup gets through without waiting
        await pool.release(held.pop())
        assert await database.lookup(lookup, {}) == {"one": 1}
    finally:
        for conn in held:
            await conn.close()
        await database.dispose()


@postgresql_only
async def test_a_lookup_cut_short_releases_its_connection_within_the_pool_timeout(
    database_url, monkeypatch
):
    # given the lookup pool, with each release's time limit recorded
    database = Database(database_url, pool_timeout=0.5)
    quick = Lookup(select(literal(1).label("one")))
    slow = Lookup(select(func.pg_sleep(5).label("slept")))
    try:
        assert await database.lookup(quick, {}) == {"one": 1}
        pool = database._lookups
        assert pool is not None
        limits = []
        release = asyncpg.Pool.release

        async def recorded(self, conn, *, timeout=None):
            if self is pool:
                limits.append(timeout)
            return await release(self, conn, timeout=timeout)

        monkeypatch.setattr(asyncpg.Pool, "release", recorded)
        # when one lookup ends normally and another is cancelled mid-statement
        assert await database.lookup(quick, {}) == {"one": 1}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(database.lookup(slow, {}), timeout=0.2)
        # then only the one cut short is released under the pool's timeout (asyncpg waits for
        # the server to confirm the cancellation, and drops the connection past it)
        assert limits == [None, 0.5]
        assert await database.lookup(quick, {}) == {"one": 1}
    finally:
        await database.dispose()
