"""The engine and its two ways in: short read connections and write transactions.

PostgreSQL is the production path. On SQLite (the embedded default) there is one writer at a
time: write transactions start with BEGIN IMMEDIATE and wait on the busy timeout, so
concurrent requests queue instead of failing with "database is locked" (past the timeout,
the unit of work answers TRY_AGAIN). On PostgreSQL, a request that waits longer than
`pool_timeout` for a connection (the server is saturated) is answered TRY_AGAIN too, not
"Unexpected error": nothing was done, and repeating it later is the right move.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from domain.errors import TryAgain

SQLITE_BUSY_TIMEOUT_MS = 30_000


def dialect_insert(conn: AsyncConnection, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT in the connection's own dialect: the one with ON CONFLICT clauses."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


_WRITE = "agencyhub_write"


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        pool_timeout: float = 30,
        busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
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
                self.url, pool_size=pool_size, max_overflow=0, pool_timeout=pool_timeout
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
                isolation_level="AUTOCOMMIT",
            )
        )

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

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._read_engine is not self.engine:
            await self._read_engine.dispose()


@asynccontextmanager
async def _connected(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    conn = engine.connect()
    try:
        await conn.start()
    except sa_exc.TimeoutError as error:  # every pooled connection stayed busy
        raise TryAgain("The server is busy; try again in a moment.") from error
    try:
        yield conn
    finally:
        await conn.close()


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
