"""Many concurrent transfers among a few accounts, in both directions: nothing overdraws,
nothing deadlocks into an error a client sees, no second is lost or made up."""

from __future__ import annotations

import asyncio
import random
from fractions import Fraction

from sqlalchemy import select

from domain.money import Tier
from domain.pricing import client_price_per_minute
from persistence.ledger import balance_t, mismatches
from persistence.records import sub_account_t
from tests.api.test_account_manager import TRANSFER, new_client, transfer_input
from tests.factories import gql, make_agency


async def total_value(database, prices) -> Fraction:
    """Every account's seconds at its own client price: what transfers must never grow."""
    async with database.read() as conn:
        rows = await conn.execute(
            select(
                balance_t.c.tier,
                balance_t.c.seconds,
                sub_account_t.c.markup_basic_bp,
                sub_account_t.c.markup_premium_bp,
            ).join(sub_account_t, sub_account_t.c.id == balance_t.c.sub_account_id)
        )
        total = Fraction(0)
        for tier, seconds, basic_bp, premium_bp in rows:
            assert seconds >= 0
            markup = basic_bp if tier == "BASIC" else premium_bp
            total += seconds * client_price_per_minute(prices.base_per_minute(Tier(tier)), markup)
        return total


async def test_concurrent_transfers_never_overdraw_deadlock_or_create_value(app_client, database):
    owner = await make_agency(app_client, plan="Agency Unlimited")  # 2,000 PREMIUM minutes
    accounts = [owner.primary_id] + [
        await new_client(app_client, owner, f"Client {n}", markup=markup)
        for n, markup in enumerate(("0", "12.5", "40"))
    ]
    for client in accounts[1:]:  # seed each client from the primary
        await gql(
            app_client, TRANSFER, transfer_input(owner.primary_id, client, "300"), owner.token
        )
    prices = app_client.app.state.services.prices
    before = await total_value(database, prices)
    rng = random.Random(7)

    async def one() -> dict:
        source, destination = rng.sample(accounts, 2)  # every direction, so lock order matters
        minutes = str(rng.choice((1, 7, 30, 120, 400)))
        return await gql(
            app_client, TRANSFER, transfer_input(source, destination, minutes), owner.token
        )

    results = await asyncio.gather(*(one() for _ in range(240)))
    errors = [r for r in results if "errors" in r]
    assert errors == []  # no deadlock or serialization failure ever reached a client
    codes = {e["code"] for r in results for e in r["data"]["transferMinutes"]["userErrors"]}
    assert codes <= {"INSUFFICIENT_MINUTES"}
    moved = [r for r in results if r["data"]["transferMinutes"]["transfer"]]
    assert len(moved) > 100
    after = await total_value(database, prices)
    assert after <= before  # value never grew (it shrinks by the rounding of each transfer)
    assert before - after < len(moved) * max(
        client_price_per_minute(prices.base_per_minute(Tier.PREMIUM), 4000), 1
    )
    async with database.read() as conn:
        assert await mismatches(conn) == []
