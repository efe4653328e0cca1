"""Which billing periods a monthly auto allocation charges, and when it is next charged."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.auto_allocation import (
    OFF,
    AutoAllocation,
    configure,
    next_charge_date,
    periods_due,
)
from domain.billing_cycle import add_months
from domain.errors import DomainError, ErrorCode
from domain.pricing import PriceBook

PRICES = PriceBook()
ON = AutoAllocation(True, 100, 0, date(2026, 1, 31))


def test_the_period_under_way_is_due_clamped_to_the_month_end():
    # anchored on Jan 31: periods begin Feb 28, Mar 31, Apr 30 — never Mar 28
    allocation = AutoAllocation(True, 100, 0, date(2026, 2, 1))
    anchor = date(2026, 1, 31)
    assert periods_due(anchor, allocation, date(2026, 2, 28)) == [date(2026, 2, 28)]
    assert periods_due(anchor, allocation, date(2026, 3, 30)) == [date(2026, 2, 28)]
    assert periods_due(anchor, allocation, date(2026, 3, 31)) == [date(2026, 3, 31)]
    assert periods_due(anchor, allocation, date(2026, 4, 30)) == [date(2026, 4, 30)]
    # the period it was turned on in began before: not due
    assert periods_due(anchor, allocation, date(2026, 2, 27)) == []


def test_months_missed_are_not_caught_up():
    # turned on in June; the job runs again only in December: December's period alone
    allocation = AutoAllocation(True, 100, 50, date(2026, 6, 1))
    assert periods_due(date(2026, 1, 1), allocation, date(2026, 12, 15)) == [date(2026, 12, 1)]


def test_nothing_is_due_when_off_or_without_minutes():
    assert periods_due(date(2026, 1, 1), OFF, date(2027, 1, 1)) == []
    empty = AutoAllocation(True, 0, 0, date(2026, 1, 1))
    assert periods_due(date(2026, 1, 1), empty, date(2027, 1, 1)) == []
    assert next_charge_date(date(2026, 1, 1), empty, None) is None


def test_the_next_charge_is_the_first_period_not_yet_charged():
    anchor = date(2026, 1, 31)
    assert next_charge_date(anchor, ON, None) == date(2026, 1, 31)
    assert next_charge_date(anchor, ON, date(2026, 1, 31)) == date(2026, 2, 28)
    assert next_charge_date(anchor, ON, date(2026, 2, 28)) == date(2026, 3, 31)


def test_configure_keeps_the_day_of_one_already_on_and_restarts_it_when_turned_on_again():
    today = date(2026, 5, 10)
    changed = configure(ON, True, 200, 10, today, PRICES)
    assert changed.enabled_on == ON.enabled_on
    off = configure(ON, False, 200, 10, today, PRICES)
    assert off.enabled_on is None and not off.charges
    assert configure(off, True, 200, 10, today, PRICES).enabled_on == today


@pytest.mark.parametrize(
    ("basic", "premium", "field"), [(2, 0, "basicMinutes"), (0, 1, "premiumMinutes")]
)
def test_a_monthly_charge_below_the_card_minimum_is_refused(basic, premium, field):
    with pytest.raises(DomainError) as refused:
        configure(OFF, True, basic, premium, date(2026, 1, 1), PRICES)
    assert refused.value.code is ErrorCode.AMOUNT_TOO_SMALL
    assert refused.value.field == (field,)
    # turned off, any figures are kept without a charge
    assert not configure(OFF, False, 2, 1, date(2026, 1, 1), PRICES).charges


days = st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31))


@given(anchor=days, turned_on_after=st.integers(-400, 800), today_after=st.integers(0, 900))
def test_the_due_period_is_the_one_under_way_if_it_began_after_turning_on(
    anchor, turned_on_after, today_after
):
    enabled_on = anchor + timedelta(days=turned_on_after)
    today = max(enabled_on, anchor) + timedelta(days=today_after)
    allocation = AutoAllocation(True, 10, 0, enabled_on)
    begun = [add_months(anchor, m) for m in range(200) if add_months(anchor, m) <= today]
    current = begun[-1]
    due = periods_due(anchor, allocation, today)
    assert due == ([current] if current >= enabled_on else [])
    # the next charge is the first period on or after turning on that was not charged yet
    last = due[-1] if due else None
    following = next_charge_date(anchor, allocation, last)
    assert following is not None and following >= enabled_on
    if last is not None:
        assert following == next(
            add_months(anchor, m) for m in range(200) if add_months(anchor, m) > today
        )
    else:
        assert following == next(
            add_months(anchor, m) for m in range(200) if add_months(anchor, m) >= enabled_on
        )
