"""The hottest statements, run inside SQLAlchemy's transaction but not through its execution path.

Ingestion, transfers and the outbox relay run a handful of fixed statements per request. Each
one through `AsyncConnection.execute` spends more CPU in SQLAlchemy (a greenlet switch, the
execution context, parameter processing, the cursor and result objects) than in asyncpg and
the server together: about 0.08 to 0.15 ms a statement on the benchmark machine, on every request
(BENCHMARKS.md). A `Prepared` statement is compiled by SQLAlchemy once per process, for the
connection's dialect, into the SQL and conversions SQLAlchemy itself would send; `fetch`,
`fetch_value` and `execute` then run it on the asyncpg connection underneath the
`AsyncConnection`:

- in the same transaction: the adapter's own lock and transaction start are used, so a
  statement run here before any other still runs inside `Database.transaction()`'s BEGIN, and
  the commit or rollback is SQLAlchemy's as before;
- through the adapter's own prepared-statement cache (prepared once per connection);
- with errors as SQLAlchemy raises them (`IntegrityError`, `OperationalError`, … with the
  driver's SQLSTATE), so deadlock retries, unique-violation handling and SERVICE_UNAVAILABLE
  work unchanged.

Rows come back as tuples that also answer by column name (`row.id`) and `row._mapping`, like
SQLAlchemy's. On SQLite (the embedded default) the statement simply goes through SQLAlchemy.
This reaches into SQLAlchemy's asyncpg adapter (its execute lock, transaction start and
statement cache): tests/persistence/test_prepared.py pins that behaviour for the version in
pyproject.toml.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, any_, bindparam
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

Convert = Callable[[Any], Any] | None


@dataclass(frozen=True)
class Compiled:
    """A statement as SQLAlchemy sends it to asyncpg: its SQL, its parameters' names in order
    with their SQLAlchemy bind conversions and the values written into the statement, and the
    types of the columns it returns (none for a text statement: SQLAlchemy converts nothing)."""

    sql: str
    names: tuple[str, ...]
    binds: tuple[Convert, ...]
    constants: dict[str, Any]
    types: tuple[Any, ...] | None

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        values = {**self.constants, **params} if self.constants else params
        return [
            values[name] if convert is None else convert(values[name])
            for name, convert in zip(self.names, self.binds, strict=True)
        ]


class Prepared:
    """A statement built once at import, compiled once per process. `fallback` is what runs
    instead on SQLite, when the statement itself is PostgreSQL's own (`= ANY(:ids)`)."""

    def __init__(self, statement: Executable, fallback: Executable | None = None) -> None:
        self.statement = statement
        self.fallback = statement if fallback is None else fallback
        self._compiled: Compiled | None = None
        self._shape: RowShape | None = None

    def compiled(self, dialect: Dialect) -> Compiled:
        if self._compiled is None:
            compiled = self.statement.compile(dialect=dialect)
            names = tuple(compiled.positiontup or ())
            if compiled.literal_execute_params or any(
                compiled.binds[name].expanding for name in names
            ):
                raise ValueError("a Prepared statement takes no expanding (IN) parameters")
            binds = tuple(
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                for name in names
            )
            # Values written in the statement (`kind == 'PRIMARY'`) are parameters too.
            constants = {
                name: compiled.binds[name].effective_value
                for name in names
                if not compiled.binds[name].required
            }
            columns = getattr(self.statement, "exported_columns", None)
            types = None if columns is None else tuple(c.type for c in columns)
            self._compiled = Compiled(compiled.string, names, binds, constants, types)
        return self._compiled

    @property
    def known_shape(self) -> RowShape | None:
        return self._shape

    def row_shape(
        self, dialect: Dialect, compiled: Compiled, attributes: Sequence[Any]
    ) -> RowShape:
        """The rows' class and the columns' conversions, once the server has said the columns'
        names and types (the first run)."""
        if self._shape is None:
            names = tuple(attribute.name for attribute in attributes)
            if compiled.types is None:
                converts: tuple[Convert, ...] = (None,) * len(names)
            else:
                converts = tuple(
                    kind.dialect_impl(dialect).result_processor(dialect, attribute.type.oid)
                    for kind, attribute in zip(compiled.types, attributes, strict=True)
                )
            self._shape = RowShape(names, _row_class(names), converts)
        return self._shape


@dataclass(frozen=True)
class RowShape:
    names: tuple[str, ...]
    row: type[tuple[Any, ...]]
    converts: tuple[Convert, ...]

    def values(self, record: Sequence[Any]) -> Sequence[Any]:
        if not any(self.converts):
            return record
        return [
            value if convert is None else convert(value)
            for convert, value in zip(self.converts, record, strict=True)
        ]

    def build(self, record: Sequence[Any]) -> Any:
        return self.row(*self.values(record))

    def mapping(self, record: Sequence[Any]) -> dict[str, Any]:
        return dict(zip(self.names, self.values(record), strict=True))


