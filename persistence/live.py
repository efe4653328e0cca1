"""The figures a change's events carry, read or written in the change's own transaction:
per-period use counters (kept by ingestion), balances, and the agency's live totals."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import ARRAY, bindparam, func, select, text, tuple_
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.agency import Agency, SubAccount
from domain.billing_cycle import period_start
from domain.live import AgencyTotals, PeriodUse, UsageSnapshot
from persistence import prepared
from persistence.arrays import insert_unnested_sql
from persistence.ledger import balance_t
from persistence.prepared import Prepared
from persistence.queries.loaders import balances_by_sub_account, balances_from
from persistence.records import sub_account_t
from persistence.tables import AgencyUsagePeriodRow, UsagePeriodRow

usage_period_t = UsagePeriodRow.__table__
agency_period_t = AgencyUsagePeriodRow.__table__

# One statement adds to the sub-accounts' and the agency's counters and returns the new totals:
# the figures the events carry, as of this transaction, in the statement that writes them.
# The agency's rows come back with no sub-account; their parameters are named `agency_…`.
# (`persistence.usage.add_use` puts these CTEs after the rollups' in one statement.)
ADD_USE_CTES_PG = (
    "agency AS ("
    + insert_unnested_sql(
        agency_period_t,
        (agency_period_t.c.period_start, agency_period_t.c.seconds),
        constants=(agency_period_t.c.agency_id,),
        tail="ON CONFLICT (agency_id, period_start) DO UPDATE SET"
        f" seconds = {agency_period_t.name}.seconds + excluded.seconds"
        " RETURNING period_start, seconds",
        prefix="agency_",
    )
    + "), sub_accounts AS ("
    + insert_unnested_sql(
        usage_period_t,
        [c for c in usage_period_t.columns if c.name != "agency_id"],
        constants=(usage_period_t.c.agency_id,),
        tail="ON CONFLICT (sub_account_id, period_start) DO UPDATE SET"
        f" seconds = {usage_period_t.name}.seconds + excluded.seconds,"
        f" spent_micros = {usage_period_t.name}.spent_micros + excluded.spent_micros"
        " RETURNING sub_account_id, period_start, seconds, spent_micros",
    )
    + ")"
)
ADD_USE_SELECT_PG = (
    " SELECT sub_account_id, period_start, seconds, spent_micros FROM sub_accounts"
    " UNION ALL SELECT NULL, period_start, seconds, NULL FROM agency"
)
_ADD_USE_PG = text(f"WITH {ADD_USE_CTES_PG}{ADD_USE_SELECT_PG}")

Totals = dict[tuple[UUID, date], tuple[int, int]]
CurrentUse = tuple[dict[UUID, tuple[int, int]], int]


async def add_period_use(conn: AsyncConnection, agency_id: UUID, use: PeriodUse) -> CurrentUse:
    """Add a batch's use; returns each touched sub-account's current-period (seconds, spent)
    and the agency's seconds in its current plan period. Rows are written in key order (the
    balance rows a batch locked first already keep two batches off the same sub-account's
    rows; the agency's rows, in period order, are the only ones batches share)."""
    if conn.dialect.name == "postgresql":
        rows = await conn.execute(_ADD_USE_PG, add_use_params(agency_id, use))
        return current_use(use, rows)
    totals = await _add_sub_account_use_sqlite(conn, agency_id, use)
    agency_totals = {
        first_day: await _add_agency_use(conn, agency_id, first_day, use.agency[first_day])
        for first_day in sorted(use.agency)
    }
    return _current(use, totals, agency_totals)


def add_use_params(agency_id: UUID, use: PeriodUse) -> dict[str, Any]:
    """`ADD_USE_CTES_PG`'s parameters."""
    keys, periods = sorted(use.sub_accounts), sorted(use.agency)
    return {
        "agency_id": agency_id,
        "sub_account_id": [k[0] for k in keys],
        "period_start": [k[1] for k in keys],
        "seconds": [use.sub_accounts[k][0] for k in keys],
        "spent_micros": [use.sub_accounts[k][1] for k in keys],
        "agency_agency_id": agency_id,
        "agency_period_start": periods,
        "agency_seconds": [use.agency[p] for p in periods],
    }


