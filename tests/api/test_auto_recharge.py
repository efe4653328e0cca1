"""Threshold auto-recharge against the local Stripe-compatible server: a debit that leaves a
tier below its threshold writes a request in its own transaction, and the job charges one
AUTO_RECHARGE purchase of the top-up at the client price on the payer's default card, credited
once; at most one in flight per (sub-account, tier); a failure raises PAYMENT_FAILED and waits
six hours or a new card."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from persistence.stripe_gateway import StripeUnavailable
from persistence.tables import (
    AlertRow,
    AutoRechargeRequestRow,
    LedgerEntryRow,
    OutboxRow,
    PurchaseRow,
)
from resolvers import auto_recharges, jobs
from resolvers.api_keys import issue_api_key
from resolvers.global_id import from_global_id
from tests.api.test_account_manager import TRANSFER, new_client, transfer_input
from tests.api.test_buy_minutes import Interposed, assert_ledger_balanced
from tests.api.test_payment_cards import add_card, saved_card
from tests.api.test_usage import RECORD, call
from tests.factories import gql, make_agency
from tests.payment_provider import CARD_DECLINED_AT_CHARGE

SET = """mutation($i: SetAutoRechargeInput!) { setAutoRecharge(input: $i) {
  subAccount { autoRecharge { enabled tier thresholdMinutes topUpMinutes } }
  userErrors { code field } } }"""
STATE = """query($id: ID!) { node(id: $id) { ... on SubAccount {
  balances { tier seconds }
  autoRecharge { enabled lastCharge { kind tier seconds status failureReason amount { amount } } }
  report(range: {from: "2026-11-01", to: "2027-03-01"}) { health { kind } } } } }"""
EARNINGS = "{ viewer { agency { earnings { total { amount } } } } }"
AUDIT = """{ viewer { agency { auditLog(first: 20) { edges { node { kind summary } } } } } }"""

purchase_t = PurchaseRow.__table__
request_t = AutoRechargeRequestRow.__table__
ledger_t = LedgerEntryRow.__table__
alert_t = AlertRow.__table__
outbox_t = OutboxRow.__table__


async def recharging_client(app_client, stripe_server, number=None, threshold=5, top_up=20):
    """An agency, a client at 25 % paying for itself with its own card and 480 PREMIUM
    seconds, its auto-recharge on (below `threshold` minutes, buy `top_up`), and an ingest
    key."""
    owner = await make_agency(app_client)
    client = await new_client(app_client, owner, markup="25")
    await gql(app_client, TRANSFER, transfer_input(owner.primary_id, client, "10"), owner.token)
    extra = {} if number is None else {"number": number}
    await saved_card(app_client, owner.token, client, stripe_server, **extra)
    services = app_client.app.state.services
    _, key = await issue_api_key(services, from_global_id(owner.id)[1], "platform", None)
    payload = await set_recharge(app_client, owner.token, client, threshold, top_up)
    assert payload["userErrors"] == [], payload
    return owner, client, key


async def set_recharge(app_client, token, client, threshold=5, top_up=20, enabled=True):
    variables = {
        "i": {
            "subAccountId": client,
            "enabled": enabled,
            "tier": "PREMIUM",
            "thresholdMinutes": threshold,
            "topUpMinutes": top_up,
        }
    }
    return (await gql(app_client, SET, variables, token))["data"]["setAutoRecharge"]


async def record(app_client, key, client, seconds: int, external_id: str | None = None):
    body = await gql(app_client, RECORD, {"calls": [call(client, external_id, seconds)]}, key)
    assert body["data"]["recordCalls"]["accepted"] == 1, body


async def state(app_client, owner, client):
    body = await gql(app_client, STATE, {"id": client}, owner.token)
    assert body["data"]["node"] is not None, body
    return body["data"]["node"]


def premium(node) -> int:
    return {b["tier"]: b["seconds"] for b in node["balances"]}["PREMIUM"]


def flags(node) -> set[str]:
    return {f["kind"] for f in node["report"]["health"]}


async def recharges(app_client, client) -> list[tuple[str, int]]:
    """(status, attempts) of the client's auto-recharge purchases, oldest first."""
    key = from_global_id(client)[1]
    async with app_client.app.state.services.database.read() as conn:
        rows = await conn.execute(
            select(purchase_t.c.status, purchase_t.c.attempts)
            .where(purchase_t.c.sub_account_id == key, purchase_t.c.kind == "AUTO_RECHARGE")
            .order_by(purchase_t.c.created_at)
        )
        return [(r.status, r.attempts) for r in rows]


