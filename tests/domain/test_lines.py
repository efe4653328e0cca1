"""Phone line rules: numbers, prices, moves and the days each holding covers."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.agency import BalanceSource, SubAccount, SubAccountKind, SubAccountStatus
from domain.errors import DomainError, ErrorCode
from domain.lines import (
    LineHolding,
    PhoneLine,
    assign,
    check_monthly_price,
    check_new_numbers,
    first_holdings,
    normalize_number,
    release,
    released_with,
)

AGENCY = uuid.uuid4()
NOW = datetime(2026, 11, 10, 12, tzinfo=UTC)
DAY = date(2026, 11, 10)


def account(name: str, status: SubAccountStatus = SubAccountStatus.ACTIVE) -> SubAccount:
    return SubAccount(
        id=uuid.uuid4(),
        agency_id=AGENCY,
        kind=SubAccountKind.SECONDARY,
        name=name,
        login_email=f"{name.lower()}@c.example",
        status=status,
        subscription_start_date=DAY,
        balance_source=BalanceSource.CUSTOMER,
        markup_basic_bp=0,
        markup_premium_bp=0,
        knowledge_pack_credits=0,
    )


def pool_line() -> tuple[PhoneLine, LineHolding]:
    line = PhoneLine(uuid.uuid4(), AGENCY, None, "+14155550100", 10_000_000, NOW)
    return line, first_holdings([line], DAY)[0]


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+14155550100", "+14155550100"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("  +44 20 7183 8750 ", "+442071838750"),
        ("+49 30 1234567", "+49301234567"),
    ],
)
def test_numbers_with_their_country_code_become_e164(raw, e164):
    assert normalize_number(raw, ("numbers", "0")) == e164


@pytest.mark.parametrize(
    "raw", ["4155550100", "00442071838750", "+1555", "+999123", "call me", "", "+14155550100 x7"]
)
def test_national_partial_and_extended_numbers_are_invalid(raw):
    with pytest.raises(DomainError) as refused:
        normalize_number(raw, ("numbers", "3"))
    assert (refused.value.code, refused.value.field) == (
        ErrorCode.INVALID_PHONE_NUMBER,
        ("numbers", "3"),
    )


def test_the_first_offender_is_named_and_duplicates_count_after_normalising():
    with pytest.raises(DomainError) as refused:
        check_new_numbers(["+14155550100", "+14155550101", "+1 415 555 0101"])
    assert (refused.value.code, refused.value.field) == (
        ErrorCode.LINE_NUMBER_TAKEN,
        ("numbers", "2"),
    )
    with pytest.raises(DomainError) as taken:
        check_new_numbers(["+14155550100", "+14155550101"], frozenset({"+14155550101"}))
    assert taken.value.field == ("numbers", "1")


def test_one_to_a_hundred_numbers_a_call():
    numbers = [f"+1415200{n:04d}" for n in range(101)]
    assert len(check_new_numbers(numbers[:100])) == 100
    for wrong in ([], numbers):
        with pytest.raises(DomainError) as refused:
            check_new_numbers(wrong)
        assert refused.value.field == ("numbers",)


@pytest.mark.parametrize(("amount", "micros"), [("0", 0), ("12.5", 12_500_000), ("0.000001", 1)])
def test_a_monthly_price_is_exact_micro_dollars(amount, micros):
    assert check_monthly_price(Decimal(amount)) == micros


@pytest.mark.parametrize("amount", ["-1", "0.0000001", "NaN", "1000000.01"])
def test_a_monthly_price_below_zero_or_finer_than_a_micro_dollar_is_refused(amount):
    with pytest.raises(DomainError) as refused:
        check_monthly_price(Decimal(amount))
    assert refused.value.field == ("monthlyPrice",)


def test_a_move_closes_the_holding_on_the_day_and_opens_the_next():
    line, holding = pool_line()
    acme = account("Acme")
    moved = assign(line, holding, None, acme, date(2026, 11, 12))
    assert moved is not None
    assert moved.line.sub_account_id == acme.id
    assert moved.closed == LineHolding(line.id, None, DAY, date(2026, 11, 12))
    assert moved.opened == LineHolding(line.id, acme.id, date(2026, 11, 12))
    assert moved.note.summary == "moved the line +14155550100 from the Available pool to Acme"


def test_a_move_to_where_the_line_is_is_no_move():
    line, holding = pool_line()
    assert assign(line, holding, None, None, DAY) is None


def test_a_holding_never_ends_before_it_began():
    """An agency that moves its zone west may see 'today' before the holding's first day."""
    line, holding = pool_line()
    moved = assign(line, holding, None, account("Acme"), DAY - timedelta(days=1))
    assert moved is not None and moved.closed.to_date == DAY == moved.opened.from_date


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (SubAccountStatus.SUSPENDED, ErrorCode.SUBACCOUNT_SUSPENDED),
        (SubAccountStatus.REMOVED, ErrorCode.SUBACCOUNT_REMOVED),
        (SubAccountStatus.MERGED, ErrorCode.SUBACCOUNT_REMOVED),
    ],
)
def test_no_move_into_or_out_of_a_sub_account_that_is_not_active(status, code):
    line, holding = pool_line()
    frozen = account("Frozen", status)
    with pytest.raises(DomainError) as into:
        assign(line, holding, None, frozen, DAY)
    assert (into.value.code, into.value.field) == (code, ("subAccountId",))
    held = PhoneLine(line.id, AGENCY, frozen.id, line.number, 0, NOW)
    with pytest.raises(DomainError) as out:
        assign(held, holding, frozen, account("Live"), DAY)
    assert (out.value.code, out.value.field) == (code, ("lineId",))
    with pytest.raises(DomainError):
        release(held, holding, frozen, DAY)


