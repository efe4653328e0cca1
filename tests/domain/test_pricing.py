"""Prices, markups and the conversion rule behind transfers, proved over random inputs.

SPEC "Moving minutes": the value moves, not the count; received = sent * price(from) /
price(to), rounded down to a whole second; the value received never exceeds the value sent and
the loss is under one second's worth at the destination price. Everything here is exact: a
price per minute times seconds is compared as Fractions, never as floats.
"""

from __future__ import annotations

import math
import uuid
from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from domain.agency import BalanceSource, SubAccount, SubAccountKind, SubAccountStatus
from domain.errors import DomainError, ErrorCode
from domain.ledger import LedgerKind
from domain.money import Tier, to_dollars
from domain.pricing import (
    PriceBook,
    bp_to_percent,
    client_price_micros,
    client_price_per_minute,
    convert_seconds,
    markup_bp,
    minutes_to_whole_seconds,
    price_to_dollars,
    to_micros,
    value_of_seconds,
    wallet_micros,
)
from domain.transfer import plan_conversion, plan_transfer

AGENCY_ID = uuid.uuid4()

base_prices = st.integers(min_value=1, max_value=10_000_000)  # micro-dollars per minute
markups = st.integers(min_value=0, max_value=100_000)  # basis points: 0 .. 1000 %
seconds = st.integers(min_value=0, max_value=10**9)
tiers = st.sampled_from(Tier)
price_books = st.builds(
    PriceBook,
    basic_micros_per_minute=base_prices,
    premium_micros_per_minute=base_prices,
    web_widget_basic_micros_per_minute=base_prices,
)


def account(
    markup_basic: int = 0,
    markup_premium: int = 0,
    status: SubAccountStatus = SubAccountStatus.ACTIVE,
    kind: SubAccountKind = SubAccountKind.SECONDARY,
) -> SubAccount:
    return SubAccount(
        id=uuid.uuid4(),
        agency_id=AGENCY_ID,
        kind=kind,
        name="Client",
        login_email=f"{uuid.uuid4().hex}@client.example",
        status=status,
        subscription_start_date=date(2024, 1, 31),
        balance_source=BalanceSource.CUSTOMER,
        knowledge_pack_credits=0,
        markup_basic_bp=markup_basic,
        markup_premium_bp=markup_premium,
    )


live_accounts = st.builds(
    account,
    markup_basic=markups,
    markup_premium=markups,
    kind=st.sampled_from(SubAccountKind),
)


# --- convert_seconds: the conversion rule -------------------------------------------------


@given(base=base_prices, from_bp=markups, to_bp=markups, sent=seconds)
def test_value_received_never_exceeds_value_sent(base, from_bp, to_bp, sent):
    from_price = client_price_per_minute(base, from_bp)
    to_price = client_price_per_minute(base, to_bp)
    received = convert_seconds(sent, from_price, to_price)
    assert received * to_price <= sent * from_price
    assert value_of_seconds(received, to_price) <= value_of_seconds(sent, from_price)


@given(base=base_prices, from_bp=markups, to_bp=markups, sent=seconds)
def test_the_loss_is_under_one_second_at_the_destination_price(base, from_bp, to_bp, sent):
    from_price = client_price_per_minute(base, from_bp)
    to_price = client_price_per_minute(base, to_bp)
    received = convert_seconds(sent, from_price, to_price)
    # in (price per minute) x seconds: one second at the destination is worth to_price
    assert 0 <= sent * from_price - received * to_price < to_price
    loss = value_of_seconds(sent, from_price) - value_of_seconds(received, to_price)
    assert loss < value_of_seconds(1, to_price)


@given(base=base_prices, bp=markups, sent=seconds)
def test_equal_prices_move_the_count_unchanged(base, bp, sent):
    price = client_price_per_minute(base, bp)
    assert convert_seconds(sent, price, price) == sent


@given(base=base_prices, from_bp=markups, to_bp=markups, a=seconds, b=seconds)
def test_received_is_a_whole_non_negative_count_that_grows_with_what_is_sent(
    base, from_bp, to_bp, a, b
):
    from_price = client_price_per_minute(base, from_bp)
    to_price = client_price_per_minute(base, to_bp)
    low, high = sorted((a, b))
    received_low = convert_seconds(low, from_price, to_price)
    received_high = convert_seconds(high, from_price, to_price)
    assert type(received_low) is int and type(received_high) is int
    assert 0 <= received_low <= received_high