async def open_requests(app_client) -> int:
    async with app_client.app.state.services.database.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(request_t)) or 0)


async def test_a_call_leaving_the_balance_below_the_threshold_recharges_once(
    app_client, stripe_server
):
    # given a client with 480 PREMIUM seconds, recharging 20 minutes below 5 minutes
    owner, client, key = await recharging_client(app_client, stripe_server)
    services = app_client.app.state.services
    services.wakeup("charge-auto-recharges").clear()  # adding the card woke it
    # when a call leaves 420 seconds (above 300): nothing is asked
    await record(app_client, key, client, 60)
    assert await open_requests(app_client) == 0
    assert not services.wakeup("charge-auto-recharges").is_set()
    # when a call leaves 180 seconds: a request, the job woken, and it recharges once
    await record(app_client, key, client, 240)
    assert await open_requests(app_client) == 1
    assert services.wakeup("charge-auto-recharges").is_set()
    assert await jobs.charge_auto_recharges(services) == 1
    assert await jobs.charge_auto_recharges(services) == 0
    # then 20 minutes at the client price (25 % over base: $0.375 a minute, $7.50) are
    # credited once, and lastCharge shows the purchase
    node = await state(app_client, owner, client)
    assert premium(node) == 180 + 1200
    assert node["autoRecharge"]["lastCharge"] == {
        "kind": "AUTO_RECHARGE",
        "tier": "PREMIUM",
        "seconds": 1200,
        "status": "SUCCEEDED",
        "failureReason": None,
        "amount": {"amount": "7.500000"},
    }
    assert await recharges(app_client, client) == [("SUCCEEDED", 1)]
    assert await open_requests(app_client) == 0
    await assert_ledger_balanced(app_client)
    # and the live event of the credit shows the new balance
    async with services.database.read() as conn:
        payload = await conn.scalar(
            select(outbox_t.c.payload)
            .where(
                outbox_t.c.key == str(from_global_id(client)[1]),
                outbox_t.c.kind.in_(["USAGE_UPDATED", "BALANCES_CHANGED"]),
            )
            .order_by(outbox_t.c.id.desc())
            .limit(1)
        )
    assert json.loads(payload)["balances"]["PREMIUM"] == 180 + 1200
    # and the agency earns its markup on it, as on the client's own purchases
    # (20 minutes x ($0.375 - $0.30))
    body = await gql(app_client, EARNINGS, token=owner.token)
    assert body["data"]["viewer"]["agency"]["earnings"]["total"]["amount"] == "1.500000", body
    log = (await gql(app_client, AUDIT, token=owner.token))["data"]["viewer"]["agency"]
    summaries = [e["node"]["summary"] for e in log["auditLog"]["edges"]]
    assert any(s.startswith("auto-recharged Client with 20 PREMIUM minutes") for s in summaries)
    assert any("auto-recharge of Client to 20 PREMIUM minutes below 5" in s for s in summaries)


async def test_a_transfer_out_below_the_threshold_recharges_too(app_client, stripe_server):
    owner, client, _ = await recharging_client(app_client, stripe_server)
    # when the client's minutes are sent back to the primary, leaving 0
    moved = await gql(
        app_client, TRANSFER, transfer_input(client, owner.primary_id, "8"), owner.token
    )
    assert moved["data"]["transferMinutes"]["userErrors"] == [], moved
    # then the transfer's transaction wrote a request, and the job recharges it
    assert await open_requests(app_client) == 1
    assert await jobs.charge_auto_recharges(app_client.app.state.services) == 1
    assert premium(await state(app_client, owner, client)) == 1200


