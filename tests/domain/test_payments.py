"""The money rules of a purchase: a card charge rounds once, to the cent, half up; the agency's
profit is exact; Stripe's answer moves a purchase only as far as it says."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.agency import BalanceSource, SubAccount, SubAccountKind, SubAccountStatus
from domain.errors import DomainError, ErrorCode
from domain.money import Tier
from domain.payments import (
    MAX_PURCHASE_MINUTES,
    MICROS_PER_CENT,
    Declined,
    IntentState,
    PaymentStatus,
    PurchaseKind,
    charge_cents,
    new_purchase,
    next_attempt_after,
    outcome,
    payer_of,
    quote_auto_allocation,
    quote_purchase,
)
from domain.pricing import PriceBook, client_price_per_minute

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
PRICES = PriceBook()


def account(markup_bp: int = 0, primary: bool = False, source=BalanceSource.CUSTOMER):
    return SubAccount(
        id=uuid.uuid4(),
        agency_id=uuid.uuid4(),
        kind=SubAccountKind.PRIMARY if primary else SubAccountKind.SECONDARY,
        name="Acme",
        login_email="acme@example.com",
        status=SubAccountStatus.ACTIVE,
        subscription_start_date=date(2026, 1, 31),
        balance_source=source,
        knowledge_pack_credits=0,
        markup_basic_bp=markup_bp,
        markup_premium_bp=markup_bp,
    )


@given(
    minutes=st.integers(min_value=1, max_value=MAX_PURCHASE_MINUTES),
    markup_bp=st.integers(min_value=0, max_value=100_000),
    tier=st.sampled_from(Tier),
)
def test_a_charge_is_the_exact_price_rounded_once_to_the_cent_and_the_profit_is_exact(
    minutes, markup_bp, tier
):
    base = PRICES.base_per_minute(tier)
    exact = minutes * client_price_per_minute(base, markup_bp)  # micro-dollars, a fraction
    try:
        quote = quote_purchase(account(markup_bp), tier, minutes, PRICES)
    except DomainError as error:
        assert error.code is ErrorCode.AMOUNT_TOO_SMALL
        assert exact < 495_000  # under $0.495: rounds below the $0.50 minimum
        return
    # within half a cent of the exact amount, rounding half up
    assert abs(Fraction(quote.amount_micros) - exact) <= MICROS_PER_CENT // 2
    if Fraction(quote.amount_micros) - exact == -MICROS_PER_CENT // 2:
        raise AssertionError("a half cent rounds up")
    assert quote.amount_cents >= 50
    # the profit is the markup on the minutes, exactly (whole micro-dollars at these prices)
    assert quote.profit_micros == minutes * base * markup_bp / 10_000
    assert quote.seconds == minutes * 60


def test_half_a_cent_rounds_up():
    assert charge_cents(Fraction(5_000)) == 1
    assert charge_cents(Fraction(4_999)) == 0
    assert charge_cents(Fraction(15_000)) == 2


def test_the_primary_pays_base_cost_and_earns_nothing():
    quote = quote_purchase(account(primary=True), Tier.PREMIUM, 10, PRICES)
    assert (quote.amount_cents, quote.profit_micros) == (300, 0)


def test_an_auto_allocation_is_at_base_cost_without_profit():
    quote = quote_auto_allocation(Tier.BASIC, 100, PRICES)
    assert (quote.amount_cents, quote.profit_micros) == (1800, 0)


def test_who_pays():
    primary = account(primary=True)
    own = account()
    funded = account(source=BalanceSource.AGENCY)
    assert payer_of(own, primary) is own
    assert payer_of(funded, primary) is primary
    assert payer_of(primary, primary) is primary


def test_minutes_are_between_one_and_a_hundred_thousand():
    for minutes in (0, -1, MAX_PURCHASE_MINUTES + 1):
        with pytest.raises(DomainError):
            quote_purchase(account(2500), Tier.PREMIUM, minutes, PRICES)


def _purchase(kind=PurchaseKind.CLIENT_PURCHASE, attempts=1):
    quote = quote_purchase(account(2500), Tier.PREMIUM, 10, PRICES)
    made = new_purchase(
        uuid.uuid4(), account(2500), account(primary=True), kind, quote, "cus_1", "pm_1", NOW
    )
    from dataclasses import replace

    return replace(made, attempts=attempts)


def _intent(status: str, amount: int = 375, currency: str = "usd") -> IntentState:
    return IntentState("pi_1", status, amount, currency, None)


def test_stripes_answer_moves_a_purchase_only_as_far_as_it_says():
    purchase = _purchase()
    assert outcome(purchase, _intent("succeeded")) is PaymentStatus.SUCCEEDED
    assert outcome(purchase, _intent("requires_payment_method")) is PaymentStatus.FAILED
    assert outcome(purchase, _intent("canceled")) is PaymentStatus.FAILED
    assert outcome(purchase, _intent("processing")) is PaymentStatus.PENDING
    assert outcome(purchase, Declined("no")) is PaymentStatus.FAILED
    # a success for another amount or currency credits nothing: reconciliation flags it
    assert outcome(purchase, _intent("succeeded", amount=374)) is PaymentStatus.PENDING
    assert outcome(purchase, _intent("succeeded", currency="eur")) is PaymentStatus.PENDING


def test_a_failed_auto_allocation_is_retried_after_1_6_and_24_hours_then_left():
    waits = [
        next_attempt_after(_purchase(PurchaseKind.AUTO_ALLOCATION, attempts), NOW)
        for attempts in (1, 2, 3, 4)
    ]
    assert waits == [
        NOW + timedelta(hours=1),
        NOW + timedelta(hours=6),
        NOW + timedelta(hours=24),
        None,
    ]
    assert next_attempt_after(_purchase(), NOW) is None  # a client buys again itself


def test_each_attempt_reaches_stripe_under_its_own_key_made_from_the_purchase():
    from dataclasses import replace

    first = _purchase(attempts=1)
    second = replace(first, attempts=2)
    assert str(first.id) in first.stripe_idempotency_key
    assert first.stripe_idempotency_key == replace(first).stripe_idempotency_key
    assert second.stripe_idempotency_key != first.stripe_idempotency_key
