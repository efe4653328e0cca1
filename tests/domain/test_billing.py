"""Billing summary rules: proration half up to the cent, groups, totals, adjustments, CSV,
and the property that a line's days in a range are shared out once among its holders."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.billing import (
    CSV_COLUMNS,
    AdjustmentKind,
    BillingAdjustment,
    check_adjustment,
    check_range,
    prorated_charge,
    summarize,
    summary_csv,
)
from domain.errors import DomainError, ErrorCode
from domain.lines import LineHolding, PhoneLine, assign, first_holdings, release
from domain.policy import Action, Role, Target, Viewer, can
from tests.domain.test_lines import account

AGENCY = uuid.uuid4()
NOW = datetime(2026, 10, 1, 12, tzinfo=UTC)
OCT_1, OCT_31 = date(2026, 10, 1), date(2026, 10, 31)


def line(price_micros: int = 1_000_000, number: str = "+14155550100") -> PhoneLine:
    return PhoneLine(uuid.uuid4(), AGENCY, None, number, price_micros, NOW)


def adjustment(
    sub_account_id: uuid.UUID, kind: AdjustmentKind, micros: int, day: date
) -> BillingAdjustment:
    return BillingAdjustment(uuid.uuid4(), AGENCY, sub_account_id, kind, micros, "n", day, NOW)


@pytest.mark.parametrize(
    ("price", "days", "range_days", "charge"),
    [
        (1_000_000, 10, 31, 320_000),  # $1.00 * 10 / 31 = 0.3225… → 0.32
        (1_000_000, 31, 31, 1_000_000),  # the whole range: the whole price
        (1_000_000, 1, 8, 130_000),  # 0.125 → 0.13: half up at half a cent
        (1_000_000, 3, 8, 380_000),  # 0.375 → 0.38
        (50_000, 1, 2, 30_000),  # $0.05 / 2 = 0.025 → 0.03
        (10_000_000, 15, 30, 5_000_000),  # $10 for half of 30 days: $5.00
        (9_990_000, 1, 31, 320_000),  # 0.32225… → 0.32
        (0, 10, 31, 0),
        (1_000_000, 0, 31, 0),
    ],
)
def test_a_line_charge_is_prorated_by_days_and_rounded_half_up_to_the_cent(
    price, days, range_days, charge
):
    assert prorated_charge(price, days, range_days) == charge


def test_a_group_adds_its_rounded_line_charges_usage_and_subtracts_adjustments():
    # given a client holding two $1.00 lines for 10 days of October, with usage and adjustments
    client = uuid.uuid4()
    a, b = line(number="+14155550100"), line(number="+14155550101")
    holdings = [
        LineHolding(a.id, client, date(2026, 10, 5), date(2026, 10, 15)),
        LineHolding(b.id, client, date(2026, 10, 22)),  # 22..31: 10 days
        LineHolding(b.id, None, date(2026, 9, 1), date(2026, 10, 22)),  # pool: 1..21
    ]
    adjustments = [
        adjustment(client, AdjustmentKind.DISCOUNT, 100_000, date(2026, 10, 31)),
        adjustment(client, AdjustmentKind.CREDIT, 50_000, OCT_1),
        adjustment(client, AdjustmentKind.CREDIT, 999_000, date(2026, 11, 1)),  # not in range
    ]
    # when October is summarised
    summary = summarize(
        OCT_1, OCT_31, {a.id: a, b.id: b}, holdings, {client: 1_234_567}, adjustments, {}
    )
    # then the client's group and the pool's (last) hold exactly these figures
    group, pool = summary.groups
    assert group.sub_account_id == client and pool.sub_account_id is None
    assert [(c.line.number, c.days_held, c.charge_micros) for c in group.lines] == [
        ("+14155550100", 10, 320_000),
        ("+14155550101", 10, 320_000),
    ]
    assert group.line_charges_micros == 640_000
    assert (group.usage_micros, group.discounts_micros, group.credits_micros) == (
        1_234_567,
        100_000,
        50_000,
    )
    assert group.total_micros == 640_000 + 1_234_567 - 100_000 - 50_000
    assert [(c.days_held, c.charge_micros) for c in pool.lines] == [(21, 680_000)]
    assert pool.total_micros == 680_000
    assert summary.total_micros == group.total_micros + pool.total_micros


def test_usage_only_and_adjustment_only_sub_accounts_get_a_group_and_an_idle_pool_none():
    user, credited = uuid.uuid4(), uuid.uuid4()
    summary = summarize(
        OCT_1,
        OCT_31,
        {},
        [],
        {user: 500},
        [adjustment(credited, AdjustmentKind.CREDIT, 1_000_000, OCT_31)],
        {user: "b", credited: "a"},
    )
    assert [g.sub_account_id for g in summary.groups] == [credited, user]  # by name
    assert summary.total_micros == 500 - 1_000_000  # a credit can make a total negative


def test_a_line_moved_within_the_range_is_charged_to_each_holder_for_its_days():
    a, b = uuid.uuid4(), uuid.uuid4()
    the_line = line(31_000_000)  # $31 a month over 31 days: $1 a day
    holdings = [
        LineHolding(the_line.id, a, date(2026, 9, 1), date(2026, 10, 11)),  # Oct 1..10
        LineHolding(the_line.id, b, date(2026, 10, 11), date(2026, 10, 20)),  # 11..19
        LineHolding(the_line.id, None, date(2026, 10, 20)),  # 20..31
    ]
    summary = summarize(OCT_1, OCT_31, {the_line.id: the_line}, holdings, {}, [], {a: "a", b: "b"})
    assert [(g.sub_account_id, g.lines[0].days_held, g.total_micros) for g in summary.groups] == [
        (a, 10, 10_000_000),
        (b, 9, 9_000_000),
        (None, 12, 12_000_000),
    ]


@pytest.mark.parametrize(
    ("first", "last", "field"),
    [
        (date(2026, 10, 2), date(2026, 10, 1), ["range", "to"]),
        (date(2026, 1, 1), date(2027, 1, 1 + 1), ["range"]),  # 367 days
    ],
)
def test_a_range_backwards_or_longer_than_a_year_is_refused(first, last, field):
    with pytest.raises(DomainError) as refused:
        check_range(first, last)
    assert refused.value.code is ErrorCode.INVALID_INPUT and list(refused.value.field) == field


def test_a_leap_year_is_the_longest_range():
    assert check_range(date(2028, 1, 1), date(2028, 12, 31)) == 366


@pytest.mark.parametrize(
    ("amount", "note", "code", "field"),
    [
        (Decimal("0"), "n", ErrorCode.INVALID_INPUT, "amount"),
        (Decimal("-1"), "n", ErrorCode.INVALID_INPUT, "amount"),
        (Decimal("0.0000001"), "n", ErrorCode.INVALID_INPUT, "amount"),
        (Decimal("NaN"), "n", ErrorCode.INVALID_INPUT, "amount"),
        (Decimal("1000000.01"), "n", ErrorCode.INVALID_INPUT, "amount"),
        (Decimal("1"), "   ", ErrorCode.INVALID_INPUT, "note"),
        (Decimal("1"), "x" * 501, ErrorCode.NOTE_TOO_LONG, "note"),
    ],
)
def test_an_adjustment_is_positive_exact_and_says_what_it_is_for(amount, note, code, field):
    with pytest.raises(DomainError) as refused:
        check_adjustment(amount, note)
    assert refused.value.code is code and refused.value.field == (field,)


def test_an_adjustment_note_is_one_line():
    assert check_adjustment(Decimal("12.5"), " goodwill\n for the\toutage ") == (
        12_500_000,
        "goodwill for the outage",
    )


def test_the_csv_has_one_row_per_group_with_plain_decimals_and_no_formulas():
    client = uuid.uuid4()
    the_line = line()
    summary = summarize(
        OCT_1,
        OCT_31,
        {the_line.id: the_line},
        [
            LineHolding(the_line.id, client, date(2026, 10, 22)),
            LineHolding(the_line.id, None, OCT_1, date(2026, 10, 22)),
        ],
        {client: 1_500_000},
        [adjustment(client, AdjustmentKind.DISCOUNT, 250_000, OCT_1)],
        {},
    )
    rows = list(csv.reader(io.StringIO(summary_csv(summary, {client: ("gid1", "=SUM(A1)")}))))
    assert rows == [
        list(CSV_COLUMNS),
        ["gid1", "'=SUM(A1)", "1", "0.320000", "1.500000", "0.250000", "0.000000", "1.570000"],
        ["", "Available pool", "1", "0.680000", "0.000000", "0.000000", "0.000000", "0.680000"],
    ]


# ---- the property: every line's days are shared out once -----------------------------------

STEP = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 9)),
    st.tuples(st.just("assign"), st.integers(0, 9), st.integers(0, 3), st.integers(0, 9)),
    st.tuples(st.just("release"), st.integers(0, 9), st.integers(0, 9)),
)


@given(
    steps=st.lists(STEP, max_size=40),
    start=st.integers(0, 60),
    length=st.integers(1, 60),
)
def test_every_line_s_days_in_a_range_are_billed_once_to_whoever_held_it(steps, start, length):
    """Random adds, assignments, moves, returns to the pool and releases over ~a year: in any
    range, the days a line is billed across the groups are the days it existed in the range,
    and no day of a line is billed to two groups."""
    holders = [account("A"), account("B"), account("C"), None]
    day = date(2026, 1, 1)
    live: list[tuple[PhoneLine, LineHolding]] = []
    lines: dict[uuid.UUID, PhoneLine] = {}
    history: list[LineHolding] = []
    existed: dict[uuid.UUID, tuple[date, date | None]] = {}  # [added, released)
    for step in steps:
        day += timedelta(days=step[-1] if step[0] != "assign" else step[3])
        if step[0] == "add":
            new = line(number=f"+1415555{len(lines):04d}")
            lines[new.id] = new
            live.append((new, first_holdings([new], day)[0]))
            existed[new.id] = (day, None)
        elif live and step[0] == "assign":
            index = step[1] % len(live)
            current, holding = live[index]
            source = next((h for h in holders if h and h.id == current.sub_account_id), None)
            moved = assign(current, holding, source, holders[step[2]], day)
            if moved is not None:
                history.append(moved.closed)
                live[index] = (moved.line, moved.opened)
        elif live and step[0] == "release":
            current, holding = live.pop(step[1] % len(live))
            closed, _ = release(current, holding, None, day)
            history.append(closed)
            existed[current.id] = (existed[current.id][0], day)
    history.extend(holding for _, holding in live)
    first = date(2026, 1, 1) + timedelta(days=start)
    last = first + timedelta(days=length - 1)

    summary = summarize(first, last, lines, history, {}, [], {})

    billed: dict[uuid.UUID, int] = {}
    for group in summary.groups:
        assert group.lines, "a group with no lines, usage or adjustment"
        for charge in group.lines:
            billed[charge.line.id] = billed.get(charge.line.id, 0) + charge.days_held
    for line_id, (added, released) in existed.items():
        end = (
            last + timedelta(days=1)
            if released is None
            else min(released, last + timedelta(days=1))
        )
        expected = max((end - max(added, first)).days, 0)
        assert billed.get(line_id, 0) == expected
    for line_id in lines:  # each day of a line to one holding at most
        days = [
            d
            for h in history
            if h.line_id == line_id
            for d in range(h.from_date.toordinal(), (h.to_date or last + timedelta(1)).toordinal())
            if first.toordinal() <= d <= last.toordinal()
        ]
        assert len(days) == len(set(days))


def test_only_owners_and_agency_admins_manage_billing():
    allowed = {
        role
        for role in Role
        if can(
            Viewer(uuid.uuid4(), AGENCY, role, all_sub_accounts=True),
            Action.MANAGE_BILLING,
            Target(AGENCY),
        )
    }
    assert allowed == {Role.AGENCY_OWNER, Role.AGENCY_ADMIN}
