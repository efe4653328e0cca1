"""Monthly anniversaries: billing dates and plan renewals, clamped to the month's last day."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo


def add_months(anchor: date, months: int) -> date:
    """The anchor's day-of-month `months` later, clamped: Jan 31 + 1 → Feb 28/29."""
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month = divmod(index, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(anchor.day, last_day))


def next_anniversary(anchor: date, today: date) -> date:
    """The first monthly anniversary of `anchor` strictly after `today`.

    Each anniversary is computed from the anchor itself (never from the previous clamped
    date), so Jan 31 → Feb 28 → Mar 31, not Mar 28.
    """
    months = (today.year - anchor.year) * 12 + (today.month - anchor.month)
    months = max(months, 0)
    candidate = add_months(anchor, months)
    while candidate <= today:
        months += 1
        candidate = add_months(anchor, months)
    return candidate


def periods_until(anchor: date, today: date) -> list[date]:
    """Every period's first day from the anchor up to `today`, today included."""
    periods, months = [], 0
    while (start := add_months(anchor, months)) <= today:
        periods.append(start)
        months += 1
    return periods


def periods_begun(anchor: date, now: datetime, zone: str) -> list[date]:
    """The periods begun by `now` where the agency is: each begins at local midnight of its
    first day in the agency's time zone (`zone`), not at UTC midnight."""
    return periods_until(anchor, now.astimezone(ZoneInfo(zone)).date())


def period_start(anchor: date, today: date) -> date:
    """The first day of the billing period `today` falls in (the anchor, if not started yet)."""
    months = (today.year - anchor.year) * 12 + (today.month - anchor.month)
    if months > 0 and add_months(anchor, months) > today:
        months -= 1
    return add_months(anchor, max(months, 0))


def period_started_at(anchor: date, now: datetime, zone: str) -> datetime:
    """When the billing period `now` falls in began, in UTC: local midnight, in the agency's
    time zone, of the period's first day (a UTC date would move the cut by hours)."""
    tz = ZoneInfo(zone)
    first = period_start(anchor, now.astimezone(tz).date())
    return datetime.combine(first, time.min, tzinfo=tz).astimezone(UTC)
