"""buyMinutes against a real Stripe-compatible server (localstripe): the purchase is written
PENDING, charged with an Idempotency-Key from its id, and credited exactly once by whichever
of Stripe's answer, its webhook and the reconciliation job comes first."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from persistence.ledger import mismatches
from persistence.tables import LedgerEntryRow, PaymentCardRow, StripeEventRow
from resolvers import jobs
from resolvers.global_id import from_global_id
from tests.api.test_account_manager import SUSPEND, TRANSFER, new_client, transfer_input
from tests.api.test_payment_cards import customer_of, saved_card
from tests.api.test_team import join
from tests.factories import gql, make_agency
from tests.payment_provider import CARD_DECLINED_AT_CHARGE

BUY = """mutation($i: BuyMinutesInput!) { buyMinutes(input: $i) {
  purchase { id kind status tier seconds amount { amount } agencyProfit { amount }
             failureReason attempts subAccount { id } }
  userErrors { code field } } }"""
PURCHASE = """query($id: ID!) { node(id: $id) { ... on Purchase { status seconds
  amount { amount } failureReason } } }"""
BALANCES = """query($id: ID!) { node(id: $id) { ... on SubAccount { balances { tier seconds }
  purchases { totalCount edges { node { id status } } } } } }"""

ledger_t = LedgerEntryRow.__table__
card_t = PaymentCardRow.__table__


def buy_input(sub_account_id: str, minutes: int = 10, key: str = "order-1", **extra: Any):
    return {
        "i": {
            "subAccountId": sub_account_id,
            "tier": "PREMIUM",
            "minutes": minutes,
            "idempotencyKey": key,
            **extra,
        }
    }


async def buy(client, token, sub_account_id, minutes=10, key="order-1", **extra):
    body = await gql(client, BUY, buy_input(sub_account_id, minutes, key, **extra), token)
    assert "errors" not in body, body
    return body["data"]["buyMinutes"]


async def premium_seconds(client, token, sub_account_id) -> int:
    node = (await gql(client, BALANCES, {"id": sub_account_id}, token))["data"]["node"]
    return next(b["seconds"] for b in node["balances"] if b["tier"] == "PREMIUM")


async def credits_of(client, purchase_gid) -> list[tuple[str, int]]:
    """The ledger entries a purchase wrote: (kind, seconds)."""
    reference = f"purchase:{from_global_id(purchase_gid)[1]}"
    async with client.app.state.services.database.read() as conn:
        rows = await conn.execute(
            select(ledger_t.c.kind, ledger_t.c.delta_seconds).where(
                ledger_t.c.reference == reference
            )
        )
        return [(r.kind, int(r.delta_seconds)) for r in rows]


async def assert_ledger_balanced(client) -> None:
    async with client.app.state.services.database.read() as conn:
        assert await mismatches(conn) == []


async def post_webhook(client, delivery: dict[str, str], signature: str | None = None):
    return await client.post(
        "/webhooks/stripe",
        content=delivery["body"].encode(),
        headers={
            "content-type": "application/json",
            "stripe-signature": signature if signature is not None else delivery["signature"],
        },
    )


async def paying_client(client, stripe_server, markup="25"):
    """An agency and a CUSTOMER-funded client with its own saved card."""
    owner = await make_agency(client)
    sub_account = await new_client(client, owner, markup=markup)
    await saved_card(client, owner.token, sub_account, stripe_server)
    return owner, sub_account


class Interposed:
    """The app's real Stripe gateway with something happening right after Stripe answers a
    charge (the webhook arriving first, the process dying, the answer getting lost)."""

    def __init__(self, real, after_charge) -> None:
        self._real = real
        self._after_charge = after_charge

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def charge(self, *args: Any, **kwargs: Any) -> Any:
        return await self._after_charge(await self._real.charge(*args, **kwargs))


class Crash(Exception):
    """The server died between Stripe's answer and recording it."""


# ---- buying -----------------------------------------------------------------------------------