async def test_a_failure_raises_payment_failed_and_waits_six_hours_or_a_new_card(
    app_client, stripe_server, clock
):
    # given a client whose only card is declined at every charge
    owner, client, key = await recharging_client(
        app_client, stripe_server, number=CARD_DECLINED_AT_CHARGE
    )
    services = app_client.app.state.services
    await record(app_client, key, client, 300)
    # when the job runs: the recharge fails, with Stripe's reason, and is flagged and alerted
    assert await jobs.charge_auto_recharges(services) == 0
    node = await state(app_client, owner, client)
    assert node["autoRecharge"]["lastCharge"]["status"] == "FAILED"
    assert node["autoRecharge"]["lastCharge"]["failureReason"]
    assert "PAYMENT_FAILED" in flags(node)
    async with services.database.read() as conn:
        kinds = (await conn.execute(select(alert_t.c.kind))).scalars().all()
    assert kinds == ["PAYMENT_FAILED"]
    # then no new attempt is made before six hours, however many debits and runs
    await record(app_client, key, client, 10)
    clock.advance(timedelta(hours=5, minutes=59))
    assert await jobs.charge_auto_recharges(services) == 0
    assert await recharges(app_client, client) == [("FAILED", 1)]
    # and after six hours it tries again (the same card, declined again)
    clock.advance(timedelta(minutes=2))
    await jobs.charge_auto_recharges(services)
    assert await recharges(app_client, client) == [("FAILED", 1), ("FAILED", 1)]
    # when a working card becomes the default, it does not wait for the six hours
    clock.advance(timedelta(minutes=1))
    services.wakeup("charge-auto-recharges").clear()
    payload, _ = await add_card(app_client, owner.token, client, stripe_server, makeDefault=True)
    assert payload["userErrors"] == [], payload
    assert services.wakeup("charge-auto-recharges").is_set()  # the job goes now
    assert await jobs.charge_auto_recharges(services) == 1
    node = await state(app_client, owner, client)
    assert [s for s, _ in await recharges(app_client, client)] == ["FAILED", "FAILED", "SUCCEEDED"]
    assert "PAYMENT_FAILED" not in flags(node)
    # the failure is in the audit log, and one PAYMENT_FAILED alert was raised that day
    log = (await gql(app_client, AUDIT, token=owner.token))["data"]["viewer"]["agency"]
    assert "AUTO_RECHARGE_FAILED" in [e["node"]["kind"] for e in log["auditLog"]["edges"]]
    await assert_ledger_balanced(app_client)


async def test_one_recharge_in_flight_while_stripe_does_not_answer(app_client, stripe_server):
    # given Stripe charging but its answers lost
    owner, client, key = await recharging_client(app_client, stripe_server)
    services = app_client.app.state.services
    real = services.stripe

    async def lost(answer):
        raise StripeUnavailable("lost")

    services.stripe = Interposed(real, lost)
    await record(app_client, key, client, 300)
    # when two runs go at once, and more calls come in, and the job runs again
    await asyncio.gather(
        auto_recharges.charge_auto_recharges(services),
        auto_recharges.charge_auto_recharges(services),
    )
    await record(app_client, key, client, 30)
    await auto_recharges.charge_auto_recharges(services)
    # then one purchase is in flight, whatever ran
    assert await recharges(app_client, client) == [("PENDING", 1)]
    # when Stripe answers again and reconciliation settles it, the job closes the request
    services.stripe = real
    services.clock.advance(timedelta(minutes=11))
    assert await jobs.reconcile_payments(services) == 1
    assert await jobs.charge_auto_recharges(services) == 0  # closed, not charged again
    assert await open_requests(app_client) == 0
    assert await recharges(app_client, client) == [("SUCCEEDED", 1)]
    assert premium(await state(app_client, owner, client)) == 480 - 330 + 1200
    await assert_ledger_balanced(app_client)


