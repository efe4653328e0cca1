"""Units of work commit whole or not at all, and concurrent writers queue instead of failing."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from domain.agency import SubAccountKind, sign_up
from domain.errors import DomainError, ErrorCode
from domain.ledger import LedgerKind, Movement
from domain.money import Tier
from domain.plans import plan_named
from persistence import agencies, ledger
from persistence.tables import AgencyRow
from persistence.unit_of_work import UnitOfWork

now = lambda: datetime.now(UTC)


async def new_account(database):
    signup = sign_up(
        "Ledger Co", f"{uuid.uuid4().hex}@x.example", "correct-horse-battery", None, now()
    )
    async with UnitOfWork(database, now) as uow:
        agency = await agencies.add_agency(uow.conn, signup, now())
        account = await agencies.add_sub_account(
            uow.conn,
            agency.id,
            SubAccountKind.PRIMARY,
            "P",
            signup.owner_email,
            now().date(),
            0,
            now(),
        )
    return agency.id, account.id


def grant(agency_id, account_id, seconds, ref="t"):
    return Movement(agency_id, account_id, Tier.BASIC, seconds, LedgerKind.PLAN_GRANT, ref)


async def test_a_failed_unit_of_work_leaves_nothing_behind(database):
    with pytest.raises(RuntimeError):
        async with UnitOfWork(database, now) as uow:
            await agencies.add_agency(
                uow.conn,
                sign_up("Half", "half@x.example", "correct-horse-battery", None, now()),
                now(),
            )
            raise RuntimeError("crash after the first insert")
    async with database.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(AgencyRow.__table__)) == 0


async def test_a_debit_beyond_the_balance_is_refused_and_changes_nothing(database):
    agency_id, account_id = await new_account(database)
    async with UnitOfWork(database, now) as uow:
        await ledger.apply(uow.conn, [grant(agency_id, account_id, 100)], now())
    with pytest.raises(DomainError) as refused:
        async with UnitOfWork(database, now) as uow:
            await ledger.apply(uow.conn, [grant(agency_id, account_id, -101)], now())
    assert refused.value.code is ErrorCode.INSUFFICIENT_MINUTES
    async with database.read() as conn:
        assert await ledger.mismatches(conn) == []


async def test_concurrent_writers_queue_and_every_entry_lands(database):
    # on SQLite this is BEGIN IMMEDIATE + busy timeout; on PostgreSQL row locks
    agency_id, account_id = await new_account(database)

    async def credit(n):
        async with UnitOfWork(database, now) as uow:
            await ledger.apply(uow.conn, [grant(agency_id, account_id, n, f"c{n}")], now())

    await asyncio.gather(*(credit(n) for n in range(1, 31)))
    async with database.read() as conn:
        assert await ledger.mismatches(conn) == []
        balance = await conn.scalar(
            select(ledger.balance_t.c.seconds).where(
                ledger.balance_t.c.sub_account_id == account_id,
                ledger.balance_t.c.tier == "BASIC",
            )
        )
    assert balance == sum(range(1, 31))


def test_plan_catalogue_is_what_sign_up_uses():
    assert plan_named("Partner").included_tier is Tier.BASIC
