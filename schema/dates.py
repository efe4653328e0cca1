"""Date ranges as reports take them."""

from __future__ import annotations

from datetime import date

import strawberry


@strawberry.input
class DateRangeInput:
    from_: date = strawberry.field(name="from", description="First day, inclusive.")
    to: date = strawberry.field(description="Last day, inclusive.")