async def test_turning_it_off_stops_the_requests_and_bad_settings_have_codes(
    app_client, stripe_server
):
    owner, client, key = await recharging_client(app_client, stripe_server)
    off = await set_recharge(app_client, owner.token, client, enabled=False)
    assert off["subAccount"]["autoRecharge"]["enabled"] is False
    await record(app_client, key, client, 400)
    assert await open_requests(app_client) == 0
    too_small = await set_recharge(app_client, owner.token, client, 5, 1)
    assert too_small["userErrors"] == [
        {"code": "AMOUNT_TOO_SMALL", "field": ["input", "topUpMinutes"]}
    ]
    zero = await set_recharge(app_client, owner.token, client, 0, 20)
    assert zero["userErrors"] == [{"code": "INVALID_INPUT", "field": ["input", "thresholdMinutes"]}]


# ---- the property ----------------------------------------------------------------------------

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.integers(1, 400)),
        st.tuples(st.just("transfer"), st.integers(1, 3)),
        st.tuples(st.just("run"), st.just(0)),
        st.tuples(st.just("card"), st.just(0)),  # a working card becomes the default
        st.tuples(st.just("later"), st.integers(1, 8)),  # hours pass
        st.tuples(st.just("lost"), st.just(0)),  # Stripe's answers are lost from now on
        st.tuples(st.just("found"), st.just(0)),  # …and come back
    ),
    min_size=1,
    max_size=14,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
async def test_random_calls_and_recharges_keep_one_in_flight_credit_once_and_balance(
    app_client, stripe_server, database_url, steps
):
    from tests.conftest import empty_all_tables

    await empty_all_tables(database_url)
    owner, client, key = await recharging_client(
        app_client, stripe_server, number=CARD_DECLINED_AT_CHARGE, threshold=5, top_up=10
    )
    services = app_client.app.state.services
    real = services.stripe
    client_key = from_global_id(client)[1]

    async def lost(answer):
        raise StripeUnavailable("lost")

    try:
        for step, n in steps:
            if step == "call":
                await record(app_client, key, client, n)
            elif step == "transfer":
                await gql(
                    app_client,
                    TRANSFER,
                    transfer_input(client, owner.primary_id, str(n)),
                    owner.token,
                )
            elif step == "run":  # two runs at once, as two processes without the lock
                await asyncio.gather(
                    auto_recharges.charge_auto_recharges(services),
                    auto_recharges.charge_auto_recharges(services),
                )
            elif step == "card":
                await add_card(app_client, owner.token, client, stripe_server, makeDefault=True)
            elif step == "later":
                services.clock.advance(timedelta(hours=n))
                await jobs.reconcile_payments(services)
            elif step == "lost":
                services.stripe = Interposed(real, lost)
            else:
                services.stripe = real
            await _check(services, client_key)
    finally:
        services.stripe = real


async def _check(services, client_key: uuid.UUID) -> None:
    async with services.database.read() as conn:
        rows = (
            await conn.execute(
                select(purchase_t.c.id, purchase_t.c.status, purchase_t.c.seconds).where(
                    purchase_t.c.sub_account_id == client_key,
                    purchase_t.c.kind == "AUTO_RECHARGE",
                )
            )
        ).all()
        # at most one recharge in flight
        assert sum(r.status == "PENDING" for r in rows) <= 1
        # every succeeded recharge credited exactly once, a failed or pending one never
        credits = dict(
            (
                await conn.execute(
                    select(ledger_t.c.reference, func.sum(ledger_t.c.delta_seconds))
                    .where(ledger_t.c.reference.in_([f"purchase:{r.id}" for r in rows] or [""]))
                    .group_by(ledger_t.c.reference)
                )
            ).all()
        )
        for r in rows:
            expected = r.seconds if r.status == "SUCCEEDED" else None
            assert credits.get(f"purchase:{r.id}") == expected, (r, credits)
            if expected is not None:
                count = await conn.scalar(
                    select(func.count())
                    .select_from(ledger_t)
                    .where(ledger_t.c.reference == f"purchase:{r.id}")
                )
                assert count == 1
    from persistence.ledger import mismatches

    async with services.database.read() as conn:
        assert await mismatches(conn) == []