async def test_a_purchase_charges_the_client_price_and_credits_the_minutes_once(
    app_client, stripe_server
):
    # given a client at 25 % markup (PREMIUM $0.375 a minute) with a card
    owner, client = await paying_client(app_client, stripe_server)
    # when its owner buys 10 PREMIUM minutes
    payload = await buy(app_client, owner.token, client, 10)
    # then the card is charged $3.75 once and the minutes are credited
    purchase = payload["purchase"]
    assert payload["userErrors"] == []
    assert purchase | {"id": None} == {
        "id": None,
        "kind": "CLIENT_PURCHASE",
        "status": "SUCCEEDED",
        "tier": "PREMIUM",
        "seconds": 600,
        "amount": {"amount": "3.750000"},
        "agencyProfit": {"amount": "0.750000"},
        "failureReason": None,
        "attempts": 1,
        "subAccount": {"id": client},
    }
    assert await premium_seconds(app_client, owner.token, client) == 600
    assert await credits_of(app_client, purchase["id"]) == [("PURCHASE", 600)]
    intent = (await stripe_server.get("/v1/payment_intents?limit=100"))["data"]
    ours = [
        i
        for i in intent
        if i["metadata"].get("purchase_id") == from_global_id(purchase["id"])[1].__str__()
    ]
    assert [(i["amount"], i["currency"], i["status"]) for i in ours] == [(375, "usd", "succeeded")]
    # and the webhook that follows, and its replay, change nothing
    delivery = await stripe_server.delivery("payment_intent.succeeded", ours[0]["id"])
    for _ in range(2):
        assert (await post_webhook(app_client, delivery)).status_code == 200
    assert await premium_seconds(app_client, owner.token, client) == 600
    assert await credits_of(app_client, purchase["id"]) == [("PURCHASE", 600)]
    await assert_ledger_balanced(app_client)


async def test_the_webhook_arriving_before_the_answer_credits_once(app_client, stripe_server):
    owner, client = await paying_client(app_client, stripe_server)
    services = app_client.app.state.services

    async def webhook_first(answer):
        delivery = await stripe_server.delivery("payment_intent.succeeded", answer.id)
        assert (await post_webhook(app_client, delivery)).status_code == 200
        return answer

    services.stripe = Interposed(services.stripe, webhook_first)
    # when the webhook settles the purchase while buyMinutes still waits for Stripe's answer
    payload = await buy(app_client, owner.token, client, 10)
    # then the answer, coming second, credits nothing more
    assert payload["purchase"]["status"] == "SUCCEEDED"
    assert await credits_of(app_client, payload["purchase"]["id"]) == [("PURCHASE", 600)]
    assert await premium_seconds(app_client, owner.token, client) == 600
    await assert_ledger_balanced(app_client)


async def test_a_lost_answer_is_settled_by_the_webhook_and_a_bad_signature_applies_nothing(
    app_client, stripe_server
):
    owner, client = await paying_client(app_client, stripe_server)
    services = app_client.app.state.services
    seen = []

    async def lost(answer):
        from persistence.stripe_gateway import StripeUnavailable

        seen.append(answer)
        raise StripeUnavailable("the connection dropped before the answer arrived")

    services.stripe = Interposed(services.stripe, lost)
    payload = await buy(app_client, owner.token, client, 10)
    assert payload["purchase"]["status"] == "PENDING"
    delivery = await stripe_server.delivery("payment_intent.succeeded", seen[0].id)
    # a delivery whose signature does not verify: 400, nothing applied
    forged = dict(delivery, body=delivery["body"].replace('"amount": 375', '"amount": 1'))
    assert (await post_webhook(app_client, forged)).status_code == 400
    assert (await post_webhook(app_client, delivery, signature="t=1,v1=00")).status_code == 400
    assert (await post_webhook(app_client, delivery, signature="")).status_code == 400
    assert await premium_seconds(app_client, owner.token, client) == 0
    # the real one settles it
    assert (await post_webhook(app_client, delivery)).status_code == 200
    found = await gql(app_client, PURCHASE, {"id": payload["purchase"]["id"]}, owner.token)
    assert found["data"]["node"]["status"] == "SUCCEEDED"
    assert await premium_seconds(app_client, owner.token, client) == 600
    await assert_ledger_balanced(app_client)


async def test_unknown_event_types_are_acknowledged_and_ignored(app_client, stripe_server):
    _, client = await paying_client(app_client, stripe_server)
    # localstripe announced the customer it made for the client's card (this test's own: an
    # earlier test's delivery may be older than the signature's 5 minutes of tolerance)
    customer = await customer_of(app_client, client)
    assert customer is not None
    created = await stripe_server.delivery("customer.created", customer)
    assert (await post_webhook(app_client, created)).status_code == 200
    async with app_client.app.state.services.database.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(StripeEventRow.__table__)) == 0


async def test_a_declined_card_fails_the_purchase_with_stripes_reason(app_client, stripe_server):
    owner = await make_agency(app_client)
    client = await new_client(app_client, owner)
    await saved_card(app_client, owner.token, client, stripe_server, number=CARD_DECLINED_AT_CHARGE)
    # when the card is charged
    payload = await buy(app_client, owner.token, client, 10)
    # then the purchase is FAILED with Stripe's reason and nothing is credited
    assert payload["userErrors"] == [{"code": "CARD_DECLINED", "field": ["input", "cardId"]}]
    assert payload["purchase"]["status"] == "FAILED"
    assert payload["purchase"]["failureReason"] == "Your card was declined."
    assert await premium_seconds(app_client, owner.token, client) == 0
    # a retry with the same key says the same and charges nothing more
    again = await buy(app_client, owner.token, client, 10)
    assert again == payload


