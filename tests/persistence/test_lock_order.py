"""Lock order on PostgreSQL, one statement at a time: what could wait in a cycle does not.

Each test runs two transactions on two connections at once, outside any retrying unit of
work, so a deadlock the server breaks (SQLSTATE 40P01) or a wait would show.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from domain.agency import SubAccountKind
from domain.ledger import LedgerKind, Movement
from domain.money import Tier
from domain.usage import CallChannel, CallCharge, CallDirection, CallStatus, ReportedCall
from persistence import agencies, ledger, usage
from tests.persistence.test_unit_of_work import grant, new_account

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
now = lambda: datetime.now(UTC)


def reported(sub_account_id: uuid.UUID, external_id: str) -> ReportedCall:
    return ReportedCall(
        external_id,
        sub_account_id,
        CallDirection.OUTBOUND,
        CallChannel.PHONE,
        CallStatus.COMPLETED,
        Tier.BASIC,
        now() - timedelta(minutes=5),
        30,
    )


def charged(calls: list[ReportedCall]) -> dict[str, CallCharge]:
    return {c.external_id: CallCharge(c.sub_account_id, 100, 80) for c in calls}  # type: ignore[arg-type]


async def test_batches_resending_the_same_calls_in_opposite_orders_never_deadlock(database):
    # given batches of calls, each sent a second time in the opposite order
    agency_id, account_id = await new_account(database)
    deadlocked = 0

    async def insert(calls: list[ReportedCall]) -> set[str]:
        nonlocal deadlocked
        try:
            async with database.transaction() as conn:
                new = await usage.insert_new_calls(
                    conn, agency_id, calls, charged(calls), now(), {}
                )
                return set(new)
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) != "40P01":
                raise
            deadlocked += 1
            return set()

    # when both copies of each batch are inserted at once
    inserted: list[set[str]] = []
    for round_ in range(8):
        calls = [reported(account_id, f"r{round_}-{n:04}") for n in range(400)]
        inserted += await asyncio.gather(insert(calls), insert(calls[::-1]))

    # then each call went in once, the other copy waited for it and found a duplicate
    assert deadlocked == 0
    for first, second in zip(inserted[::2], inserted[1::2], strict=True):
        assert not first & second and len(first | second) == 400


async def test_locked_agency_and_sub_accounts_let_the_foreign_key_checks_of_inserts_through(
    database,
):
    # given a transfer-like transaction holding the agency and sub-account rows
    agency_id, account_id = await new_account(database)
    async with database.transaction() as holder:
        await agencies.agency_for_update(holder, agency_id)
        await agencies.sub_accounts_for_update(holder, agency_id, [account_id])

        # when a batch of calls referencing both rows is inserted meanwhile
        async with database.transaction() as conn:
            await conn.execute(text("SET LOCAL lock_timeout = '2s'"))
            calls = [reported(account_id, "during")]
            new = await usage.insert_new_calls(conn, agency_id, calls, charged(calls), now(), {})

    # then its foreign-key checks (KEY SHARE) did not wait for the holder's locks
    assert set(new) == {"during"}


async def test_moving_minutes_takes_balance_rows_in_order_whatever_the_movements_order(database):
    # given two accounts with minutes, A before B in (sub-account, tier) order
    agency_id, first = await new_account(database)
    async with database.transaction() as conn:
        second = (
            await agencies.add_sub_account(
                conn,
                agency_id,
                SubAccountKind.SECONDARY,
                "S",
                "s@x.example",
                now().date(),
                0,
                now(),
            )
        ).id
        await ledger.apply(
            conn, [grant(agency_id, first, 600), grant(agency_id, second, 600)], now()
        )
    a, b = sorted((first, second))
    moves = [
        Movement(agency_id, b, Tier.BASIC, 60, LedgerKind.TRANSFER_IN, "x"),
        Movement(agency_id, a, Tier.BASIC, -60, LedgerKind.TRANSFER_OUT, "x"),
    ]
    lock = text("SELECT 1 FROM balance WHERE sub_account_id = :id AND tier = 'BASIC' FOR UPDATE")

    # when another transaction, locking in the same order, holds A while the movements
    # (given B first) start, and then takes B
    async with database.transaction() as holder:
        await holder.execute(lock, {"id": a})

        async def move() -> None:
            async with database.transaction() as conn:
                await ledger.apply(conn, moves, now())

        moving = asyncio.create_task(move())
        await asyncio.sleep(0.3)  # the movements wait for A
        await holder.execute(text("SET LOCAL lock_timeout = '2s'"))
        await holder.execute(lock, {"id": b})

    # then the movements waited for A holding nothing (B was free for the holder), and went on
    await moving
    async with database.read() as conn:
        seconds = dict(
            (
                await conn.execute(
                    text(
                        "SELECT sub_account_id, seconds FROM balance"
                        " WHERE tier = 'BASIC' AND sub_account_id IN (:a, :b)"
                    ),
                    {"a": a, "b": b},
                )
            ).all()
        )
    assert seconds == {a: 540, b: 660}


async def lock_waits(database, statement, params) -> bool:
    """Whether `statement` waits for a lock someone else holds (tried for 0.3 s)."""
    async with database.transaction() as conn:
        await conn.execute(text("SET LOCAL lock_timeout = '300ms'"))
        try:
            await conn.execute(statement, params)
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) != "55P03":
                raise
            return True
    return False


async def test_a_transfers_shared_sub_account_locks_let_transfers_through_but_not_changes(
    database,
):
    # given a transaction holding a sub-account as a transfer does (shared)
    agency_id, account_id = await new_account(database)
    row = "SELECT 1 FROM sub_account WHERE id = :id "
    async with database.transaction() as holder:
        await agencies.sub_accounts_for_update(holder, agency_id, [account_id], share=True)

        # then another transfer takes it too, and a change of the row waits
        assert not await lock_waits(database, text(row + "FOR SHARE"), {"id": account_id})
        assert await lock_waits(database, text(row + "FOR NO KEY UPDATE"), {"id": account_id})

    # and a change's lock holds off a transfer's
    async with database.transaction() as holder:
        await agencies.sub_accounts_for_update(holder, agency_id, [account_id])
        assert await lock_waits(database, text(row + "FOR SHARE"), {"id": account_id})


async def test_moving_one_tier_holds_every_tier_of_the_accounts_until_the_commit(database):
    # given minutes on the BASIC tier
    agency_id, account_id = await new_account(database)
    async with database.transaction() as conn:
        await ledger.apply(conn, [grant(agency_id, account_id, 600)], now())
    balance = "SELECT 1 FROM balance WHERE sub_account_id = :id AND tier = :tier FOR NO KEY UPDATE"

    # when a transaction moves BASIC minutes and has not committed yet
    async with database.transaction() as conn:
        await ledger.apply(conn, [grant(agency_id, account_id, -60)], now())

        # then the PREMIUM balance it read nothing of is held too: its figures stay exact
        for tier in Tier:
            params = {"id": account_id, "tier": tier.value}
            assert await lock_waits(database, text(balance), params), tier
