"""The monthly auto allocation charge against a real Stripe-compatible server (localstripe):
one purchase per (sub-account, period, tier) at base cost on the primary's default card,
credited to the secondary once, whatever runs at once; failures retried after 1 h, 6 h and
24 h, then left FAILED and visible."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from persistence.tables import BalanceRow, PurchaseRow
from resolvers import auto_allocations, jobs
from resolvers.global_id import from_global_id
from resolvers.reconciliation import reconcile
from tests.api.test_account_manager import SUSPEND, new_client
from tests.api.test_buy_minutes import (
    Crash,
    Interposed,
    assert_ledger_balanced,
    credits_of,
    post_webhook,
)
from tests.api.test_payment_cards import SET_DEFAULT, add_card, customer_of, saved_card
from tests.factories import gql, make_agency
from tests.payment_provider import CARD_DECLINED_AT_CHARGE

ALLOCATE = """mutation($i: SetAutoAllocationInput!) { setAutoAllocation(input: $i) {
  subAccount { autoAllocation { enabled nextChargeDate } } userErrors { code field } } }"""
ALLOCATION = """query($id: ID!) { node(id: $id) { ... on SubAccount {
  subscriptionStartDate balances { tier seconds }
  autoAllocation { enabled basicMinutes premiumMinutes nextChargeDate
    lastCharge { id kind tier seconds status attempts failureReason amount { amount }
                 agencyProfit { amount } } } } } }"""

AUDIT = (
    """{ viewer { agency { auditLog(first: 10) { edges { node { kind email summary } } } } } }"""
)

purchase_t = PurchaseRow.__table__
balance_t = BalanceRow.__table__


async def allocate(client, token, sub_account_id, basic=0, premium=0, enabled=True):
    variables = {
        "i": {
            "subAccountId": sub_account_id,
            "enabled": enabled,
            "basicMinutes": basic,
            "premiumMinutes": premium,
        }
    }
    return (await gql(client, ALLOCATE, variables, token))["data"]["setAutoAllocation"]


async def allocation_of(client, token, sub_account_id):
    return (await gql(client, ALLOCATION, {"id": sub_account_id}, token))["data"]["node"]


async def charges_of(client, sub_account_id) -> list[tuple[str, str, str, int]]:
    """(period, tier, status, attempts) of each auto allocation purchase, in period order."""
    key = from_global_id(sub_account_id)[1]
    async with client.app.state.services.database.read() as conn:
        rows = await conn.execute(
            select(
                purchase_t.c.period_start,
                purchase_t.c.tier,
                purchase_t.c.status,
                purchase_t.c.attempts,
            )
            .where(purchase_t.c.sub_account_id == key, purchase_t.c.kind == "AUTO_ALLOCATION")
            .order_by(purchase_t.c.period_start, purchase_t.c.tier)
        )
        return [(str(r[0]), r[1], r[2], r[3]) for r in rows]


async def purchase_rows(client, sub_account_id):
    key = from_global_id(sub_account_id)[1]
    async with client.app.state.services.database.read() as conn:
        rows = await conn.execute(
            select(purchase_t).where(purchase_t.c.sub_account_id == key).order_by(purchase_t.c.tier)
        )
        return list(rows)


async def stored_seconds(client, sub_account_id) -> dict[str, int]:
    """The balances as stored (a month on, the test's session has expired)."""
    key = from_global_id(sub_account_id)[1]
    async with client.app.state.services.database.read() as conn:
        rows = await conn.execute(
            select(balance_t.c.tier, balance_t.c.seconds).where(balance_t.c.sub_account_id == key)
        )
        return {r.tier: int(r.seconds) for r in rows}


async def intents_for(client, stripe_server, payer_id) -> list[dict]:
    customer = await customer_of(client, payer_id)
    return [] if customer is None else await stripe_server.intents_of(customer)


async def agency_with_allocation(client, stripe_server, basic=100, premium=50):
    """An agency whose primary has a card, and a client with an auto allocation on."""
    owner = await make_agency(client)
    await saved_card(client, owner.token, owner.primary_id, stripe_server)
    sub_account = await new_client(client, owner)
    payload = await allocate(client, owner.token, sub_account, basic, premium)
    assert payload["userErrors"] == [], payload
    return owner, sub_account


def seconds_of(node, tier) -> int:
    return {b["tier"]: b["seconds"] for b in node["balances"]}[tier]


async def test_each_period_is_charged_once_at_base_cost_on_the_primarys_card(
    app_client, stripe_server, clock
):
    # given a client with 100 BASIC and 50 PREMIUM minutes a month, turned on today, the
    # first day of its subscription (its first period)
    owner, client = await agency_with_allocation(app_client, stripe_server)
    before = await allocation_of(app_client, owner.token, client)
    assert before["autoAllocation"]["nextChargeDate"] == before["subscriptionStartDate"]
    assert before["autoAllocation"]["lastCharge"] is None
    services = app_client.app.state.services
    # when the job runs, twice
    assert await jobs.charge_auto_allocations(services) == 2
    assert await jobs.charge_auto_allocations(services) == 0
    # then this period is charged once per tier, at base cost ($18.00 and $15.00), no profit,
    # on the primary's card, and the minutes are the client's
    start = before["subscriptionStartDate"]
    assert await charges_of(app_client, client) == [
        (start, "BASIC", "SUCCEEDED", 1),
        (start, "PREMIUM", "SUCCEEDED", 1),
    ]
    intents = await intents_for(app_client, stripe_server, owner.primary_id)
    assert sorted((i["amount"], i["status"]) for i in intents) == [
        (1500, "succeeded"),
        (1800, "succeeded"),
    ]
    after = await allocation_of(app_client, owner.token, client)
    assert seconds_of(after, "BASIC") == 6000 and seconds_of(after, "PREMIUM") == 3000
    last = after["autoAllocation"]["lastCharge"]
    assert last["kind"] == "AUTO_ALLOCATION" and last["status"] == "SUCCEEDED"
    assert Decimal(last["agencyProfit"]["amount"]) == 0
    assert after["autoAllocation"]["nextChargeDate"] > start
    assert await credits_of(app_client, last["id"]) == [
        ("AUTO_ALLOCATION", 3000 if last["tier"] == "PREMIUM" else 6000)
    ]
    # and each charge is in the audit log, made by the job (no user)
    logged = (await gql(app_client, AUDIT, token=owner.token))["data"]["viewer"]["agency"]
    charged = [
        e["node"] for e in logged["auditLog"]["edges"] if e["node"]["kind"] == "MINUTES_PURCHASED"
    ]
    assert sorted(e["summary"] for e in charged) == [
        "charged $15.00 for the monthly auto allocation of 50 PREMIUM minutes to Client",
        "charged $18.00 for the monthly auto allocation of 100 BASIC minutes to Client",
    ]
    assert {e["email"] for e in charged} == {None}
    # and a month later the next period is charged, once
    clock.advance(timedelta(days=31))
    assert await jobs.charge_auto_allocations(services) == 2
    assert await jobs.charge_auto_allocations(services) == 0
    charges = await charges_of(app_client, client)
    assert [c[0] for c in charges] == [
        start,
        start,
        *[after["autoAllocation"]["nextChargeDate"]] * 2,
    ]
    assert len(await intents_for(app_client, stripe_server, owner.primary_id)) == 4
    assert await stored_seconds(app_client, client) == {"BASIC": 12000, "PREMIUM": 6000}
    await assert_ledger_balanced(app_client)


async def test_concurrent_runs_charge_a_period_once(app_client, stripe_server):
    # given a client whose period is due
    owner, client = await agency_with_allocation(app_client, stripe_server, basic=100, premium=0)
    services = app_client.app.state.services
    # when four runs go at once, past the job's own lock (as two servers' runners could)
    done = await asyncio.gather(
        *(auto_allocations.charge_auto_allocations(services) for _ in range(4))
    )
    # then one of them charged it: one purchase, one PaymentIntent, one credit
    assert sum(done) == 1
    assert len(await charges_of(app_client, client)) == 1
    assert len(await intents_for(app_client, stripe_server, owner.primary_id)) == 1
    node = await allocation_of(app_client, owner.token, client)
    assert seconds_of(node, "BASIC") == 6000
    await assert_ledger_balanced(app_client)


async def test_a_declined_charge_is_retried_after_1_6_and_24_hours_then_left_failed(
    app_client, stripe_server, clock
):
    # given a primary whose only card declines at charge
    owner = await make_agency(app_client)
    await add_card(
        app_client, owner.token, owner.primary_id, stripe_server, CARD_DECLINED_AT_CHARGE
    )
    client = await new_client(app_client, owner)
    await allocate(app_client, owner.token, client, basic=0, premium=50)
    services = app_client.app.state.services
    # when the job runs: the charge fails, is recorded and shown
    assert await jobs.charge_auto_allocations(services) == 0
    node = await allocation_of(app_client, owner.token, client)
    last = node["autoAllocation"]["lastCharge"]
    assert (last["status"], last["attempts"]) == ("FAILED", 1)
    assert last["failureReason"]
    assert seconds_of(node, "PREMIUM") == 0
    # then it is not retried before an hour, and is retried after it
    for wait, attempt in (
        (timedelta(hours=1), 2),
        (timedelta(hours=6), 3),
        (timedelta(hours=24), 4),
    ):
        clock.advance(wait - timedelta(minutes=1))
        assert await jobs.charge_auto_allocations(services) == 0
        assert (await charges_of(app_client, client))[0][3] == attempt - 1
        clock.advance(timedelta(minutes=1))
        assert await jobs.charge_auto_allocations(services) == 0
        assert (await charges_of(app_client, client))[0][2:] == ("FAILED", attempt)
    # and after the fourth attempt it stays FAILED, whatever runs later
    clock.advance(timedelta(days=2))
    await jobs.charge_auto_allocations(services)
    [(_, _, status, attempts)] = [
        c for c in await charges_of(app_client, client) if c[1] == "PREMIUM"
    ][:1]
    assert (status, attempts) == ("FAILED", 4)
    # each attempt reached Stripe once, under its own key; nothing was credited
    declined = await intents_for(app_client, stripe_server, owner.primary_id)
    assert sorted(i["metadata"]["attempt"] for i in declined) == ["1", "2", "3", "4"]
    await assert_ledger_balanced(app_client)


async def test_a_failed_charge_succeeds_on_retry_with_the_card_of_then(
    app_client, stripe_server, clock
):
    # given a primary with no card at all: the charge fails ("no card")
    owner = await make_agency(app_client)
    client = await new_client(app_client, owner)
    await allocate(app_client, owner.token, client, basic=100, premium=0)
    services = app_client.app.state.services
    assert await jobs.charge_auto_allocations(services) == 0
    [(period, _, status, attempts)] = await charges_of(app_client, client)
    assert (status, attempts) == ("FAILED", 1)
    # when the owner adds a card and the hour passes
    await saved_card(app_client, owner.token, owner.primary_id, stripe_server)
    clock.advance(timedelta(hours=1))
    assert await jobs.charge_auto_allocations(services) == 1
    # then the same purchase (same period) succeeds on its second attempt, credited once
    assert await charges_of(app_client, client) == [(period, "BASIC", "SUCCEEDED", 2)]
    node = await allocation_of(app_client, owner.token, client)
    assert seconds_of(node, "BASIC") == 6000
    assert await jobs.charge_auto_allocations(services) == 0
    await assert_ledger_balanced(app_client)


async def test_nothing_is_charged_when_off_suspended_or_turned_on_mid_period(
    app_client, stripe_server, clock
):
    owner = await make_agency(app_client)
    await saved_card(app_client, owner.token, owner.primary_id, stripe_server)
    services = app_client.app.state.services
    # a client whose allocation is off
    off = await new_client(app_client, owner, name="Off")
    await allocate(app_client, owner.token, off, basic=100, enabled=False)
    # a suspended one
    suspended = await new_client(app_client, owner, name="Suspended")
    await allocate(app_client, owner.token, suspended, basic=100)
    await gql(app_client, SUSPEND, {"id": suspended}, owner.token)
    # one turned on a day after its period began
    late = await new_client(app_client, owner, name="Late")
    clock.advance(timedelta(days=1))
    await allocate(app_client, owner.token, late, basic=100)
    assert await jobs.charge_auto_allocations(services) == 0
    for sub_account in (off, suspended, late):
        assert await charges_of(app_client, sub_account) == []
    node = await allocation_of(app_client, owner.token, off)
    assert node["autoAllocation"]["nextChargeDate"] is None
    # the late one is charged from its next period on
    node = await allocation_of(app_client, owner.token, late)
    next_date = node["autoAllocation"]["nextChargeDate"]
    assert next_date > node["subscriptionStartDate"]
    clock.advance(timedelta(days=31))
    assert await jobs.charge_auto_allocations(services) == 1
    assert await charges_of(app_client, late) == [(next_date, "BASIC", "SUCCEEDED", 1)]


async def test_turning_it_off_stops_the_retries(app_client, stripe_server, clock):
    owner = await make_agency(app_client)
    client = await new_client(app_client, owner)
    await allocate(app_client, owner.token, client, basic=100)
    services = app_client.app.state.services
    await jobs.charge_auto_allocations(services)  # no card: FAILED, retry in an hour
    await allocate(app_client, owner.token, client, basic=100, enabled=False)
    card = await saved_card(app_client, owner.token, owner.primary_id, stripe_server)
    await gql(app_client, SET_DEFAULT, {"id": card}, owner.token)
    clock.advance(timedelta(hours=2))
    assert await jobs.charge_auto_allocations(services) == 0
    [(_, _, status, attempts)] = await charges_of(app_client, client)
    assert (status, attempts) == ("FAILED", 1)
    assert await intents_for(app_client, stripe_server, owner.primary_id) == []


async def test_a_monthly_charge_below_stripes_minimum_is_refused(app_client):
    owner = await make_agency(app_client)
    client = await new_client(app_client, owner)
    # 2 BASIC minutes are $0.36: a card cannot be charged that little
    payload = await allocate(app_client, owner.token, client, basic=2)
    assert payload["userErrors"] == [
        {"code": "AMOUNT_TOO_SMALL", "field": ["input", "basicMinutes"]}
    ]
    # 3 are $0.54; and a tier at 0 is simply not charged
    assert (await allocate(app_client, owner.token, client, basic=3))["userErrors"] == []


async def test_a_late_answer_about_an_earlier_attempt_does_not_settle_the_retry(
    app_client, stripe_server, clock
):
    # given a charge whose first attempt was declined
    owner = await make_agency(app_client)
    await add_card(
        app_client, owner.token, owner.primary_id, stripe_server, CARD_DECLINED_AT_CHARGE
    )
    client = await new_client(app_client, owner)
    await allocate(app_client, owner.token, client, premium=50)
    services = app_client.app.state.services
    await jobs.charge_auto_allocations(services)
    [first] = await purchase_rows(app_client, client)
    assert (first.status, first.attempts) == ("FAILED", 1)
    [attempt_1] = await intents_for(app_client, stripe_server, owner.primary_id)
    assert attempt_1["metadata"] == {
        "purchase_id": str(first.id),
        "agency_id": str(first.agency_id),
        "attempt": "1",
    }
    declined_webhook = await stripe_server.delivery(
        "payment_intent.payment_failed", attempt_1["id"]
    )
    # and a good card, and the second attempt charged at Stripe, its answer lost (a crash)
    card = await saved_card(app_client, owner.token, owner.primary_id, stripe_server)
    await gql(app_client, SET_DEFAULT, {"id": card}, owner.token)
    clock.advance(timedelta(hours=1))
    real = services.stripe

    async def die(answer):
        raise Crash

    services.stripe = Interposed(real, die)
    with pytest.raises(Crash):
        await jobs.charge_auto_allocations(services)
    services.stripe = real
    # when Stripe resends the first attempt's decline now
    assert (await post_webhook(app_client, declined_webhook)).status_code == 200
    # then the second attempt is still PENDING: the old decline did not fail it
    [second] = await purchase_rows(app_client, client)
    assert (second.status, second.attempts) == ("PENDING", 2)
    # and reconciliation finds its own intent and credits it, once
    clock.advance(timedelta(minutes=11))
    assert await jobs.reconcile_payments(services) == 1
    [settled] = await purchase_rows(app_client, client)
    assert (settled.status, settled.attempts) == ("SUCCEEDED", 2)
    assert await stored_seconds(app_client, client) == {"BASIC": 0, "PREMIUM": 3000}
    assert await jobs.charge_auto_allocations(services) == 0
    await assert_ledger_balanced(app_client)
    # and the report agrees: one charge, the earlier attempt's intent declined
    day = settled.created_at.replace(hour=0, minute=0, second=0, microsecond=0)
    lines = [line async for line in reconcile(services, day, day + timedelta(days=1))]
    assert [(line.status, line.problems) for line in lines] == [("SUCCEEDED", ())]


async def test_a_failed_tier_stays_visible_as_the_last_charge(app_client, stripe_server):
    owner, client = await agency_with_allocation(app_client, stripe_server)
    await jobs.charge_auto_allocations(app_client.app.state.services)
    rows = await purchase_rows(app_client, client)
    basic = next(r for r in rows if r.tier == "BASIC")
    async with app_client.app.state.services.database.engine.begin() as conn:
        await conn.execute(
            update(purchase_t).where(purchase_t.c.id == basic.id).values(status="FAILED")
        )
    node = await allocation_of(app_client, owner.token, client)
    last = node["autoAllocation"]["lastCharge"]
    assert (last["tier"], last["status"]) == ("BASIC", "FAILED")
