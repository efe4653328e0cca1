from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.billing_cycle import (
    add_months,
    next_anniversary,
    period_start,
    period_started_at,
    periods_begun,
    periods_until,
)


def test_month_end_anchor_clamps_to_each_months_last_day():
    # given an anchor on Jan 31
    anchor = date(2025, 1, 31)
    # then each anniversary is computed from the anchor, not from the clamped date
    assert [add_months(anchor, n) for n in range(4)] == [
        date(2025, 1, 31),
        date(2025, 2, 28),
        date(2025, 3, 31),
        date(2025, 4, 30),
    ]


def test_leap_year_february_gets_the_29th():
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2024, 2, 29), 12) == date(2025, 2, 28)


def test_next_anniversary_is_strictly_after_today():
    anchor = date(2026, 1, 15)
    assert next_anniversary(anchor, date(2026, 3, 14)) == date(2026, 3, 15)
    assert next_anniversary(anchor, date(2026, 3, 15)) == date(2026, 4, 15)
    # a subscription that starts in the future is first billed on its start date
    assert next_anniversary(anchor, date(2025, 12, 1)) == date(2026, 1, 15)


@given(
    anchor=st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
    offset=st.integers(min_value=0, max_value=3650),
)
def test_next_anniversary_is_the_first_clamped_monthly_date_after_today(anchor, offset):
    today = anchor + timedelta(days=offset)
    nxt = next_anniversary(anchor, today)
    assert today < nxt <= today + timedelta(days=31)
    # it falls on the anchor's day, or on the month's last day when the month is shorter
    assert nxt.day == anchor.day or (nxt + timedelta(days=1)).day == 1


def test_a_period_starts_at_local_midnight_in_the_agency_zone():
    anchor = date(2026, 1, 5)
    now = datetime(2026, 11, 5, 3, 0, tzinfo=UTC)  # still 4 Nov, 19:00, in Los Angeles
    assert period_started_at(anchor, now, "UTC") == datetime(2026, 11, 5, tzinfo=UTC)
    # in Los Angeles the November period has not begun: October's began at 07:00 UTC
    assert period_started_at(anchor, now, "America/Los_Angeles") == datetime(
        2026, 10, 5, 7, 0, tzinfo=UTC
    )


def test_periods_until_lists_each_clamped_first_day_up_to_today_included():
    anchor = date(2026, 1, 31)
    assert periods_until(anchor, date(2026, 1, 30)) == []  # not begun yet
    assert periods_until(anchor, date(2026, 1, 31)) == [anchor]
    assert periods_until(anchor, date(2026, 3, 30)) == [anchor, date(2026, 2, 28)]
    assert periods_until(anchor, date(2026, 3, 31)) == [
        anchor,
        date(2026, 2, 28),
        date(2026, 3, 31),  # from the anchor, not from 28 Feb
    ]


@given(
    anchor=st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
    offset=st.integers(min_value=0, max_value=1500),
)
def test_periods_until_ends_with_the_period_today_falls_in(anchor, offset):
    today = anchor + timedelta(days=offset)
    periods = periods_until(anchor, today)
    assert periods[0] == anchor and periods[-1] == period_start(anchor, today)
    assert periods == sorted(set(periods)) and len(periods) == len(set(periods))


def test_a_plan_period_begins_at_local_midnight_where_the_agency_is():
    anchor = date(2026, 10, 20)
    # 19 Nov 11:30 UTC is 20 Nov 00:30 in Auckland: November's period has begun there
    now = datetime(2026, 11, 19, 11, 30, tzinfo=UTC)
    assert periods_begun(anchor, now, "UTC") == [anchor]
    assert periods_begun(anchor, now, "Pacific/Auckland") == [anchor, date(2026, 11, 20)]
    # 20 Nov 07:30 UTC is still 19 Nov in Los Angeles: not yet
    later = datetime(2026, 11, 20, 7, 30, tzinfo=UTC)
    assert periods_begun(anchor, later, "UTC") == [anchor, date(2026, 11, 20)]
    assert periods_begun(anchor, later, "America/Los_Angeles") == [anchor]
