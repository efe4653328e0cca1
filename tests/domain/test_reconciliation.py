"""What reconciliation calls a disagreement, row by row."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from domain.money import Tier
from domain.payments import IntentState, PaymentStatus, Purchase, PurchaseKind
from domain.payouts import Payout, PayoutStatus, TransferState
from domain.reconciliation import Unreachable, check_payout, check_purchase

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
PURCHASE = Purchase(
    id=uuid.uuid4(),
    agency_id=uuid.uuid4(),
    sub_account_id=uuid.uuid4(),
    payer_id=uuid.uuid4(),
    kind=PurchaseKind.CLIENT_PURCHASE,
    tier=Tier.PREMIUM,
    seconds=600,
    amount_micros=3_750_000,
    profit_micros=750_000,
    status=PaymentStatus.SUCCEEDED,
    attempts=1,
    created_at=NOW - timedelta(hours=1),
    stripe_customer_id="cus_1",
    stripe_payment_method_id="pm_1",
    stripe_payment_intent_id="pi_1",
)
INTENT = IntentState("pi_1", "succeeded", 375, "usd", PURCHASE.id)
PAYOUT = Payout(
    id=uuid.uuid4(),
    agency_id=PURCHASE.agency_id,
    amount_micros=750_000,
    status=PayoutStatus.PAID,
    destination="acct_1",
    created_at=NOW - timedelta(hours=1),
    stripe_transfer_id="tr_1",
)
TRANSFER = TransferState("tr_1", 75, "acct_1", PAYOUT.id)


def test_a_purchase_agrees_when_stripe_and_the_ledger_tell_its_story():
    assert check_purchase(PURCHASE, INTENT, 600, NOW).agrees
    failed = replace(PURCHASE, status=PaymentStatus.FAILED)
    assert check_purchase(failed, replace(INTENT, status="requires_payment_method"), 0, NOW).agrees
    young = replace(PURCHASE, status=PaymentStatus.PENDING, created_at=NOW - timedelta(minutes=2))
    assert check_purchase(young, None, 0, NOW).agrees


def test_each_way_a_purchase_can_disagree_is_named():
    assert check_purchase(PURCHASE, INTENT, 1200, NOW).problems == (
        "credited 1200 s, bought 600 s",
    )
    assert check_purchase(PURCHASE, INTENT, 0, NOW).problems == ("credited 0 s, bought 600 s",)
    other = replace(INTENT, purchase_id=uuid.uuid4())
    assert "belongs to purchase" in check_purchase(PURCHASE, other, 600, NOW).problems[0]
    no_intent = replace(PURCHASE, stripe_payment_intent_id=None)
    assert check_purchase(no_intent, None, 600, NOW).problems == (
        "SUCCEEDED without a PaymentIntent",
    )
    stale = replace(PURCHASE, status=PaymentStatus.PENDING)
    assert check_purchase(stale, None, 0, NOW).problems == (
        "PENDING for longer than the reconciliation job allows",
    )
    # a retried auto allocation is its job's until its next_attempt_at
    retrying = replace(stale, next_attempt_at=NOW + timedelta(minutes=5))
    assert check_purchase(retrying, None, 0, NOW).agrees
    assert not check_purchase(PURCHASE, Unreachable("down"), 600, NOW).agrees


def test_an_earlier_attempt_charged_at_stripe_is_flagged():
    retried = replace(PURCHASE, kind=PurchaseKind.AUTO_ALLOCATION, attempts=2, profit_micros=0)
    declined = IntentState("pi_0", "requires_payment_method", 375, "usd", PURCHASE.id, None, 1)
    assert check_purchase(retried, INTENT, 600, NOW, [declined]).agrees
    charged = replace(declined, status="succeeded")
    assert check_purchase(retried, INTENT, 600, NOW, [charged]).problems == (
        "an earlier attempt's PaymentIntent pi_0 succeeded at Stripe",
    )
    assert not check_purchase(retried, INTENT, 600, NOW, Unreachable("down")).agrees


def test_each_way_a_payout_can_disagree_is_named():
    assert check_payout(PAYOUT, TRANSFER, NOW).agrees
    assert check_payout(PAYOUT, replace(TRANSFER, destination="acct_2"), NOW).problems == (
        "transferred to acct_2, not acct_1",
    )
    failed = replace(PAYOUT, status=PayoutStatus.FAILED, stripe_transfer_id=None)
    assert check_payout(failed, None, NOW).agrees
    # PENDING is the payouts job's (hourly) for an hour and a half
    pending = replace(PAYOUT, status=PayoutStatus.PENDING, stripe_transfer_id=None)
    assert check_payout(pending, None, NOW).agrees
    stale = replace(pending, created_at=NOW - timedelta(hours=2))
    assert check_payout(stale, None, NOW).problems == (
        "PENDING for longer than the payouts job allows",
    )
    assert check_payout(replace(PAYOUT, stripe_transfer_id=None), None, NOW).problems == (
        "PAID without a Transfer",
    )
