"""Prices: the base cost per tier, markups, client prices, wallets and transfer conversion.

Money is integer micro-dollars per minute in the price book. A markup is held in basis points
(1 % = 100 bp) and may have at most two decimals of a percent. Client prices are exact
fractions inside a calculation; they are rounded only where a figure leaves the system
(`to_micros`: half-up to the micro-dollar), where a call's cost is added to the rollups
(`micros_for_seconds`, half-up, once per call) and a transfer rounds the received seconds down.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from domain.errors import DomainError, ErrorCode
from domain.money import MICROS_PER_DOLLAR, SECONDS_PER_MINUTE, Tier

MAX_MARKUP_PERCENT = Decimal(1000)
# A billion minutes is more than any account holds, and keeps seconds far inside BIGINT.
MAX_MINUTES_PER_MOVE = 1_000_000_000


@dataclass(frozen=True)
class PriceBook:
    """What the platform charges the agency per minute (SPEC defaults; configurable)."""

    basic_micros_per_minute: int = 180_000
    premium_micros_per_minute: int = 300_000
    web_widget_basic_micros_per_minute: int = 160_000  # inbound Web Widget calls on BASIC

    def base_per_minute(self, tier: Tier) -> int:
        return (
            self.basic_micros_per_minute if tier is Tier.BASIC else self.premium_micros_per_minute
        )


def markup_bp(percent: Decimal, field: str = "markupPercent") -> int:
    """A markup percentage from the API as basis points; refuses what cannot be held exactly."""
    if not percent.is_finite() or percent < 0 or percent > MAX_MARKUP_PERCENT:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"A markup is between 0 and {MAX_MARKUP_PERCENT} percent.",
            (field,),
        )
    bp = Fraction(percent) * 100  # exact: a Decimal context would round long inputs
    if bp.denominator != 1:
        raise DomainError(ErrorCode.INVALID_INPUT, "A markup has at most two decimals.", (field,))
    return int(bp)


def bp_to_percent(bp: int) -> Decimal:
    return (Decimal(bp) / 100).quantize(Decimal("0.01"))


def client_price_per_minute(base_micros: int, markup: int) -> Fraction:
    """base * (1 + markup%), exact, in micro-dollars per minute."""
    return Fraction(base_micros * (10_000 + markup), 10_000)


def client_price_micros(base_micros: int, markup: int) -> int:
    """`client_price_per_minute` rounded for display (`to_micros`), in integers."""
    return _half_up(base_micros * (10_000 + markup), 10_000)


def to_micros(amount: Fraction) -> int:
    """Round an exact amount to whole micro-dollars, half up (away from zero, as Decimal's
    ROUND_HALF_UP): the one display rounding. Integer arithmetic: a page of 500 clients
    rounds a thousand prices and wallets."""
    return _half_up(amount.numerator, amount.denominator)


def _half_up(numerator: int, denominator: int) -> int:
    magnitude = (2 * abs(numerator) + denominator) // (2 * denominator)
    return magnitude if numerator >= 0 else -magnitude


def wallet_micros(holdings: Iterable[tuple[int, int, int]]) -> int:
    """What balances are worth at their client prices, rounded half up once, at the end:
    each holding is (seconds, base micro-dollars per minute, markup in bp). The same figure
    as summing `value_of_seconds` at `client_price_per_minute` and rounding with
    `to_micros`, in integers (every term's denominator is 10,000 bp x 60 s)."""
    exact = sum(seconds * base * (10_000 + markup) for seconds, base, markup in holdings)
    return _half_up(exact, 10_000 * SECONDS_PER_MINUTE)


def micros_for_seconds(seconds: int, price_per_minute: Fraction | int) -> int:
    """What `seconds` cost at a price per minute, rounded half up to the micro-dollar: the
    figure one call adds to the rollups. Integer arithmetic: ingestion runs it for every call."""
    # seconds * n / (60 d), half up: floor((2 seconds n + 60 d) / (120 d))
    n, d = price_per_minute.numerator, price_per_minute.denominator
    return (2 * seconds * n + SECONDS_PER_MINUTE * d) // (2 * SECONDS_PER_MINUTE * d)


def value_of_seconds(seconds: int, price_per_minute: Fraction) -> Fraction:
    return seconds * price_per_minute / SECONDS_PER_MINUTE


def price_to_dollars(price_per_minute: Fraction) -> Decimal:
    return Decimal(to_micros(price_per_minute)) / MICROS_PER_DOLLAR


def convert_seconds(sent_seconds: int, from_price: Fraction, to_price: Fraction) -> int:
    """Value moves, not the count: received = sent * from / to, rounded down to a second.

    So the value received never exceeds the value sent, and the loss is under one second at
    the destination's price.
    """
    if to_price <= 0:
        raise ValueError("prices are positive")
    exact = sent_seconds * from_price / to_price
    return exact.numerator // exact.denominator


def minutes_to_whole_seconds(minutes: Decimal, field: str = "minutes") -> int:
    """Minutes from the API, which must come to a positive whole number of seconds."""
    if not minutes.is_finite() or minutes <= 0:
        raise DomainError(ErrorCode.INVALID_INPUT, "Move a positive number of minutes.", (field,))
    if minutes > MAX_MINUTES_PER_MOVE:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"Move at most {MAX_MINUTES_PER_MOVE} minutes.", (field,)
        )
    seconds = Fraction(minutes) * SECONDS_PER_MINUTE  # exact, whatever the digits
    if seconds.denominator != 1:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "Minutes must come to whole seconds (1/60 minute).", (field,)
        )
    return int(seconds)
