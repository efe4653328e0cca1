"""Earnings and payouts against a real Stripe-compatible server (localstripe, with the Transfers
the test suite adds to it): exact profit per client purchase, one Transfer per payout, FAILED
puts the amount back, never two payouts for the same earnings."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from resolvers import jobs
from tests.api.test_buy_minutes import Crash, buy, paying_client
from tests.api.test_team import join
from tests.factories import gql

EARNINGS = """{ viewer { agency { earnings { total { amount } unpaid { amount }
  paidOut { amount } payoutThreshold { amount } connectedAccountId }
  payouts { totalCount edges { node { amount { amount } status stripeTransferId } } } } } }"""
SETTINGS = """mutation($i: SetPayoutSettingsInput!) { setPayoutSettings(input: $i) {
  earnings { payoutThreshold { amount } connectedAccountId } userErrors { code field } } }"""
REQUEST = """mutation($key: String!) { requestPayout(input: {idempotencyKey: $key}) {
  payout { id amount { amount } status stripeTransferId failureReason }
  userErrors { code } } }"""
REPORT = """query($from: Date!, $to: Date!) { viewer { agency {
  report(range: {from: $from, to: $to}) { agencyProfit { amount } unpaidEarnings { amount }
  planRenewalDate } } } }"""


def account(name: str) -> str:
    """A Connect account id of this test alone (the test Stripe lives for the session)."""
    return f"acct_{name}_{uuid.uuid4().hex[:8]}"


async def earnings(client, token):
    agency = (await gql(client, EARNINGS, None, token))["data"]["viewer"]["agency"]
    figures = {
        k: (v["amount"] if isinstance(v, dict) else v) for k, v in agency["earnings"].items()
    }
    return figures, [e["node"] for e in agency["payouts"]["edges"]]


async def settings(client, token, **values):
    body = await gql(client, SETTINGS, {"i": values}, token)
    return body["data"]["setPayoutSettings"]


async def request(client, token, key="payout-1"):
    return (await gql(client, REQUEST, {"key": key}, token))["data"]["requestPayout"]


async def transfers_to(stripe_server, account):
    return [t for t in await stripe_server.transfers() if t["destination"] == account]


async def test_profit_is_exact_per_client_purchase_and_shown_in_the_report(
    app_client, stripe_server, clock
):
    # given a client at 25 % and the primary, each buying 10 PREMIUM minutes
    owner, client = await paying_client(app_client, stripe_server)
    await buy(app_client, owner.token, client, 10, key="c")
    from tests.api.test_payment_cards import saved_card

    await saved_card(app_client, owner.token, owner.primary_id, stripe_server)
    await buy(app_client, owner.token, owner.primary_id, 10, key="p")
    # then only the client's purchase earns: 10 x ($0.375 - $0.30)
    figures, paid = await earnings(app_client, owner.token)
    assert figures == {
        "total": "0.750000",
        "unpaid": "0.750000",
        "paidOut": "0.000000",
        "payoutThreshold": "100.000000",
        "connectedAccountId": None,
    }
    assert paid == []
    today = clock().date().isoformat()
    report = (await gql(app_client, REPORT, {"from": today, "to": today}, owner.token))["data"]
    figures = report["viewer"]["agency"]["report"]
    assert figures["agencyProfit"] == {"amount": "0.750000"}
    assert figures["unpaidEarnings"] == {"amount": "0.750000"}
    yesterday = (clock() - timedelta(days=1)).date().isoformat()
    before = await gql(app_client, REPORT, {"from": yesterday, "to": yesterday}, owner.token)
    assert before["data"]["viewer"]["agency"]["report"]["agencyProfit"] == {"amount": "0.000000"}


async def test_settings_keep_what_is_omitted_and_clear_what_is_null(app_client, stripe_server):
    owner, _ = await paying_client(app_client, stripe_server)
    set_both = await settings(
        app_client, owner.token, connectedAccountId="acct_agency1", payoutThreshold="25.50"
    )
    assert set_both["earnings"] == {
        "payoutThreshold": {"amount": "25.500000"},
        "connectedAccountId": "acct_agency1",
    }
    kept = await settings(app_client, owner.token, payoutThreshold="30")
    assert kept["earnings"]["connectedAccountId"] == "acct_agency1"
    cleared = await settings(app_client, owner.token, connectedAccountId=None, payoutThreshold=None)
    assert cleared["earnings"] == {
        "payoutThreshold": {"amount": "100.000000"},
        "connectedAccountId": None,
    }
    bad = await settings(app_client, owner.token, connectedAccountId="bank-123")
    assert bad["userErrors"] == [
        {"code": "INVALID_INPUT", "field": ["input", "connectedAccountId"]}
    ]
    # an agency admin may read earnings but not touch payouts
    _, admin = await join(app_client, owner.token, "admin@agency.example", "AGENCY_ADMIN")
    body = await gql(app_client, SETTINGS, {"i": {"payoutThreshold": "1"}}, admin)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await gql(app_client, REQUEST, {"key": "x"}, admin)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_requested_payout_is_one_transfer_and_never_paid_twice(app_client, stripe_server):
    owner, client = await paying_client(app_client, stripe_server)
    connected = account("requested")
    await buy(app_client, owner.token, client, 10)
    # no Connect account yet
    assert (await request(app_client, owner.token))["userErrors"] == [
        {"code": "NO_CONNECTED_ACCOUNT"}
    ]
    await settings(app_client, owner.token, connectedAccountId=connected)
    # when the owner asks for a payout, below the threshold
    payload = await request(app_client, owner.token, key="now")
    # then the unpaid earnings go in one Transfer, under the payout's id
    payout = payload["payout"]
    assert payload["userErrors"] == []
    assert (payout["amount"], payout["status"]) == ({"amount": "0.750000"}, "PAID")
    [transfer] = await transfers_to(stripe_server, connected)
    assert (transfer["id"], transfer["amount"]) == (payout["stripeTransferId"], 75)
    figures, _ = await earnings(app_client, owner.token)
    assert (figures["unpaid"], figures["paidOut"]) == ("0.000000", "0.750000")
    # the same key is the same payout; another finds nothing to pay
    assert (await request(app_client, owner.token, key="now"))["payout"] == payout
    assert (await request(app_client, owner.token, key="again"))["userErrors"] == [
        {"code": "NOTHING_TO_PAY"}
    ]
    assert len(await transfers_to(stripe_server, connected)) == 1


async def test_the_job_pays_out_once_the_threshold_is_reached(app_client, stripe_server):
    owner, client = await paying_client(app_client, stripe_server)
    connected = account("threshold")
    services = app_client.app.state.services
    await settings(app_client, owner.token, connectedAccountId=connected, payoutThreshold="1")
    await buy(app_client, owner.token, client, 10, key="a")  # $0.75 earned: under $1
    assert await jobs.pay_out(services) == 0
    await buy(app_client, owner.token, client, 10, key="b")  # $1.50: over
    assert await jobs.pay_out(services) == 1
    assert await jobs.pay_out(services) == 0  # and never again for the same earnings
    [transfer] = await transfers_to(stripe_server, connected)
    assert transfer["amount"] == 150
    figures, paid = await earnings(app_client, owner.token)
    assert (figures["unpaid"], figures["paidOut"]) == ("0.000000", "1.500000")
    assert [p["status"] for p in paid] == ["PAID"]


async def test_a_failed_transfer_puts_the_amount_back_to_unpaid(app_client, stripe_server):
    owner, client = await paying_client(app_client, stripe_server)
    connected = account("fixed")
    await buy(app_client, owner.token, client, 10)
    await settings(app_client, owner.token, connectedAccountId=account("invalid"))
    payload = await request(app_client, owner.token, key="first")
    assert payload["payout"]["status"] == "FAILED"
    assert "No such destination" in payload["payout"]["failureReason"]
    figures, _ = await earnings(app_client, owner.token)
    assert (figures["unpaid"], figures["paidOut"]) == ("0.750000", "0.000000")
    # once the account is right, the same earnings are paid, once
    await settings(app_client, owner.token, connectedAccountId=connected)
    assert (await request(app_client, owner.token, key="second"))["payout"]["status"] == "PAID"
    figures, paid = await earnings(app_client, owner.token)
    assert (figures["unpaid"], figures["paidOut"]) == ("0.000000", "0.750000")
    assert sorted(p["status"] for p in paid) == ["FAILED", "PAID"]


async def test_concurrent_requests_and_job_runs_pay_the_earnings_once(app_client, stripe_server):
    owner, client = await paying_client(app_client, stripe_server)
    connected = account("race")
    services = app_client.app.state.services
    await buy(app_client, owner.token, client, 10)
    await settings(app_client, owner.token, connectedAccountId=connected, payoutThreshold="0.5")
    # when the owner asks twelve times with different keys while the job runs three times
    results = await asyncio.gather(
        *(request(app_client, owner.token, key=f"race-{n}") for n in range(12)),
        *(jobs.pay_out(services) for _ in range(3)),
    )
    # then exactly one payout took the earnings; the others found nothing to pay
    requested = [r for r in results if isinstance(r, dict)]
    made = [r["payout"] for r in requested if r["payout"]] + [None] * sum(
        r for r in results if isinstance(r, int)
    )
    assert len(made) == 1
    assert all(
        r["userErrors"] == [{"code": "NOTHING_TO_PAY"}] for r in requested if not r["payout"]
    )
    [transfer] = await transfers_to(stripe_server, connected)
    assert transfer["amount"] == 75
    figures, paid = await earnings(app_client, owner.token)
    assert (figures["unpaid"], figures["paidOut"]) == ("0.000000", "0.750000")
    assert len(paid) == 1


async def test_a_payout_stranded_by_a_crash_is_sent_again_under_its_own_key(
    app_client, stripe_server, clock
):
    owner, client = await paying_client(app_client, stripe_server)
    connected = account("crash")
    services = app_client.app.state.services
    await buy(app_client, owner.token, client, 10)
    await settings(app_client, owner.token, connectedAccountId=connected)
    real = services.stripe

    class DiesAfterTransfer:
        def __getattr__(self, name):
            return getattr(real, name)

        async def transfer(self, *args, **kwargs):
            await real.transfer(*args, **kwargs)
            raise Crash

    services.stripe = DiesAfterTransfer()
    body = await gql(app_client, REQUEST, {"key": "crash"}, owner.token)
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    services.stripe = real
    figures, [stranded] = await earnings(app_client, owner.token)
    assert stranded["status"] == "PENDING" and figures["unpaid"] == "0.000000"
    assert await jobs.pay_out(services) == 0  # too fresh to resend, and nothing more to pay
    clock.advance(timedelta(minutes=11))
    assert await jobs.pay_out(services) == 1
    figures, [paid] = await earnings(app_client, owner.token)
    assert paid["status"] == "PAID" and figures["paidOut"] == "0.750000"
    [transfer] = await transfers_to(stripe_server, connected)  # Stripe made one Transfer
    assert paid["stripeTransferId"] == transfer["id"]
