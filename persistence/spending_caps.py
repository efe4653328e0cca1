"""Spending caps, and the checks ingestion asks the cap job for.

Ingestion never takes a sub-account's row (lock order, docs/ARCHITECTURE.md), and pausing a
sub-account's campaigns needs it: so a batch whose spending reached a cap writes a
`cap_check` row (ON CONFLICT DO NOTHING) and the cap job does the pausing under the lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.agency import SubAccount
from persistence.database import dialect_insert
from persistence.records import SUB_ACCOUNT_COLUMNS, agency_t, sub_account_from, sub_account_t
from persistence.tables import CapCheckRow, SpendingCapRow

JOB = "apply-spending-caps"  # the job that caps and lifts (woken by ingestion's checks)

cap_t = SpendingCapRow.__table__
check_t = CapCheckRow.__table__


async def caps_of(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> list[int | None]:
    rows = await conn.execute(
        select(cap_t.c.sub_account_id, cap_t.c.amount_micros).where(cap_t.c.sub_account_id.in_(ids))
    )
    found = {r.sub_account_id: int(r.amount_micros) for r in rows}
    return [found.get(i) for i in ids]


async def save_cap(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    sub_account_id: uuid.UUID,
    amount_micros: int | None,
    now: datetime,
) -> None:
    """The cap, or none (`amount_micros` None)."""
    if amount_micros is None:
        await conn.execute(delete(cap_t).where(cap_t.c.sub_account_id == sub_account_id))
        return
    values = {"amount_micros": amount_micros, "updated_at": now}
    upsert = dialect_insert(conn, cap_t).values(
        sub_account_id=sub_account_id, agency_id=agency_id, **values
    )
    await conn.execute(upsert.on_conflict_do_update(index_elements=["sub_account_id"], set_=values))


async def request_checks(
    conn: AsyncConnection, agency_id: uuid.UUID, ids: Sequence[uuid.UUID], now: datetime
) -> None:
    """In ingestion's transaction: these sub-accounts' spending reached their caps."""
    rows = [{"sub_account_id": i, "agency_id": agency_id, "requested_at": now} for i in ids]
    await conn.execute(dialect_insert(conn, check_t).values(rows).on_conflict_do_nothing())


async def checks(conn: AsyncConnection) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(agency, sub-account) of every check asked for."""
    rows = await conn.execute(select(check_t.c.agency_id, check_t.c.sub_account_id))
    return [(r.agency_id, r.sub_account_id) for r in rows]


async def close_check(conn: AsyncConnection, sub_account_id: uuid.UUID) -> None:
    await conn.execute(delete(check_t).where(check_t.c.sub_account_id == sub_account_id))


async def capped(conn: AsyncConnection) -> list[tuple[SubAccount, str]]:
    """Live sub-accounts held by their cap now (a new billing period may have freed them),
    each with its agency's time zone."""
    rows = await conn.execute(
        select(*SUB_ACCOUNT_COLUMNS, agency_t.c.time_zone)
        .join(agency_t, agency_t.c.id == sub_account_t.c.agency_id)
        .where(
            sub_account_t.c.capped_at.is_not(None),
            sub_account_t.c.status.in_(["ACTIVE", "SUSPENDED"]),
        )
    )
    return [(sub_account_from(r), r.time_zone) for r in rows]