async def test_the_same_key_returns_the_same_purchase_and_another_request_is_refused(
    app_client, stripe_server
):
    owner, client = await paying_client(app_client, stripe_server)
    first = await buy(app_client, owner.token, client, 10, key="k")
    again = await buy(app_client, owner.token, client, 10, key="k")
    assert again == first
    other = await buy(app_client, owner.token, client, 11, key="k")
    assert other == {
        "purchase": None,
        "userErrors": [{"code": "IDEMPOTENCY_KEY_REUSED", "field": ["input", "idempotencyKey"]}],
    }
    assert await premium_seconds(app_client, owner.token, client) == 600
    customer = (await stripe_server.get("/v1/payment_intents?limit=100"))["data"]
    ours = [
        i
        for i in customer
        if i["metadata"].get("purchase_id") == str(from_global_id(first["purchase"]["id"])[1])
    ]
    assert len(ours) == 1


async def test_concurrent_purchases_with_one_key_charge_and_credit_once(app_client, stripe_server):
    owner, client = await paying_client(app_client, stripe_server)
    # when eight copies of one request race
    payloads = await asyncio.gather(
        *(buy(app_client, owner.token, client, 10, key="race") for _ in range(8))
    )
    # then they all name one purchase, charged once and credited once
    assert {p["purchase"]["id"] for p in payloads} == {payloads[0]["purchase"]["id"]}
    assert all(p["userErrors"] == [] for p in payloads)
    purchase_id = payloads[0]["purchase"]["id"]
    intents = (await stripe_server.get("/v1/payment_intents?limit=100"))["data"]
    charged = [
        i
        for i in intents
        if i["metadata"].get("purchase_id") == str(from_global_id(purchase_id)[1])
    ]
    assert len(charged) == 1
    assert await credits_of(app_client, purchase_id) == [("PURCHASE", 600)]
    assert await premium_seconds(app_client, owner.token, client) == 600
    await assert_ledger_balanced(app_client)


async def test_a_crash_after_the_charge_is_finished_by_the_reconciliation_job(
    app_client, stripe_server, clock
):
    owner, client = await paying_client(app_client, stripe_server)
    services = app_client.app.state.services
    real = services.stripe

    async def die(answer):
        raise Crash

    services.stripe = Interposed(real, die)
    # when the server dies after Stripe charged the card, before recording it
    body = await gql(app_client, BUY, buy_input(client, 10), owner.token)
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    services.stripe = real
    purchases = (await gql(app_client, BALANCES, {"id": client}, owner.token))["data"]["node"]
    [pending] = purchases["purchases"]["edges"]
    assert pending["node"]["status"] == "PENDING"
    # then the reconciliation job leaves it alone for 10 minutes
    assert await jobs.reconcile_payments(services) == 0
    clock.advance(timedelta(minutes=11))
    # and afterwards asks Stripe again under the same key: the one charge made, credited once
    assert await jobs.reconcile_payments(services) == 1
    found = await gql(app_client, PURCHASE, {"id": pending["node"]["id"]}, owner.token)
    assert found["data"]["node"]["status"] == "SUCCEEDED"
    assert await credits_of(app_client, pending["node"]["id"]) == [("PURCHASE", 600)]
    intents = (await stripe_server.get("/v1/payment_intents?limit=100"))["data"]
    charged = [
        i
        for i in intents
        if i["metadata"].get("purchase_id") == str(from_global_id(pending["node"]["id"])[1])
    ]
    assert len(charged) == 1
    # and running it again changes nothing
    assert await jobs.reconcile_payments(services) == 0
    assert await premium_seconds(app_client, owner.token, client) == 600
    await assert_ledger_balanced(app_client)


async def test_a_crash_found_after_stripe_forgot_the_key_is_not_charged_twice(
    app_client, stripe_server, clock
):
    # given a purchase whose charge went through at Stripe, the server dying before it
    # learnt the PaymentIntent's id
    owner, client = await paying_client(app_client, stripe_server)
    services = app_client.app.state.services
    real = services.stripe

    async def die(answer):
        raise Crash

    services.stripe = Interposed(real, die)
    body = await gql(app_client, BUY, buy_input(client, 10), owner.token)
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    services.stripe = real
    # when the reconciliation job first runs a day later, Stripe having forgotten the key
    await stripe_server.forget_idempotency_keys()
    clock.advance(timedelta(hours=25))
    assert await jobs.reconcile_payments(services) == 1
    # then it found the intent made then and settled from it: one charge, credited once
    customer = await customer_of(app_client, client)
    assert customer is not None
    intents = await stripe_server.intents_of(customer)
    assert [i["status"] for i in intents] == ["succeeded"]
    [purchase_id] = {i["metadata"]["purchase_id"] for i in intents}
    async with services.database.read() as conn:
        credited = await conn.scalar(
            select(func.sum(ledger_t.c.delta_seconds)).where(
                ledger_t.c.reference == f"purchase:{purchase_id}"
            )
        )
    assert credited == 600
    await assert_ledger_balanced(app_client)


