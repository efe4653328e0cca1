"""The engine and its two ways in: short read connections and write transactions.

PostgreSQL is the production path. On SQLite (the embedded default) there is one writer at a
time: write transactions start with BEGIN IMMEDIATE and wait on the busy timeout, so
concurrent requests queue instead of failing with "database is locked" (past the timeout,
the unit of work answers TRY_AGAIN). On PostgreSQL, a request that waits longer than
`pool_timeout` for a connection (the server is saturated) is answered TRY_AGAIN too, not
"Unexpected error": nothing was done, and repeating it later is the right move. A database
that cannot be reached, or restarts under a request, is answered SERVICE_UNAVAILABLE
(`_connected`), and the pools replace dead connections on their own (`_drop_closed_connections`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg
from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from domain.errors import ServiceUnavailable, TryAgain
from persistence.prepared import Prepared, announce_after, announce_before

SQLITE_BUSY_TIMEOUT_MS = 30_000


def dialect_insert(conn: AsyncConnection, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT in the connection's own dialect: the one with ON CONFLICT clauses."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


_WRITE = "agencyhub_write"
# Connections of the lookup pool (`Database.lookup`): each is a short single-row read.
LOOKUP_POOL_SIZE = 4


class Lookup(Prepared):
    """A one-row read made on (nearly) every request: who is calling, from a session token or
    an API key.

    On PostgreSQL it runs straight on asyncpg, on a small pool of its own, with the SQL and the
    type conversions SQLAlchemy itself would use (compiled once per process,
    persistence/prepared.py): SQLAlchemy's connection checkout and execution path cost about
    twice the statement's own CPU, on every request. On SQLite it goes through SQLAlchemy like
    any read.
    """


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        pool_timeout: float = 30,
        busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
        pool_pre_ping: bool = False,
    ) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine: AsyncEngine
        if self.is_sqlite:
            self.engine = create_async_engine(self.url)
            _configure_sqlite(self.engine, busy_timeout_ms)
        else:
            # A fixed pool: "overflow" connections are opened and closed again under sustained
            # load, and a new PostgreSQL connection costs far more than waiting for one.
            self.engine = create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=0,
                pool_timeout=pool_timeout,
                pool_pre_ping=pool_pre_ping,
            )
        # Reads are single statements (a DataLoader batch, a page): on PostgreSQL they get a
        # pool of their own in autocommit, which saves the BEGIN and ROLLBACK round trips
        # around each one (and resetting the isolation level at every checkout).
        self._read_engine = (
            self.engine
            if self.is_sqlite
            else create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=0,
                pool_timeout=pool_timeout,
                pool_pre_ping=pool_pre_ping,
                isolation_level="AUTOCOMMIT",
            )
        )
        if not self.is_sqlite:
            _drop_closed_connections(self.engine)
            _drop_closed_connections(self._read_engine)
        self._pool_timeout = pool_timeout
        self._lookups: asyncpg.Pool | None = None
        self._lookups_opening = asyncio.Lock()

    async def lookup(self, lookup: Lookup, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The statement's first row as a mapping of its column names, or None."""
        if self.is_sqlite:
            async with self.read() as conn:
                row = (await conn.execute(lookup.fallback, dict(params))).first()
            return None if row is None else row._mapping
        dialect = self.engine.dialect
        compiled = lookup.compiled(dialect)
        args = compiled.arguments(params)
        pool = self._lookups or await self._open_lookups()
        with _service_errors(busy=TimeoutError):
            conn = await _taken(pool, self._pool_timeout)
            done = False
            try:
                shape = lookup.known_shape
                if shape is None:  # once per process: the columns' types, for conversion
                    statement = await conn.prepare(compiled.sql)
                    shape = lookup.row_shape(dialect, compiled, statement.get_attributes())
                engine = self._read_engine.sync_engine
                listened = announce_before(engine, compiled.sql, args)
                record = await conn.fetchrow(compiled.sql, *args)  # prepared once per conn.
                if listened:
                    announce_after(engine, compiled.sql, args)
                done = True
            finally:
                # A statement cut short (the request cancelled, an error) may leave the
                # connection cancelling: its release then waits for the server, at most this
                # long before asyncpg drops the connection, as it did when the pool's timeout
                # was given at acquire.
                await pool.release(conn, timeout=None if done else self._pool_timeout)
        if record is None:
            return None
        return shape.mapping(record)

    async def _open_lookups(self) -> asyncpg.Pool:
        async with self._lookups_opening:
            if self._lookups is None:
                # The connection arguments SQLAlchemy's asyncpg dialect derives from the URL
                # (`?ssl=require` and the like), without the ones only its adapter takes.
                args, options = self.engine.dialect.create_connect_args(self.url)
                for adapter_only in (
                    "prepared_statement_cache_size",
                    "prepared_statement_name_func",
                ):
                    options.pop(adapter_only, None)
                with _service_errors():
                    self._lookups = await asyncpg.create_pool(
                        *args,
                        **options,
                        min_size=1,
                        max_size=LOOKUP_POOL_SIZE,
                        reset=_nothing_to_reset,
                    )
            return self._lookups

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A short-lived connection for one read or one DataLoader batch."""
        async with _connected(self._read_engine) as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block ends cleanly, rolled back otherwise."""
        async with _connected(self.engine) as conn:
            conn = await conn.execution_options(**{_WRITE: True})
            async with conn.begin():
                yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    def connections_in_use(self) -> dict[str, int]:
        """Pooled connections checked out now, per pool ("write", and on PostgreSQL "read" and,
        once a lookup has opened it, "lookup")."""
        pools = {"write": self.engine}
        if self._read_engine is not self.engine:
            pools["read"] = self._read_engine
        in_use = {}
        for name, engine in pools.items():
            checked_out = getattr(engine.pool, "checkedout", None)
            in_use[name] = int(checked_out()) if checked_out is not None else 0
        if self._lookups is not None:
            in_use["lookup"] = self._lookups.get_size() - self._lookups.get_idle_size()
        return in_use

    async def dispose(self) -> None:
        if self._lookups is not None:
            lookups, self._lookups = self._lookups, None
            await lookups.close()
        await self.engine.dispose()
        if self._read_engine is not self.engine:
            await self._read_engine.dispose()


