"""Minutes and money as exact integers.

Minutes are held as whole seconds per tier. Money is held as integer micro-dollars
(1 USD = 1_000_000 micros) everywhere inside the system; it becomes a `Decimal` only at the
API edge (`to_dollars`). Nothing here or anywhere else uses float for either.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

MICROS_PER_DOLLAR = 1_000_000
SECONDS_PER_MINUTE = 60


class Tier(StrEnum):
    BASIC = "BASIC"
    PREMIUM = "PREMIUM"


# Every tier, in order: iterating the enum itself builds a generator each time (2 % of the
# server's CPU when every ingested call's events listed the tiers that way).
TIERS: tuple[Tier, ...] = tuple(Tier)


def minutes_to_seconds(minutes: int) -> int:
    return minutes * SECONDS_PER_MINUTE


def seconds_to_minutes(seconds: int) -> Decimal:
    """Exact minutes for display: 90 s → 1.5; repeating fractions are cut at 6 places."""
    minutes = (Decimal(seconds) / SECONDS_PER_MINUTE).quantize(Decimal("0.000001"))
    if minutes == minutes.to_integral_value():
        return minutes.to_integral_value()  # "5000", never "5E+3"
    return minutes.normalize()


def dollars_to_micros(amount: Decimal) -> int:
    micros = Fraction(amount) * MICROS_PER_DOLLAR  # exact: no Decimal context rounding
    if micros.denominator != 1:
        raise ValueError("amounts are exact to the micro-dollar")
    return int(micros)


def to_dollars(micros: int) -> Decimal:
    return (Decimal(micros) / MICROS_PER_DOLLAR).quantize(Decimal("0.000001"))
