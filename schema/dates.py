"""Date ranges as reports take them, and how a DateTime is read."""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime

import dateutil.parser
import strawberry
from strawberry.schema.types.base_scalars import DateTimeDefinition, wrap_parser

# The forms both parsers read alike: an extended date, optionally a time to the minute,
# second or microsecond, optionally `Z` or `±hh:mm`. The standard library also reads texts
# dateutil refuses, some differently from ISO 8601 (`T10.5` as 10:00:00.5, not 10:30).
_COMMON_FORM = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)?",
    re.ASCII,
)


def parse_datetime(value: str) -> datetime:
    """An ISO 8601 date and time, exactly as strawberry's DateTime reads it (dateutil's
    `isoparse`), through the standard library's parser for the common forms: dateutil's was
    an eighth of the server's CPU for a 1,000-call `recordCalls` (BENCHMARKS.md). Every other
    text goes to dateutil, which reads or refuses it (with its message) as before."""
    if _COMMON_FORM.fullmatch(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass  # `T24:00`, a 13th month: dateutil reads the one, refuses the other
    return dateutil.parser.isoparse(value)


# strawberry's DateTime with that parser (`scalar_overrides` in schema/roots.py).
DATETIME = dataclasses.replace(
    DateTimeDefinition, parse_value=wrap_parser(parse_datetime, "DateTime")
)


@strawberry.input
class DateRangeInput:
    from_: date = strawberry.field(name="from", description="First day, inclusive.")
    to: date = strawberry.field(description="Last day, inclusive.")
