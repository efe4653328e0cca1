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

from domain.money import Tier
from domain.usage import CallChannel, CallCharge, CallDirection, CallStatus, ReportedCall
from persistence import agencies, usage
from tests.persistence.test_unit_of_work import new_account

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
                return await usage.insert_new_calls(conn, agency_id, calls, charged(calls), now())
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
            new = await usage.insert_new_calls(conn, agency_id, calls, charged(calls), now())

    # then its foreign-key checks (KEY SHARE) did not wait for the holder's locks
    assert new == {"during"}
