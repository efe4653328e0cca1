"""Wallet automation's pure rules: when a debit asks for a recharge, what the job does with a
request, the backoff, and when a spending cap holds."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.agency import BalanceSource, SubAccount, SubAccountKind, SubAccountStatus
from domain.auto_recharge import AutoRecharge, Step, failed, next_step, requests_after
from domain.money import Tier
from domain.spending_cap import lift, period_turned, reach

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
ON = AutoRecharge(True, Tier.PREMIUM, 5, 20)  # below 300 seconds, buy 20 minutes


def client(**changes) -> SubAccount:
    values = {
        "id": uuid.uuid4(),
        "agency_id": uuid.uuid4(),
        "kind": SubAccountKind.SECONDARY,
        "name": "Acme",
        "login_email": "acme@example.com",
        "status": SubAccountStatus.ACTIVE,
        "subscription_start_date": date(2026, 11, 1),
        "balance_source": BalanceSource.CUSTOMER,
        "knowledge_pack_credits": 0,
    }
    return SubAccount(**{**values, **changes})


@given(after=st.integers(0, 1000), open_request=st.booleans(), tier=st.sampled_from(Tier))
def test_a_debit_asks_only_below_the_threshold_of_its_tier_and_once(after, open_request, tier):
    account = uuid.uuid4()
    wanted = requests_after(
        {account: (ON, open_request)}, [(account, tier)], {(account, tier): after}
    )
    expected = after < 300 and tier is Tier.PREMIUM and not open_request
    assert wanted == ([(account, tier)] if expected else [])


def test_accounts_without_a_setting_ask_nothing():
    account = uuid.uuid4()
    assert requests_after({}, [(account, Tier.PREMIUM)], {(account, Tier.PREMIUM): 0}) == []
    off = AutoRecharge(False, Tier.PREMIUM, 5, 20)
    assert requests_after({account: (off, False)}, [(account, Tier.PREMIUM)], {}) == []


def test_the_job_charges_waits_or_drops():
    def step(setting=ON, active=True, seconds=100, in_flight=False, card="pm_1", now=NOW):
        return next_step(setting, active, Tier.PREMIUM, seconds, in_flight, card, now)

    assert step() is Step.CHARGE
    assert step(in_flight=True) is Step.WAIT
    assert step(seconds=300) is Step.DROP  # bought meanwhile
    assert step(active=False) is Step.DROP
    assert step(setting=AutoRecharge(False, Tier.PREMIUM, 5, 20)) is Step.DROP
    blocked = failed(ON, "pm_1", NOW)
    assert step(setting=blocked) is Step.WAIT
    assert step(setting=blocked, now=NOW + timedelta(hours=5, minutes=59)) is Step.WAIT
    assert step(setting=blocked, now=NOW + timedelta(hours=6)) is Step.CHARGE
    assert step(setting=blocked, card="pm_2") is Step.CHARGE  # the card changed
    assert step(setting=failed(ON, None, NOW), card="pm_2") is Step.CHARGE  # a first card
    assert blocked.payment_failed


def test_a_cap_holds_from_the_amount_reached_until_it_is_above_the_spending():
    account = client()
    assert reach(account, None, 10**9, NOW) is None
    assert reach(account, 1_000_000, 999_999, NOW) is None
    capped = reach(account, 1_000_000, 1_000_000, NOW)
    assert capped is not None and capped.state.capped_at == NOW
    assert reach(capped.state, 1_000_000, 2_000_000, NOW) is None  # capped once
    assert lift(capped.state, 1_000_000, 1_500_000) is None
    assert lift(capped.state, 2_000_000, 1_500_000) is not None  # a higher cap
    assert lift(capped.state, None, 1_500_000) is not None  # no cap
    assert lift(capped.state, 1_000_000, 0) is not None  # a new period
    assert reach(client(status=SubAccountStatus.REMOVED), 1, 1, NOW) is None


def test_a_cap_lets_go_on_its_own_only_when_the_billing_period_turns():
    account = client(subscription_start_date=date(2026, 1, 31))  # periods start on the 31st/last
    assert not period_turned(account, date(2026, 2, 27), date(2026, 2, 1))
    assert period_turned(account, date(2026, 2, 28), date(2026, 2, 1))  # clamped to the 28th
    assert not period_turned(account, date(2026, 3, 30), date(2026, 2, 28))
    assert period_turned(account, date(2026, 3, 31), date(2026, 3, 30))
