"""Plans that stay bounded whatever PostgreSQL believes about a table.

A `Prepared` statement runs as a prepared statement on its connection, and after a few runs
PostgreSQL may keep one generic plan for it, made from the statistics of that moment: on a
fresh installation, or with autovacuum late, tables that look empty. These tests make the
generic plan from statistics of a near-empty table, fill the table, and check that the
statement still reads only the rows it changes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence import usage
from persistence.prepared import Prepared
from tests.persistence.test_lock_order import charged, new_account, now, reported

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def scanned(plan: dict[str, Any]) -> int:
    """The most rows any node of `plan` read: those it returned and those its filter threw
    away."""
    own = plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)
    return max([own, *(scanned(child) for child in plan.get("Plans", []))])


def literal(value: Any) -> str:
    """`value` as an untyped SQL literal (PostgreSQL's array form for a list)."""
    if value is None:
        return "NULL"
    if isinstance(value, list):
        items = ("NULL" if v is None else '"' + _text(v).replace('"', '\\"') + '"' for v in value)
        value = "{" + ",".join(items) + "}"
    return "'" + _text(value).replace("'", "''") + "'"


def _text(value: Any) -> str:
    if isinstance(value, tuple):  # a row address (tid)
        return f"({value[0]},{value[1]})"
    return value.isoformat() if isinstance(value, datetime) else str(value)


async def generic_plan(
    conn: AsyncConnection, statement: Prepared, params: dict[str, Any]
) -> dict[str, Any]:
    """`statement` run with `params` on the generic plan PostgreSQL makes for it now, and
    that plan with what each node read (EXPLAIN ANALYZE: the statement's changes are made)."""
    compiled = statement.compiled(conn.dialect)
    arguments = ", ".join(literal(a) for a in compiled.arguments(params))
    await conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
    await conn.exec_driver_sql(f"PREPARE planned AS {compiled.sql}")
    try:
        explained = await conn.exec_driver_sql(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE planned({arguments})"
        )
        [[plan]] = [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in explained]
    finally:
        await conn.exec_driver_sql("DEALLOCATE planned")
    return plan["Plan"]


async def test_the_overage_of_a_group_reads_only_its_short_calls_under_a_generic_plan(database):
    # given the statistics of an empty call table, and then 2,000 calls of one agency
    agency_id, account_id = await new_account(database)
    async with database.transaction() as conn:
        await conn.execute(text("ANALYZE call"))
    async with database.transaction() as conn:
        earlier = [reported(account_id, f"earlier-{n:04}") for n in range(2000)]
        await usage.insert_new_calls(conn, agency_id, earlier, charged(earlier), now(), {})

    async with database.transaction() as conn:
        # when a group inserts three calls and sets the overage of two, on a generic plan
        calls = [reported(account_id, f"new-{n}") for n in range(3)]
        new = await usage.insert_new_calls(conn, agency_id, calls, charged(calls), now(), {})
        short = {"new-0": 12, "new-2": 7}
        overage = Prepared(text(usage._SET_OVERAGE_PG))
        params = {
            "short_at": [new[e] for e in short],
            "short_overage_seconds": [*short.values()],
        }
        plan = await generic_plan(conn, overage, params)

        # then it read the two short calls' rows, not the agency's 2,003
        assert scanned(plan) <= len(short), json.dumps(plan, indent=1)
        stored = await conn.execute(
            text("SELECT external_id, overage_seconds FROM call WHERE external_id LIKE 'new-%'")
        )
        assert dict(stored.all()) == {"new-0": 12, "new-1": 0, "new-2": 7}