async def test_a_card_stripe_no_longer_has_is_a_decline_not_a_wait(app_client, stripe_server):
    # given a client whose saved card Stripe no longer has (deleted from its dashboard, say)
    owner = await make_agency(app_client)
    client = await new_client(app_client, owner)
    await saved_card(app_client, owner.token, client, stripe_server)
    async with app_client.app.state.services.database.engine.begin() as conn:
        await conn.execute(update(card_t).values(stripe_payment_method_id="pm_deleted"))
    # when the client buys minutes with it
    payload = await buy(app_client, owner.token, client, 10)
    # then Stripe's refusal fails the purchase at once (not PENDING for ever, retried every
    # five minutes), with a reason the client can act on
    assert payload["userErrors"] == [{"code": "CARD_DECLINED", "field": ["input", "cardId"]}]
    assert payload["purchase"]["status"] == "FAILED"
    assert payload["purchase"]["failureReason"]
    assert await premium_seconds(app_client, owner.token, client) == 0


async def test_purchase_rules_have_their_codes(app_client, stripe_server):
    owner = await make_agency(app_client)
    client = await new_client(app_client, owner)
    # no card yet
    payload = await buy(app_client, owner.token, client, 10)
    assert payload["userErrors"] == [{"code": "NO_PAYMENT_CARD", "field": ["input", "cardId"]}]
    await saved_card(app_client, owner.token, client, stripe_server)
    # $0.375 is below Stripe's $0.50 minimum
    payload = await buy(app_client, owner.token, client, 1, key="tiny")
    assert payload["userErrors"] == [{"code": "AMOUNT_TOO_SMALL", "field": ["input", "minutes"]}]
    payload = await buy(app_client, owner.token, client, 0, key="none")
    assert payload["userErrors"] == [{"code": "INVALID_INPUT", "field": ["input", "minutes"]}]
    # suspended
    await gql(app_client, SUSPEND, {"id": client}, owner.token)
    payload = await buy(app_client, owner.token, client, 10, key="suspended")
    assert payload["userErrors"] == [
        {"code": "SUBACCOUNT_SUSPENDED", "field": ["input", "subAccountId"]}
    ]
    assert await premium_seconds(app_client, owner.token, client) == 0


async def test_the_primary_buys_at_base_cost_and_earns_the_agency_nothing(
    app_client, stripe_server
):
    owner = await make_agency(app_client)
    await saved_card(app_client, owner.token, owner.primary_id, stripe_server)
    payload = await buy(app_client, owner.token, owner.primary_id, 10)
    assert payload["purchase"]["amount"] == {"amount": "3.000000"}
    assert payload["purchase"]["agencyProfit"] == {"amount": "0.000000"}


async def test_a_subaccount_member_may_buy_minutes_but_not_transfer_them(app_client, stripe_server):
    owner, client = await paying_client(app_client, stripe_server)
    _, member = await join(
        app_client,
        owner.token,
        "buyer@clients.example",
        "SUBACCOUNT_MEMBER",
        subAccountIds=[client],
    )
    payload = await buy(app_client, member, client, 10)
    assert payload["userErrors"] == [] and payload["purchase"]["status"] == "SUCCEEDED"
    body = await gql(app_client, TRANSFER, transfer_input(client, owner.primary_id, "1"), member)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await premium_seconds(app_client, owner.token, client) == 600


async def test_an_unsigned_webhook_is_refused(app_client):
    response = await app_client.post("/webhooks/stripe", content=b'{"id": "evt_1"}')
    assert response.status_code == 400


async def test_cards_and_purchases_are_in_the_audit_log_under_the_buyers_name(
    app_client, stripe_server
):
    from tests.api.test_audit_log import audit_log

    owner, client = await paying_client(app_client, stripe_server)
    _, member = await join(
        app_client,
        owner.token,
        "audited@clients.example",
        "SUBACCOUNT_MEMBER",
        subAccountIds=[client],
    )
    await buy(app_client, member, client, 10)
    log = await audit_log(
        app_client, owner.token, kinds=["MINUTES_PURCHASED", "PAYMENT_CARD_ADDED"]
    )
    entries = [(e["node"]["kind"], e["node"]["email"], e["node"]["summary"]) for e in log["edges"]]
    assert entries == [
        (
            "MINUTES_PURCHASED",
            "audited@clients.example",
            "bought 10 PREMIUM minutes for Client ($3.75)",
        ),
        (
            "PAYMENT_CARD_ADDED",
            owner.email,
            "added the visa card ending 4242 to Client as its default",
        ),
    ]