def test_nothing_sent_is_nothing_received_and_a_free_destination_is_refused():
    price = client_price_per_minute(180_000, 2_500)
    assert convert_seconds(0, price, client_price_per_minute(300_000, 0)) == 0
    with pytest.raises(ValueError):
        convert_seconds(60, price, Fraction(0))


def test_a_worked_example_from_the_spec_prices():
    # BASIC $0.18: primary (0 %) sends 10 minutes to a client at 25 % ($0.225/min).
    primary, client = client_price_per_minute(180_000, 0), client_price_per_minute(180_000, 2_500)
    assert client == 225_000
    assert convert_seconds(600, primary, client) == 480  # exactly $1.80 either way
    assert convert_seconds(480, client, primary) == 600
    # 7 s at $0.18 = $0.021 buys 5.6 s at $0.225: 5 arrive, 0.6 s ($0.00225) is lost
    assert convert_seconds(7, primary, client) == 5


# --- client prices ------------------------------------------------------------------------


@given(base=base_prices, bp=markups)
def test_client_price_is_base_cost_times_one_plus_markup(base, bp):
    price = client_price_per_minute(base, bp)
    assert price == Fraction(base) * (1 + Fraction(bp, 10_000))
    assert price >= base
    assert client_price_per_minute(base, 0) == base


@given(base=base_prices, a=markups, b=markups)
def test_a_higher_markup_never_gives_a_lower_price(base, a, b):
    low, high = sorted((a, b))
    assert client_price_per_minute(base, low) <= client_price_per_minute(base, high)


# --- plan_transfer: what a user-requested transfer may do ---------------------------------


@given(
    source=live_accounts,
    destination=live_accounts,
    tier=tiers,
    sent=st.integers(min_value=1, max_value=10**9),
    prices=price_books,
)
def test_transfer_movements_debit_what_is_sent_and_credit_what_arrives(
    source, destination, tier, sent, prices
):
    base = prices.base_per_minute(tier)
    expected = convert_seconds(
        sent,
        client_price_per_minute(base, source.markup_bp(tier)),
        client_price_per_minute(base, destination.markup_bp(tier)),
    )
    assume(expected > 0)
    plan = plan_transfer(source, destination, tier, sent, prices)
    assert (plan.sent_seconds, plan.received_seconds) == (sent, expected)
    moves = plan.movements(AGENCY_ID, source.id, destination.id, "transfer:x")
    assert sum(m.delta_seconds for m in moves) == -sent + plan.received_seconds
    by_account = {m.sub_account_id: m for m in moves}
    assert len(moves) == 2 and len(by_account) == 2
    out, into = by_account[source.id], by_account[destination.id]
    assert (out.delta_seconds, out.kind) == (-sent, LedgerKind.TRANSFER_OUT)
    assert (into.delta_seconds, into.kind) == (plan.received_seconds, LedgerKind.TRANSFER_IN)
    assert {(m.tier, m.agency_id, m.reference) for m in moves} == {(tier, AGENCY_ID, "transfer:x")}


@given(source=live_accounts, destination=live_accounts, tier=tiers, prices=price_books)
def test_transfer_prices_are_both_accounts_client_prices_for_the_tier(
    source, destination, tier, prices
):
    plan = plan_conversion(source, destination, tier, 60, prices)
    base = prices.base_per_minute(tier)
    assert plan.base_micros_per_minute == base
    assert plan.from_price == client_price_per_minute(base, source.markup_bp(tier))
    assert plan.to_price == client_price_per_minute(base, destination.markup_bp(tier))
    assert (plan.from_markup_bp, plan.to_markup_bp) == (
        source.markup_bp(tier),
        destination.markup_bp(tier),
    )


@given(
    status=st.sampled_from(SubAccountStatus),
    bp=markups,
    tier=tiers,
    sent=st.integers(min_value=1, max_value=10**6),
)
def test_transfer_to_the_same_sub_account_is_refused(status, bp, tier, sent):
    same = account(bp, bp, status)
    with pytest.raises(DomainError) as refused:
        plan_transfer(same, same, tier, sent, PriceBook())
    assert refused.value.code is ErrorCode.SAME_SUBACCOUNT


