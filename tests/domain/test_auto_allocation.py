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


def test_periods_follow_the_anchor_clamped_from_the_day_it_was_turned_on():
    # anchored on Jan 31: Feb 28, Mar 31, Apr 30 — never Mar 28
    allocation = AutoAllocation(True, 100, 0, date(2026, 2, 1))
    assert periods_due(date(2026, 1, 31), allocation, date(2026, 4, 30)) == [
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
    ]
    # the day before a period begins, it is not due yet
    assert periods_due(date(2026, 1, 31), allocation, date(2026, 2, 27)) == []


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


@given(anchor=days, turned_on_after=st.integers(0, 800), today_after=st.integers(0, 900))
def test_due_periods_are_exactly_the_anniversaries_between_turning_on_and_today(
    anchor, turned_on_after, today_after
):
    enabled_on = anchor + timedelta(days=turned_on_after)
    today = enabled_on + timedelta(days=today_after)
    allocation = AutoAllocation(True, 10, 0, enabled_on)
    expected, months = [], 0
    while (start := add_months(anchor, months)) <= today:
        if start >= enabled_on:
            expected.append(start)
        months += 1
    due = periods_due(anchor, allocation, today)
    assert due == expected
    # the next charge after the last due one is the first anniversary after today
    last = due[-1] if due else None
    following = next_charge_date(anchor, allocation, last)
    assert following is not None and following > today and following >= enabled_on
    assert following == next(
        add_months(anchor, m) for m in range(10_000) if add_months(anchor, m) > today
    )
