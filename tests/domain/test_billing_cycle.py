from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.billing_cycle import add_months, next_anniversary


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
    from datetime import UTC, datetime

    from domain.billing_cycle import period_started_at

    anchor = date(2026, 1, 5)
    now = datetime(2026, 11, 5, 3, 0, tzinfo=UTC)  # still 4 Nov, 19:00, in Los Angeles
    assert period_started_at(anchor, now, "UTC") == datetime(2026, 11, 5, tzinfo=UTC)
    # in Los Angeles the November period has not begun: October's began at 07:00 UTC
    assert period_started_at(anchor, now, "America/Los_Angeles") == datetime(
        2026, 10, 5, 7, 0, tzinfo=UTC
    )