@given(
    live=live_accounts,
    suspended_is_source=st.booleans(),
    tier=tiers,
    sent=st.integers(min_value=1, max_value=10**6),
)
def test_transfer_from_or_to_a_suspended_sub_account_is_refused(
    live, suspended_is_source, tier, sent
):
    suspended = account(0, 0, SubAccountStatus.SUSPENDED)
    source, destination = (suspended, live) if suspended_is_source else (live, suspended)
    with pytest.raises(DomainError) as refused:
        plan_transfer(source, destination, tier, sent, PriceBook())
    assert refused.value.code is ErrorCode.SUBACCOUNT_SUSPENDED
    assert refused.value.field == (("fromId",) if suspended_is_source else ("toId",))


@pytest.mark.parametrize("status", [SubAccountStatus.REMOVED, SubAccountStatus.MERGED])
@pytest.mark.parametrize("gone_is_source", [True, False])
def test_transfer_from_or_to_a_removed_or_merged_sub_account_is_refused(status, gone_is_source):
    gone, live = account(status=status), account()
    source, destination = (gone, live) if gone_is_source else (live, gone)
    with pytest.raises(DomainError) as refused:
        plan_transfer(source, destination, Tier.BASIC, 600, PriceBook())
    assert refused.value.code is ErrorCode.SUBACCOUNT_REMOVED


@given(
    source=live_accounts,
    destination=live_accounts,
    tier=tiers,
    sent=st.integers(min_value=0, max_value=20),
    prices=price_books,
)
def test_transfer_that_would_deliver_no_whole_second_is_refused(
    source, destination, tier, sent, prices
):
    arrives = plan_conversion(source, destination, tier, sent, prices).received_seconds
    if arrives:
        assert plan_transfer(source, destination, tier, sent, prices).received_seconds == arrives
    else:
        with pytest.raises(DomainError) as refused:
            plan_transfer(source, destination, tier, sent, prices)
        assert refused.value.code is ErrorCode.INVALID_INPUT


def test_one_second_to_a_dearer_account_delivers_nothing_and_is_refused():
    primary, client = account(kind=SubAccountKind.PRIMARY), account(100, 100)
    with pytest.raises(DomainError) as refused:
        plan_transfer(primary, client, Tier.BASIC, 1, PriceBook())
    assert refused.value.code is ErrorCode.INVALID_INPUT
    assert plan_transfer(client, primary, Tier.BASIC, 1, PriceBook()).received_seconds == 1


@given(
    a=live_accounts,
    b=live_accounts,
    tier=tiers,
    sent=st.integers(min_value=1, max_value=10**9),
    prices=price_books,
)
def test_transfer_never_creates_value(a, b, tier, sent, prices):
    """A -> B, then B -> A of everything that arrived, gives A back at most what it sent."""
    there = plan_conversion(a, b, tier, sent, prices)
    assume(there.received_seconds > 0)
    assert plan_transfer(a, b, tier, sent, prices) == there
    back = plan_conversion(b, a, tier, there.received_seconds, prices)
    assert back.received_seconds <= sent
    # and the value is never more at any step
    assert there.received_seconds * there.to_price <= sent * there.from_price
    assert back.received_seconds * back.to_price <= there.received_seconds * back.from_price


# --- markups -------------------------------------------------------------------------------

valid_percents = st.decimals(min_value=0, max_value=1000, places=2)


@given(percent=valid_percents)
def test_markups_with_at_most_two_decimals_in_0_to_1000_round_trip_through_basis_points(
    percent,
):
    bp = markup_bp(percent)
    assert type(bp) is int
    assert 0 <= bp <= 100_000
    assert Fraction(bp, 100) == Fraction(percent)
    assert bp_to_percent(bp) == percent


@pytest.mark.parametrize(
    ("text", "bp"),
    [("0", 0), ("-0", 0), ("12.3400", 1234), ("1E+3", 100_000), ("0.01", 1), ("999.99", 99_999)],
)
def test_markups_written_in_any_exact_notation_are_accepted(text, bp):
    assert markup_bp(Decimal(text)) == bp