async def _taken(pool: asyncpg.Pool, wait_at_most: float) -> asyncpg.Connection:
    """A connection of the pool; TimeoutError when none came free within `wait_at_most` seconds.

    An idle one is taken without a timer. When all are busy the wait is bounded by
    `asyncio.timeout`, not by asyncpg's own (`acquire(timeout=)`, which runs the wait in a task
    of its own through `wait_for` and the release under a second timer): together 3-4 % of
    the `viewer` query's server CPU under load (BENCHMARKS.md, "viewer query over HTTP")."""
    if pool.get_idle_size():
        return await pool.acquire()
    async with asyncio.timeout(wait_at_most):
        return await pool.acquire()


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """A lookup connection changes no session state (single SELECTs in autocommit): asyncpg's
    default reset would cost a round trip per lookup."""


_UNAVAILABLE = "The database is unavailable; try again in a moment."
# SQLSTATEs of a server going or gone: class 08 (connection exception), and shutting down,
# crashed, still starting (57P01-57P03).
_SERVER_GONE = ("08", "57P01", "57P02", "57P03")


def database_unreachable(error: BaseException) -> bool:
    """The error says the database cannot be reached or the connection died (a restart, a
    failover, the network), not that the request was wrong: whatever the layer that raised it
    (the socket, asyncpg, SQLAlchemy's wrapper), anywhere in its chain of causes."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, (OSError, sa_exc.DisconnectionError)):
            return True
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        state = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(state, str) and state.startswith(_SERVER_GONE):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


@contextmanager
def _service_errors(busy: type[BaseException] | tuple[()] = ()) -> Iterator[None]:
    """A database that cannot be reached, or is lost while the block runs, leaves as
    `ServiceUnavailable` (the API's SERVICE_UNAVAILABLE), never as a driver's error with SQL in
    it; `busy` (a pool's wait for a free connection running out) as `TryAgain`."""
    try:
        yield
    except busy as error:
        raise TryAgain("The server is busy; try again in a moment.") from error
    except Exception as error:
        if database_unreachable(error):
            raise ServiceUnavailable(_UNAVAILABLE) from error
        raise


@asynccontextmanager
async def _connected(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection, with `_service_errors` around taking it (every pooled connection
    busy: TryAgain) and around the block."""
    conn = engine.connect()
    with _service_errors(busy=sa_exc.TimeoutError):
        await conn.start()
    try:
        with _service_errors():
            yield conn
    finally:
        try:
            await conn.close()
        except Exception as error:
            if not database_unreachable(error):
                raise


def _drop_closed_connections(engine: AsyncEngine) -> None:
    """A pooled connection whose server went away (a restart closes every socket) is replaced
    when it is checked out, before a request uses it: asyncpg knows it closed without a round
    trip, unlike pre-ping, which would cost one per checkout on the hot path. A connection
    that dies while in use still fails its request (SERVICE_UNAVAILABLE), and SQLAlchemy then
    replaces every connection of the pool opened before."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        driver = getattr(dbapi_connection, "_connection", None)
        is_closed = getattr(driver, "is_closed", None)
        if is_closed is not None and is_closed():
            raise sa_exc.DisconnectionError("the server closed this pooled connection")


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
