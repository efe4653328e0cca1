"""Date ranges as reports take them, and how a DateTime is read."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime

import dateutil.parser
import strawberry
from strawberry.schema.types.base_scalars import DateTimeDefinition, wrap_parser


def parse_datetime(value: str) -> datetime:
    """An ISO 8601 date and time, as strawberry's DateTime reads it (dateutil's `isoparse`),
    through the standard library's parser when it can: dateutil's was an eighth of the
    server's CPU for a 1,000-call `recordCalls` (BENCHMARKS.md). The two agree wherever both
    read a text (tests/schema/test_dates.py); what only dateutil reads (`T24:00`) still goes
    to it, and its message explains a refusal."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return dateutil.parser.isoparse(value)


# strawberry's DateTime with that parser (`scalar_overrides` in schema/roots.py).
DATETIME = dataclasses.replace(
    DateTimeDefinition, parse_value=wrap_parser(parse_datetime, "DateTime")
)


@strawberry.input
class DateRangeInput:
    from_: date = strawberry.field(name="from", description="First day, inclusive.")
    to: date = strawberry.field(description="Last day, inclusive.")
