"""Money on the wire: an exact decimal amount in USD."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import strawberry

from domain.money import to_dollars
from domain.pricing import to_micros


@strawberry.type
class Money:
    amount: Decimal
    currency: str = "USD"

    @classmethod
    def of_micros(cls, micros: int) -> Money:
        return cls(amount=to_dollars(micros))

    @classmethod
    def of_exact(cls, amount_micros: Fraction) -> Money:
        """Rounded half up to the micro-dollar: the one display rounding."""
        return cls.of_micros(to_micros(amount_micros))
