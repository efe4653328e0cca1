"""Batch statements for PostgreSQL that take one array per column through `unnest()`.

A batch of a thousand rows then travels as one short statement, prepared once, instead of a
VALUES list of ~10,000 parameters that SQLAlchemy compiles afresh for every batch (that was
half of ingestion's CPU time). The statements are text, but every name and type in them comes
from the tables in `persistence/tables.py`: nothing copies the schema by hand.

Why text and not SQLAlchemy Core's `insert(...).from_select(select(...).select_from(
func.unnest(...).table_valued(...)))`, which builds the same SQL: the PostgreSQL dialect's
`insert().from_select()` has no cache key (SQLAlchemy 2.0.58), so it is compiled again for
every batch. `bench/ingest_statements.py` measured 1.8 ms of CPU per one-call statement for
Core against 0.5 ms for this text, and 2.6 against 1.2 ms for 50 calls (BENCHMARKS.md,
"Ingestion statements").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Column, String, Table, TextClause, text
from sqlalchemy.dialects import postgresql

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def pg_type(column: Column[object]) -> str:
    """The column's type as PostgreSQL spells it (`UUID`, `BIGINT`, …), strings without their
    length: an explicit cast to `VARCHAR(200)` would cut a longer value silently, where the
    insert into the column refuses it (22001), as a plain INSERT does."""
    if isinstance(column.type, String):
        return "VARCHAR"
    return str(column.type.compile(dialect=_PG))


def unnested(
    columns: Sequence[Column[object]],
    alias: str = "rows",
    prefix: str = "",
    ordinality: str | None = None,
) -> str:
    """`unnest(CAST(:a AS T[]), …) AS rows(a, …)`: one bind parameter per column, named after
    it (after `prefix`), holding that column's values for every row of the batch; with
    `ordinality`, a last column of that name numbers the rows from 1 in the arrays' order."""
    arrays = ", ".join(f"CAST(:{prefix}{c.name} AS {pg_type(c)}[])" for c in columns)
    names = ", ".join([*(c.name for c in columns), *([ordinality] if ordinality else [])])
    numbered = " WITH ORDINALITY" if ordinality else ""
    return f"unnest({arrays}){numbered} AS {alias}({names})"


def insert_unnested(
    table: Table,
    columns: Sequence[Column[object]],
    constants: Iterable[Column[object]] = (),
    tail: str = "",
    prefix: str = "",
) -> TextClause:
    """INSERT INTO table (constants…, columns…) SELECT :constant…, rows.column… FROM unnest(…).

    `constants` are bound once for the whole batch (named after their columns); `tail` is what
    follows (ON CONFLICT …, RETURNING …), written with the same tables' names. With `prefix`,
    every bind parameter's name starts with it (two inserts in one statement).
    """
    return text(insert_unnested_sql(table, columns, constants, tail, prefix))


def insert_unnested_sql(
    table: Table,
    columns: Sequence[Column[object]],
    constants: Iterable[Column[object]] = (),
    tail: str = "",
    prefix: str = "",
) -> str:
    """`insert_unnested`'s SQL, to build a larger statement with."""
    fixed = list(constants)
    names = ", ".join(c.name for c in (*fixed, *columns))
    values = [*(f":{prefix}{c.name}" for c in fixed), *(f"rows.{c.name}" for c in columns)]
    rows = unnested(columns, prefix=prefix)
    return f"INSERT INTO {table.name} ({names}) SELECT {', '.join(values)} FROM {rows} {tail}"