@given(
    percent=st.integers(min_value=0, max_value=10**9)
    .filter(lambda n: n % 10_000 != 0)
    .map(lambda n: Decimal(n).scaleb(-6))
)
def test_markups_with_more_than_two_decimals_are_refused(percent):
    with pytest.raises(DomainError) as refused:
        markup_bp(percent)
    assert refused.value.code is ErrorCode.INVALID_INPUT
    assert refused.value.field == ("markupPercent",)


@given(
    percent=st.one_of(
        st.decimals(max_value=Decimal("-0.01"), allow_nan=False, allow_infinity=False, places=2),
        st.decimals(min_value=Decimal("1000.01"), allow_nan=False, allow_infinity=False, places=2),
        st.sampled_from([Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Inf")]),
    )
)
def test_markups_outside_0_to_1000_percent_or_not_finite_are_refused(percent):
    with pytest.raises(DomainError) as refused:
        markup_bp(percent, "markup")
    assert refused.value.code is ErrorCode.INVALID_INPUT
    assert refused.value.field == ("markup",)


@pytest.mark.parametrize(
    "text", ["1.00000000000000000000000000001", "999.99999999999999999999999999"]
)
def test_markups_with_many_significant_digits_are_refused_not_rounded(text):
    with pytest.raises(DomainError):
        markup_bp(Decimal(text))  # exact: not rounded to 100 or 100000 bp


# --- minutes from the API ------------------------------------------------------------------


@given(k=st.integers(min_value=1, max_value=20 * 10**9), exponent=st.integers(0, 4))
def test_minutes_that_come_to_whole_seconds_are_accepted(k, exponent):
    # k/20 minutes = 3k seconds: the finite decimals that are whole seconds
    minutes = (Decimal(k) / 20).quantize(Decimal(1).scaleb(-2 - exponent))
    assert minutes_to_whole_seconds(minutes) == 3 * k


@given(
    minutes=st.one_of(
        st.decimals(min_value=Decimal("0.000001"), max_value=10**6, places=6),
        st.decimals(min_value=Decimal("1E-40"), max_value=10**9, allow_nan=False),  # any digits
    ).filter(lambda m: (Fraction(m) * 60).denominator != 1)
)
def test_minutes_that_do_not_come_to_whole_seconds_are_refused(minutes):
    with pytest.raises(DomainError) as refused:
        minutes_to_whole_seconds(minutes)
    assert refused.value.code is ErrorCode.INVALID_INPUT
    assert refused.value.field == ("minutes",)


@given(
    minutes=st.one_of(
        st.decimals(max_value=0, allow_nan=False, allow_infinity=False),
        st.sampled_from([Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Inf")]),
    )
)
def test_non_positive_or_non_finite_minutes_are_refused(minutes):
    with pytest.raises(DomainError) as refused:
        minutes_to_whole_seconds(minutes, "amount")
    assert refused.value.code is ErrorCode.INVALID_INPUT
    assert refused.value.field == ("amount",)


@pytest.mark.parametrize(
    ("text", "whole_seconds"), [("1", 60), ("0.05", 3), ("1.5", 90), ("2.50000", 150)]
)
def test_minutes_examples(text, whole_seconds):
    assert minutes_to_whole_seconds(Decimal(text)) == whole_seconds
    with pytest.raises(DomainError):
        minutes_to_whole_seconds(Decimal(text) + Decimal("0.01"))  # 0.6 s more


@pytest.mark.parametrize(
    "text", ["1.00000000000000000000000000001", "0.0166666666666666666666666666667"]
)
def test_minutes_with_many_significant_digits_are_refused_not_rounded(text):
    with pytest.raises(DomainError):
        minutes_to_whole_seconds(Decimal(text))  # not rounded to 60 s and 1 s


# --- rounding and types --------------------------------------------------------------------


@given(
    numerator=st.integers(min_value=0, max_value=10**18),
    denominator=st.integers(min_value=1, max_value=10**6),
)
def test_to_micros_rounds_half_up_to_the_micro_dollar(numerator, denominator):
    amount = Fraction(numerator, denominator)
    rounded = to_micros(amount)
    assert type(rounded) is int
    assert rounded == math.floor(amount + Fraction(1, 2))
    assert abs(amount - rounded) <= Fraction(1, 2)


@pytest.mark.parametrize(
    ("amount", "micros"),
    [
        (Fraction(5, 2), 3),
        (Fraction(7, 2), 4),
        (Fraction(1, 2), 1),
        (Fraction(2_499_999, 1_000_000), 2),
        (Fraction(1, 3), 0),
        (Fraction(2, 3), 1),
        (Fraction(0), 0),
    ],
)
def test_to_micros_examples(amount, micros):
    assert to_micros(amount) == micros


@given(base=base_prices, bp=markups, sent=seconds)
def test_wallet_values_round_once_half_up(base, bp, sent):
    price = client_price_per_minute(base, bp)
    value = value_of_seconds(sent, price)
    assert value == Fraction(sent) * price / 60
    assert to_micros(value) == math.floor(value + Fraction(1, 2))


@given(
    base=base_prices,
    bp=markups,
    sent=seconds,
    micros=st.integers(min_value=-(10**15), max_value=10**15),
    prices=price_books,
    a=live_accounts,
    b=live_accounts,
    tier=tiers,
)
def test_money_is_never_a_float(base, bp, sent, micros, prices, a, b, tier):
    price = client_price_per_minute(base, bp)
    assert type(price) is Fraction
    assert type(value_of_seconds(sent, price)) is Fraction
    assert type(to_micros(price)) is int
    assert type(price_to_dollars(price)) is Decimal
    assert type(bp_to_percent(bp)) is Decimal
    assert type(to_dollars(micros)) is Decimal
    assert type(convert_seconds(sent, price, price)) is int
    for value in vars(prices).values():
        assert type(value) is int
    plan = plan_conversion(a, b, tier, sent, prices)
    for field in ("sent_seconds", "received_seconds", "base_micros_per_minute"):
        assert type(getattr(plan, field)) is int
    assert type(plan.from_markup_bp) is int and type(plan.to_markup_bp) is int
    assert type(plan.from_price) is Fraction and type(plan.to_price) is Fraction
    for default in vars(PriceBook()).values():
        assert type(default) is int


def test_price_book_defaults_are_the_spec_prices():
    book = PriceBook()
    assert book.base_per_minute(Tier.BASIC) == 180_000
    assert book.base_per_minute(Tier.PREMIUM) == 300_000
    assert book.web_widget_basic_micros_per_minute == 160_000
    assert price_to_dollars(client_price_per_minute(180_000, 2_500)) == Decimal("0.225")


def test_more_minutes_than_any_balance_could_hold_are_refused_not_overflowed():
    with pytest.raises(DomainError) as refused:
        minutes_to_whole_seconds(Decimal("1E+18"))
    assert refused.value.code is ErrorCode.INVALID_INPUT


@given(st.integers(-(10**30), 10**30), st.integers(1, 10**18))
def test_to_micros_rounds_half_up_away_from_zero_like_decimal(numerator, denominator):
    from decimal import ROUND_HALF_UP, localcontext

    with localcontext() as context:
        context.prec = 80  # exact for these sizes
        expected = (Decimal(numerator) / Decimal(denominator)).quantize(
            Decimal(1), rounding=ROUND_HALF_UP
        )
    assert to_micros(Fraction(numerator, denominator)) == int(expected)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 60 * 10**9),  # seconds
            st.sampled_from([160_000, 180_000, 300_000, 1]),  # base per minute
            st.integers(0, 100_000),  # markup bp
        ),
        max_size=3,
    )
)
@example([(1, 30, 0)])  # exactly half a micro-dollar: up
@example([(7, 1, 32_857)])  # 299,999 / 600,000 of a micro-dollar: down
@example([(7, 1, 32_857), (1, 1, 0)])  # 309,999 / 600,000 together: up, rounded once
def test_a_wallet_is_its_balances_at_client_prices_rounded_once(holdings):
    exact = sum(
        (value_of_seconds(s, client_price_per_minute(base, bp)) for s, base, bp in holdings),
        Fraction(0),
    )
    assert wallet_micros(holdings) == to_micros(exact)


@given(base_prices, st.integers(0, 100_000))
@example(1, 5_000)  # 1.5 micro-dollars: up
@example(3, 1_666)  # 3.4998 micro-dollars: down
def test_a_displayed_client_price_is_the_exact_one_rounded_half_up(base, bp):
    assert client_price_micros(base, bp) == to_micros(client_price_per_minute(base, bp))
