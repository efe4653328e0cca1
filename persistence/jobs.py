"""Storage for the periodic jobs: one runner at a time, plan grants done per period, and
purging removed accounts."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.money import Tier
from persistence.activities import activity_t
from persistence.database import Database
from persistence.queries.sub_accounts import auto_allocation_t
from persistence.records import agency_t, sub_account_t
from persistence.tables import InvitationGrantRow, PlanGrantRow, UserGrantRow

plan_grant_t = PlanGrantRow.__table__
_JOB_LOCKS = 0x0A6E_1000  # + a number per job name; the relay's lock is another constant


@asynccontextmanager
async def sole_runner(database: Database, job: str) -> AsyncIterator[bool]:
    """True while this process is the one running `job` in the deployment (a PostgreSQL
    advisory lock, held on its own connection for the run); false when another holds it.
    SQLite serves one process: always true. What a job does is safe to repeat anyway (its
    rows' unique keys and guarded updates); the lock only keeps runners from doubling up."""
    if database.is_sqlite:
        yield True
        return
    key = _JOB_LOCKS + zlib.crc32(job.encode()) % 4096
    async with database.read() as conn:
        try:
            held = bool(await conn.scalar(select(func.pg_try_advisory_lock(key))))
            try:
                yield held
            finally:
                if held:
                    await conn.scalar(select(func.pg_advisory_unlock(key)))
        except BaseException:
            # The lock must not go back to the pool with the connection: closing releases it.
            await conn.invalidate()
            raise


@dataclass(frozen=True)
class GrantTerms:
    agency_id: uuid.UUID
    primary_id: uuid.UUID
    plan_name: str
    plan_started_on: date
    included_monthly_minutes: int
    included_tier: Tier
    time_zone: str  # periods begin at local midnight there


async def grant_terms(conn: AsyncConnection) -> list[GrantTerms]:
    rows = await conn.execute(
        select(
            agency_t.c.id,
            sub_account_t.c.id.label("primary_id"),
            agency_t.c.plan_name,
            agency_t.c.plan_started_on,
            agency_t.c.included_monthly_minutes,
            agency_t.c.included_tier,
            agency_t.c.time_zone,
        )
        .select_from(
            agency_t.join(
                sub_account_t,
                (sub_account_t.c.agency_id == agency_t.c.id) & (sub_account_t.c.kind == "PRIMARY"),
            )
        )
        .where(agency_t.c.included_monthly_minutes > 0)
    )
    return [
        GrantTerms(
            r.id,
            r.primary_id,
            r.plan_name,
            r.plan_started_on,
            r.included_monthly_minutes,
            Tier(r.included_tier),
            r.time_zone,
        )
        for r in rows
    ]


async def granted_periods(conn: AsyncConnection, agency_id: uuid.UUID) -> set[date]:
    rows = await conn.scalars(
        select(plan_grant_t.c.period_start).where(plan_grant_t.c.agency_id == agency_id)
    )
    return set(rows.all())


async def record_grant(
    conn: AsyncConnection, agency_id: uuid.UUID, period_start: date, now: datetime
) -> None:
    """The primary key (agency, period) makes a second grant of one period impossible."""
    await conn.execute(
        insert(plan_grant_t).values(agency_id=agency_id, period_start=period_start, created_at=now)
    )


async def removed_before(conn: AsyncConnection, cutoff: datetime) -> list[uuid.UUID]:
    rows = await conn.scalars(
        select(sub_account_t.c.id).where(
            sub_account_t.c.status == "REMOVED",
            sub_account_t.c.removed_at < cutoff,
            sub_account_t.c.purged_at.is_(None),
        )
    )
    return list(rows.all())


async def purge(conn: AsyncConnection, sub_account_id: uuid.UUID, now: datetime) -> None:
    """Drop what the account held; keep a tombstone row so ledger history stays whole."""
    for table in (activity_t, auto_allocation_t):
        await conn.execute(delete(table).where(table.c.sub_account_id == sub_account_id))
    for grant in (UserGrantRow.__table__, InvitationGrantRow.__table__):
        await conn.execute(delete(grant).where(grant.c.sub_account_id == sub_account_id))
    await conn.execute(
        update(sub_account_t)
        .where(sub_account_t.c.id == sub_account_id)
        .values(
            name="Removed sub-account",
            login_email=f"purged-{sub_account_id}@purged.invalid",
            purged_at=now,
        )
    )