def current_use(use: PeriodUse, rows: Iterable[Any]) -> CurrentUse:
    """`add_period_use`'s answer from the rows of `ADD_USE_SELECT_PG`."""
    totals: Totals = {}
    agency_totals: dict[date, int] = {}
    for sub_account_id, first_day, seconds, spent in rows:
        if sub_account_id is None:
            agency_totals[first_day] = int(seconds)
        else:
            totals[sub_account_id, first_day] = (int(seconds), int(spent))
    return _current(use, totals, agency_totals)


def _current(use: PeriodUse, totals: Totals, agency_totals: dict[date, int]) -> CurrentUse:
    current = {key: totals[key, first_day] for key, first_day in use.current.items()}
    return current, agency_totals[use.agency_current]


async def _add_sub_account_use_sqlite(
    conn: AsyncConnection, agency_id: UUID, use: PeriodUse
) -> Totals:
    insert = sqlite.insert(usage_period_t).values(
        [
            {
                "sub_account_id": k[0],
                "period_start": k[1],
                "agency_id": agency_id,
                "seconds": use.sub_accounts[k][0],
                "spent_micros": use.sub_accounts[k][1],
            }
            for k in sorted(use.sub_accounts)
        ]
    )
    rows = await conn.execute(
        insert.on_conflict_do_update(
            index_elements=["sub_account_id", "period_start"],
            set_={
                "seconds": usage_period_t.c.seconds + insert.excluded.seconds,
                "spent_micros": usage_period_t.c.spent_micros + insert.excluded.spent_micros,
            },
        ).returning(
            usage_period_t.c.sub_account_id,
            usage_period_t.c.period_start,
            usage_period_t.c.seconds,
            usage_period_t.c.spent_micros,
        )
    )
    return {(r[0], r[1]): (int(r[2]), int(r[3])) for r in rows}


# One row per agency and plan period; text, so it is prepared once (the dialects' insert with
# ON CONFLICT has no cache key and would be compiled for every batch: persistence/arrays.py).
_ADD_AGENCY_USE = text(
    f"INSERT INTO {agency_period_t.name} (agency_id, period_start, seconds)"
    " VALUES (:agency_id, :period_start, :seconds)"
    " ON CONFLICT (agency_id, period_start) DO UPDATE SET"
    f" seconds = {agency_period_t.name}.seconds + excluded.seconds"
    " RETURNING seconds"
).bindparams(
    bindparam("agency_id", type_=agency_period_t.c.agency_id.type),
    bindparam("period_start", type_=agency_period_t.c.period_start.type),
)


async def _add_agency_use(
    conn: AsyncConnection, agency_id: UUID, first_day: date, seconds: int
) -> int:
    total = await conn.scalar(
        _ADD_AGENCY_USE, {"agency_id": agency_id, "period_start": first_day, "seconds": seconds}
    )
    return int(total or 0)


async def active_sub_accounts(conn: AsyncConnection, agency_id: UUID) -> int:
    total = await conn.scalar(
        select(func.count())
        .select_from(sub_account_t)
        .where(sub_account_t.c.agency_id == agency_id, sub_account_t.c.status == "ACTIVE")
    )
    return int(total or 0)


async def agency_totals(conn: AsyncConnection, agency: Agency, now: datetime) -> AgencyTotals:
    """The agency's live totals read (not written) in a transaction."""
    today = now.astimezone(ZoneInfo(agency.time_zone)).date()
    seconds = await conn.scalar(
        select(agency_period_t.c.seconds).where(
            agency_period_t.c.agency_id == agency.id,
            agency_period_t.c.period_start == period_start(agency.plan_started_on, today),
        )
    )
    return AgencyTotals(int(seconds or 0), await active_sub_accounts(conn, agency.id))