def any_of(column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """`column = ANY(:name)`: a list of values as one array parameter (PostgreSQL), so the
    statement is the same whatever the list's length."""
    return column == any_(bindparam(name, type_=ARRAY(column.type)))


def in_list(column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """`column IN (:name…)`, the list expanded when the statement runs: `any_of`'s fallback."""
    return column.in_(bindparam(name, expanding=True))


def _row_class(names: tuple[str, ...]) -> type[tuple[Any, ...]]:
    base = collections.namedtuple("Row", names, rename=True)  # type: ignore[misc]

    class Row(base):  # type: ignore[valid-type, misc]
        __slots__ = ()

        @property
        def _mapping(self) -> dict[str, Any]:
            return dict(zip(names, self, strict=True))

    return Row


async def _run(
    conn: AsyncConnection, prepared: Prepared, params: Mapping[str, Any]
) -> tuple[list[Any], int]:
    """The rows and the row count (from the command's status) of one run."""
    dialect = conn.dialect
    if dialect.name != "postgresql":
        result = await conn.execute(prepared.fallback, dict(params))
        rows = list(result.all()) if result.returns_rows else []
        return rows, result.rowcount
    compiled = prepared.compiled(dialect)
    args = compiled.arguments(params)
    sync: Any = conn.sync_connection
    adapter: Any = sync.connection.dbapi_connection
    async with adapter._execute_mutex:
        try:
            if not adapter._started:  # the first statement of the transaction: BEGIN first
                await adapter._start_transaction()
            statement, attributes = await adapter._prepare(
                compiled.sql,
                dialect._invalidate_schema_cache_asof,  # type: ignore[attr-defined]
            )
            listened = announce_before(sync, compiled.sql, args)
            records = await statement.fetch(*args)
            if listened:
                announce_after(sync, compiled.sql, args)
            status = statement.get_statusmsg() or ""
        except Exception as error:
            raise _as_sqlalchemy_error(adapter, dialect, compiled.sql, args, error) from error
        except BaseException:
            # Cancelled (a client gone, a job stopped) between BEGIN and its answer, or mid-
            # statement: the adapter and the server may disagree about the transaction. The
            # connection is closed at once; the pool replaces it at its next checkout
            # (persistence.database._drop_closed_connections), as SQLAlchemy's own path would.
            _drop(adapter)
            raise
    count = _count(status)
    if not records:
        return [], count
    shape = prepared.row_shape(dialect, compiled, attributes)
    return [shape.build(record) for record in records], count


def announce_before(connectable: Any, sql: str, args: list[Any]) -> bool:
    """Tells the engine's `before_cursor_execute` listeners (statement counts and timings in
    tests and benchmarks) about a statement that does not go through SQLAlchemy's cursor;
    whether any listens, so that `announce_after` is called too. The connection they get is
    None for a lookup (its own pool). Two calls rather than a context manager: it wraps every
    hot statement, and a generator-based one cost 1 % of the server's CPU."""
    engine = getattr(connectable, "engine", connectable)
    if not (connectable._has_events or engine._has_events):
        return False
    connection = connectable if isinstance(connectable, Connection) else None
    connectable.dispatch.before_cursor_execute(connection, None, sql, args, None, False)
    return True


def announce_after(connectable: Any, sql: str, args: list[Any]) -> None:
    """The `after_cursor_execute` half of `announce_before`."""
    connection = connectable if isinstance(connectable, Connection) else None
    connectable.dispatch.after_cursor_execute(connection, None, sql, args, None, False)


def _count(status: str) -> int:
    """The row count in a command status (`UPDATE 3`, `INSERT 0 5`, `SELECT 1`), else -1."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else -1


def _drop(adapter: Any) -> None:
    """Closes the driver's connection now and tells the adapter no transaction is open (its
    rollback is then a no-op): SQLAlchemy gets the connection back and the pool replaces it."""
    adapter._connection.terminate()
    adapter._transaction = None
    adapter._started = False


def _as_sqlalchemy_error(
    adapter: Any, dialect: Dialect, sql: str, args: list[Any], error: Exception
) -> Exception:
    """The driver's error as SQLAlchemy would have raised it (its class by the driver's, the
    SQLSTATE kept), so callers that catch IntegrityError or retry on 40P01 see the same."""
    try:
        adapter._handle_exception(error)  # raises the adapter's DBAPI-level translation
    except Exception as translated:
        dbapi = dialect.loaded_dbapi
        if not isinstance(translated, dbapi.Error):
            return translated
        if isinstance(translated, (dbapi.InvalidCachedStatementError, dbapi.InternalServerError)):
            dialect._invalidate_schema_cache()  # type: ignore[attr-defined]  # as SQLAlchemy does
        # A connection the server dropped: SERVICE_UNAVAILABLE for the request (its error says
        # the connection was invalidated) and a closed connection the pool will replace.
        invalidated = dialect.is_disconnect(translated, adapter, None)
        if invalidated:
            _drop(adapter)
        return sa_exc.DBAPIError.instance(
            sql, args, translated, dbapi.Error, connection_invalidated=invalidated, dialect=dialect
        )
    return error


async def fetch(conn: AsyncConnection, prepared: Prepared, params: Mapping[str, Any]) -> list[Any]:
    """Every row the statement returns."""
    return (await _run(conn, prepared, params))[0]


async def fetch_value(conn: AsyncConnection, prepared: Prepared, params: Mapping[str, Any]) -> Any:
    """The first column of the first row, or None."""
    rows = (await _run(conn, prepared, params))[0]
    return rows[0][0] if rows else None


async def execute(conn: AsyncConnection, prepared: Prepared, params: Mapping[str, Any]) -> int:
    """Runs the statement; how many rows it touched (-1 when the server does not say)."""
    return (await _run(conn, prepared, params))[1]
