"""DateTime inputs: read by the standard library's parser where it can, exactly as dateutil's
`isoparse` (strawberry's own) reads them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import dateutil.parser
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schema.dates import parse_datetime

zones = st.one_of(
    st.none(),
    st.just(UTC),
    st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
)
moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=zones
)
# How clients write them: Python's and JavaScript's, a space, no seconds, basic form.
forms = st.sampled_from(
    [
        lambda d: d.isoformat(),
        lambda d: d.isoformat(sep=" "),
        lambda d: d.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        lambda d: d.isoformat(timespec="seconds"),
        lambda d: d.isoformat(timespec="minutes"),
        lambda d: d.strftime("%Y%m%dT%H%M%S") + (d.strftime("%z") if d.tzinfo else ""),
        lambda d: d.date().isoformat(),
    ]
)


@given(moments, forms)
def test_it_reads_what_dateutil_reads_as_dateutil_does(moment, form):
    text = form(moment)
    expected = dateutil.parser.isoparse(text)
    read = parse_datetime(text)
    assert read == expected
    assert read.utcoffset() == expected.utcoffset()


def test_what_only_dateutil_reads_still_goes_to_it():
    assert parse_datetime("2026-11-30T24:00:00Z") == datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "text", ["yesterday", "2026-13-01T00:00:00Z", "", "2026-11-30T10:00:00+25:00"]
)
def test_what_neither_reads_is_refused(text):
    with pytest.raises(ValueError):
        parse_datetime(text)


def test_the_schema_reads_datetimes_with_it():
    """The API test of the forms (tests/api/test_usage.py) passes with either parser, by
    design: this one fails if the schema stops using ours."""
    from schema.dates import DATETIME
    from schema.roots import build_schema

    graphql_type = build_schema()._schema.get_type("DateTime")
    assert graphql_type.parse_value is DATETIME.parse_value
    assert graphql_type.parse_value("2026-11-30T10:00:00Z") == datetime(
        2026, 11, 30, 10, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-30T10.5",  # ISO 8601's 10:30; the standard library's 10:00:00.5
        "2026-11-30T10:30.5",
        "2026-11-30T10:00:00+05:30:15",
        "2026-11-30T10:00:00 +05:00",
        "2026-11-30T10:00:00.Z",
        "2026-11-30\u00e910:00",
        "2026W48 2026",
        "150511115055Z",
        "2026-11-30T10:00:00.1234567Z",
        "2026-11-30t10:00:00z",
        "2026-11",
        " 2026-11-30T10:00:00Z",
    ],
)
def test_odd_texts_are_read_or_refused_exactly_as_dateutil_does(text):
    try:
        expected = dateutil.parser.isoparse(text)
    except ValueError:
        with pytest.raises(ValueError):
            parse_datetime(text)
    else:
        assert parse_datetime(text) == expected