_PERIOD_USE_COLUMNS = (
    usage_period_t.c.sub_account_id,
    usage_period_t.c.seconds.label("used_seconds"),
    usage_period_t.c.spent_micros,
)
_PERIOD_KEY = tuple_(usage_period_t.c.sub_account_id, usage_period_t.c.period_start)
# PostgreSQL: the (sub-account, period) pairs as two arrays, one statement whatever their
# number (persistence/prepared.py).
_PERIOD_USE = Prepared(
    select(*_PERIOD_USE_COLUMNS).where(
        _PERIOD_KEY.in_(
            select(
                func.unnest(bindparam("ids", type_=ARRAY(usage_period_t.c.sub_account_id.type))),
                func.unnest(bindparam("starts", type_=ARRAY(usage_period_t.c.period_start.type))),
            )
        )
    )
)


def _period_starts(
    sub_accounts: Sequence[SubAccount], zone: str, now: datetime
) -> dict[UUID, date]:
    """The first day of each sub-account's billing period under way where the agency is."""
    today = now.astimezone(ZoneInfo(zone)).date()
    return {s.id: period_start(s.subscription_start_date, today) for s in sub_accounts}


def _period_use(rows: Iterable[Any]) -> dict[UUID, tuple[int, int]]:
    """Seconds and spending by sub-account, from rows of `sub_account_id`, `used_seconds` and
    `spent_micros` (a row without use, from an outer join, adds none)."""
    return {
        row.sub_account_id: (int(row.used_seconds), int(row.spent_micros))
        for row in rows
        if row.used_seconds is not None
    }


async def this_period_use(
    conn: AsyncConnection, sub_accounts: Sequence[SubAccount], zone: str, now: datetime
) -> dict[UUID, tuple[int, int]]:
    """Seconds and spending (micro-dollars) of each sub-account in its billing period under
    way where the agency (`zone`) is; absent: nothing used yet."""
    current = _period_starts(sub_accounts, zone, now)
    if not current:
        return {}
    if conn.dialect.name == "postgresql":
        params = {"ids": list(current), "starts": list(current.values())}
        rows: Iterable[Any] = await prepared.fetch(conn, _PERIOD_USE, params)
    else:
        rows = await conn.execute(
            select(*_PERIOD_USE_COLUMNS).where(_PERIOD_KEY.in_(list(current.items())))
        )
    return _period_use(rows)


# PostgreSQL: the balances and this period's use of the accounts a change moved, in one
# statement after the change (the two reads of the SQLite path, joined on the account).
_SNAPSHOTS_PG = Prepared(
    text(
        "SELECT p.id AS sub_account_id, b.tier, b.seconds, u.seconds AS used_seconds,"
        " u.spent_micros"
        " FROM unnest(CAST(:ids AS UUID[]), CAST(:starts AS DATE[])) AS p(id, start)"
        f" LEFT JOIN {balance_t.name} b ON b.sub_account_id = p.id"
        f" LEFT JOIN {usage_period_t.name} u"
        " ON u.sub_account_id = p.id AND u.period_start = p.start"
    )
)


async def usage_snapshots(
    conn: AsyncConnection, sub_accounts: Sequence[SubAccount], zone: str, now: datetime
) -> list[UsageSnapshot]:
    """Balances and this period's use of sub-accounts whose minutes a change moved (not by
    calls): read after the change, in its transaction, whose locks keep them exact."""
    ids = [s.id for s in sub_accounts]
    if conn.dialect.name != "postgresql" or not sub_accounts:
        used = await this_period_use(conn, sub_accounts, zone, now)
        balances = await balances_by_sub_account(conn, ids)
    else:
        starts = list(_period_starts(sub_accounts, zone, now).values())
        rows = await prepared.fetch(conn, _SNAPSHOTS_PG, {"ids": ids, "starts": starts})
        used, balances = _period_use(rows), balances_from(rows, ids)
    snapshots = []
    for sub_account, tiers in zip(sub_accounts, balances, strict=True):
        seconds, spent = used.get(sub_account.id, (0, 0))
        snapshots.append(UsageSnapshot(sub_account, tuple(tiers), spent, seconds))
    return snapshots
