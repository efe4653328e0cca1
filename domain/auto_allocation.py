"""Monthly auto allocation: which billing periods of a secondary are charged, and when.

A billing period starts on the sub-account's subscription start date and on each monthly
anniversary of it (clamped to the month's last day). Each period whose first day is on or
after the day the auto allocation was turned on is charged once, on or after that first day
in the agency's time zone: one purchase per tier with minutes, at base cost (SPEC, "Monthly
auto allocation charge"), with the minutes set when it is charged. Only the period under way
is ever charged: a missed one is not caught up later (a tier added mid-year would otherwise
be charged for every month since the allocation was turned on). "Once" is the purchase
table's unique key on (sub-account, period, tier); this module only says what is due.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from uuid import UUID

from domain.billing_cycle import add_months, period_start
from domain.errors import DomainError, ErrorCode
from domain.money import Tier
from domain.payments import MIN_CHARGE_CENTS, quote_auto_allocation
from domain.pricing import PriceBook

MAX_MINUTES = 1_000_000


@dataclass(frozen=True)
class AutoAllocation:
    """A secondary's monthly minutes, as its row keeps them."""

    enabled: bool
    basic_minutes: int
    premium_minutes: int
    enabled_on: date | None = None  # the agency's local date it was last turned on

    def minutes(self) -> list[tuple[Tier, int]]:
        """The tiers charged each period, with their minutes."""
        pairs = ((Tier.BASIC, self.basic_minutes), (Tier.PREMIUM, self.premium_minutes))
        return [(tier, minutes) for tier, minutes in pairs if minutes > 0]

    @property
    def charges(self) -> bool:
        return self.enabled and self.enabled_on is not None and bool(self.minutes())


OFF = AutoAllocation(False, 0, 0)


def configure(
    current: AutoAllocation,
    enabled: bool,
    basic_minutes: int,
    premium_minutes: int,
    today: date,
    prices: PriceBook,
) -> AutoAllocation:
    """The auto allocation after `setAutoAllocation`. Turning it on starts the charges from
    today's period on; changing the minutes of one already on keeps its day (periods charged
    stay charged, the next ones use the new minutes). Each tier's monthly charge must be one a
    card can take (Stripe's $0.50 minimum)."""
    for tier, minutes, field in (
        (Tier.BASIC, basic_minutes, "basicMinutes"),
        (Tier.PREMIUM, premium_minutes, "premiumMinutes"),
    ):
        if not 0 <= minutes <= MAX_MINUTES:
            message = f"Between 0 and {MAX_MINUTES:,} minutes."
            raise DomainError(ErrorCode.INVALID_INPUT, message, (field,))
        cents = quote_auto_allocation(tier, minutes, prices).amount_cents
        if enabled and minutes > 0 and cents < MIN_CHARGE_CENTS:
            raise DomainError(
                ErrorCode.AMOUNT_TOO_SMALL,
                f"{minutes} {tier.value} minutes a month come to ${cents / 100:.2f}; a card "
                f"charge is at least ${MIN_CHARGE_CENTS / 100:.2f}.",
                (field,),
            )
    if not enabled:
        return AutoAllocation(False, basic_minutes, premium_minutes, None)
    kept = current.enabled_on if current.enabled and current.enabled_on is not None else today
    return AutoAllocation(True, basic_minutes, premium_minutes, kept)


def _periods_from(anchor: date, enabled_on: date) -> Iterator[date]:
    """The first days of the periods charged, from the first on or after `enabled_on`."""
    months = max((enabled_on.year - anchor.year) * 12 + (enabled_on.month - anchor.month) - 1, 0)
    while True:
        start = add_months(anchor, months)
        if start >= enabled_on:
            yield start
        months += 1


def periods_due(anchor: date, allocation: AutoAllocation, today: date) -> list[date]:
    """The period `today` (the agency's local date) falls in, when it is charged: begun, and
    begun on or after the day the auto allocation was turned on. Never an earlier one: a
    tier added in December, a client restored after months suspended, a job that did not
    run for a while, all start from the period under way, not from every month since."""
    if not allocation.charges or today < anchor:
        return []
    assert allocation.enabled_on is not None
    current = period_start(anchor, today)
    return [current] if current >= allocation.enabled_on else []


def next_charge_date(
    anchor: date, allocation: AutoAllocation, last_charged: date | None
) -> date | None:
    """The first day of the next period not yet charged; None when nothing is charged."""
    if not allocation.charges:
        return None
    assert allocation.enabled_on is not None
    for start in _periods_from(anchor, allocation.enabled_on):
        if last_charged is None or start > last_charged:
            return start
    raise AssertionError("unreachable")  # pragma: no cover


def keeps_retrying(allocation: AutoAllocation, sub_account_active: bool) -> bool:
    """A failed charge is tried again only while the client still wants it: its auto
    allocation on and the sub-account active (not suspended, removed or merged)."""
    return allocation.enabled and sub_account_active


@dataclass(frozen=True)
class Due:
    """A secondary whose auto allocation charges, as the job reads it."""

    agency_id: UUID
    sub_account_id: UUID
    primary_id: UUID
    subscription_start: date
    time_zone: str
    allocation: AutoAllocation
    charged: frozenset[tuple[date, Tier]]  # (period, tier) with a purchase already

    def charges_due(self, today: date) -> list[tuple[date, Tier, int]]:
        """(period, tier, minutes) begun by `today` and not yet charged, oldest first."""
        return [
            (period, tier, minutes)
            for period in periods_due(self.subscription_start, self.allocation, today)
            for tier, minutes in self.allocation.minutes()
            if (period, tier) not in self.charged
        ]
