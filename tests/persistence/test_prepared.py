"""Statements run through persistence/prepared.py behave as through SQLAlchemy: inside the
same transaction (even as its first statement, so a rollback undoes them), with the same rows,
values and types, the same row counts, and SQLAlchemy's own errors with the driver's SQLSTATE
(what the unit of work's retries and unique-violation handling look at)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.exc import IntegrityError

from persistence import prepared
from persistence.prepared import Prepared
from persistence.records import AGENCY_COLUMNS, agency_t
from persistence.tables import AgencyRow

NAME = Prepared(
    text("SELECT CAST(:a AS TEXT) AS a, CAST(:n AS INTEGER) + 1 AS n, CAST(:a AS TEXT) AS again")
)
AGENCIES = Prepared(
    select(*AGENCY_COLUMNS, func.count().over().label("total"))
    .where(agency_t.c.name.like(bindparam("pattern")))
    .order_by(agency_t.c.name)
)
RENAME = Prepared(
    update(agency_t).where(agency_t.c.name == bindparam("old")).values(name=bindparam("new"))
)
ADD = Prepared(
    text(
        "INSERT INTO agency (id, name, plan_name, billing_model, sub_account_cap,"
        " included_monthly_minutes, included_tier, plan_started_on, time_zone, created_at)"
        " SELECT :id, :name, plan_name, billing_model, sub_account_cap,"
        " included_monthly_minutes, included_tier, plan_started_on, time_zone, created_at"
        " FROM agency WHERE name = :like"
    ).bindparams(bindparam("id", type_=agency_t.c.id.type))
)


async def _agency(database, name: str) -> None:
    async with database.transaction() as conn:
        await conn.execute(
            AgencyRow.__table__.insert().values(
                id=uuid.uuid4(),
                name=name,
                plan_name="Starter",
                billing_model="PER_MINUTE",
                sub_account_cap=5,
                included_monthly_minutes=0,
                included_tier="BASIC",
                plan_started_on=datetime.now(UTC).date(),
                time_zone="UTC",
                created_at=datetime.now(UTC),
            )
        )


async def test_rows_values_and_types_are_sqlalchemys(database):
    await _agency(database, "Prepared A")
    await _agency(database, "Prepared B")
    async with database.transaction() as conn:
        [row] = await prepared.fetch(conn, NAME, {"a": "x", "n": 41})
        assert (row.a, row.n, row.again, row._mapping) == (
            "x",
            42,
            "x",
            {"a": "x", "n": 42, "again": "x"},
        )
        rows = await prepared.fetch(conn, AGENCIES, {"pattern": "Prepared %"})
        expected = (await conn.execute(AGENCIES.statement, {"pattern": "Prepared %"})).all()
        assert [r._mapping for r in rows] == [dict(r._mapping) for r in expected]
        assert [[type(v) for v in r] for r in rows] == [[type(v) for v in r] for r in expected]
        assert [r.name for r in rows] == ["Prepared A", "Prepared B"]
        assert await prepared.fetch_value(conn, AGENCIES, {"pattern": "none%"}) is None
        assert await prepared.execute(conn, RENAME, {"old": "Prepared A", "new": "Prepared C"}) == 1
        assert await prepared.execute(conn, RENAME, {"old": "nobody", "new": "x"}) == 0


async def test_a_first_statement_runs_inside_the_transaction(database):
    await _agency(database, "Rolled")

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with database.transaction() as conn:
            # The transaction's first statement: had it run outside the transaction (the
            # driver's autocommit), the rollback below could not undo it.
            assert await prepared.execute(conn, RENAME, {"old": "Rolled", "new": "Renamed"}) == 1
            raise Abort
    async with database.read() as conn:
        names = set((await conn.scalars(select(agency_t.c.name))).all())
    assert "Rolled" in names and "Renamed" not in names


async def test_errors_are_sqlalchemys_with_the_sqlstate(database):
    await _agency(database, "Twin")
    async with database.transaction() as conn:
        [row] = await prepared.fetch(conn, AGENCIES, {"pattern": "Twin"})
    with pytest.raises(IntegrityError) as raised:
        async with database.transaction() as conn:
            await prepared.execute(conn, ADD, {"id": row.id, "name": "Twin 2", "like": "Twin"})
    if database.url.get_backend_name() == "postgresql":
        assert raised.value.orig.sqlstate == "23505"  # type: ignore[union-attr]
    # The connection is usable again afterwards (rolled back, returned to the pool).
    async with database.transaction() as conn:
        assert await prepared.fetch_value(conn, NAME, {"a": "ok", "n": 0}) == "ok"


async def test_statement_listeners_see_prepared_statements(database):
    """Statement counts (tests, benchmarks) listen on the engine: they must not miss these."""
    from sqlalchemy import event

    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        seen.append(statement)

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        async with database.transaction() as conn:
            await prepared.fetch_value(conn, NAME, {"a": "counted", "n": 1})
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert [s for s in seen if "CAST(" in s and "AS again" in s], seen


SLEEP = Prepared(text("SELECT pg_sleep(:seconds)"))


def _postgres_only(database) -> None:
    if database.url.get_backend_name() != "postgresql":
        pytest.skip("the asyncpg path: SQLite runs through SQLAlchemy")


async def test_a_cancelled_begin_leaves_no_broken_connection_behind(database_url, monkeypatch):
    """Cancelled between BEGIN and the adapter noting it (a client gone, a job stopped): the
    driver's transaction is open while SQLAlchemy's adapter thinks none is. That connection must
    not go back to the pool as it is (the next transaction would only be a savepoint in it, and
    its commit would commit nothing): the next transaction on the pool's only connection begins,
    commits and is seen by others."""
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

    from persistence.database import Database

    database = Database(database_url, pool_size=1)
    try:
        _postgres_only(database)
        await _agency(database, "Before cancel")
        started = asyncio.Event()

        async def slow_begin(self) -> None:  # BEGIN sent and answered; the adapter not told yet
            self._transaction = self._connection.transaction()
            await self._transaction.start()
            started.set()
            await asyncio.sleep(5)

        async def cancelled() -> None:
            async with database.transaction() as conn:
                await prepared.execute(conn, RENAME, {"old": "Before cancel", "new": "Lost"})

        with monkeypatch.context() as patch:
            patch.setattr(AsyncAdapt_asyncpg_connection, "_start_transaction", slow_begin)
            task = asyncio.create_task(cancelled())
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        async with database.transaction() as conn:
            moved = await prepared.execute(conn, RENAME, {"old": "Before cancel", "new": "After"})
        assert moved == 1
        async with database.read() as conn:  # another connection sees it: it was committed
            names = set((await conn.scalars(select(agency_t.c.name))).all())
        assert "After" in names and "Lost" not in names
    finally:
        await database.dispose()


@pytest.mark.parametrize("how", ["server", "client"])
async def test_a_dropped_connection_is_service_unavailable_then_replaced(database, how):
    """Dropped by the server (a restart: SQLSTATE 08003) or found closed by the driver (no
    SQLSTATE at all): either way the request's error says the database is unreachable."""
    from persistence.database import database_unreachable

    _postgres_only(database)
    with pytest.raises(Exception) as raised:
        async with database.transaction() as conn:
            pid = await prepared.fetch_value(conn, Prepared(text("SELECT pg_backend_pid()")), {})
            if how == "server":
                async with database.read() as other:
                    await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            else:
                conn.sync_connection.connection.dbapi_connection._connection.terminate()
            await prepared.fetch_value(conn, NAME, {"a": "x", "n": 1})
    assert database_unreachable(raised.value), repr(raised.value)
    async with database.transaction() as conn:  # the pool hands out a live connection again
        assert await prepared.fetch_value(conn, NAME, {"a": "back", "n": 1}) == "back"