def test_removal_closes_every_holding_and_pools_the_lines_when_asked():
    acme = account("Acme")
    holdings = [LineHolding(uuid.uuid4(), acme.id, DAY) for _ in range(2)]
    end = date(2026, 11, 20)
    closed, opened = released_with(holdings, True, end)
    assert [h.to_date for h in closed] == [end, end]
    assert opened == [LineHolding(h.line_id, None, end) for h in holdings]
    assert released_with(holdings, False, end)[1] == []


def test_days_in_counts_the_days_of_a_range_the_holding_covers():
    holding = LineHolding(uuid.uuid4(), None, date(2026, 11, 11), date(2026, 11, 15))
    assert holding.days_in(date(2026, 11, 1), date(2026, 11, 30)) == 4  # 11, 12, 13, 14
    assert holding.days_in(date(2026, 11, 14), date(2026, 11, 14)) == 1
    assert holding.days_in(date(2026, 11, 15), date(2026, 11, 30)) == 0
    assert holding.days_in(date(2026, 11, 1), date(2026, 11, 10)) == 0
    still = LineHolding(uuid.uuid4(), None, date(2026, 11, 11))
    assert still.days_in(date(2026, 11, 1), date(2026, 11, 30)) == 20


@given(gaps=st.lists(st.integers(min_value=0, max_value=40), max_size=12))
def test_the_holdings_of_a_line_share_out_each_of_its_days_exactly_once(gaps):
    """Whatever moves happen on whichever days, every day from the line's first to the range's
    end belongs to exactly one holding (day D to whoever held it at its end)."""
    line, holding = pool_line()
    accounts = [account("A"), account("B"), None]
    holders: dict[uuid.UUID | None, SubAccount | None] = {None: None}
    history, day = [], DAY
    for n, gap in enumerate(gaps):
        day += timedelta(days=gap)
        target = accounts[n % 3]
        source = holders.get(line.sub_account_id)
        moved = assign(line, holding, source, target, day)
        if moved is None:
            continue
        history.append(moved.closed)
        line, holding = moved.line, moved.opened
        holders[line.sub_account_id] = target
    history.append(holding)
    first, last = DAY, day + timedelta(days=5)
    assert sum(h.days_in(first, last) for h in history) == (last - first).days + 1
    assert all(a.to_date == b.from_date for a, b in itertools.pairwise(history))
