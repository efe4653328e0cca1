"""Phone lines and the agency's Available pool: numbers, prices, moves and their history.

A line is in exactly one sub-account or in the pool (`sub_account_id` None). Every holding is
kept as a `LineHolding` of agency-local days, half-open: it covers `from_date` up to, not
including, `to_date` (None while it lasts). A move on day D closes the old holding at D and
opens the new one at D, so day D belongs to whoever held the line at the end of it, which is
how the billing summary prorates. Moves never rewrite a closed holding. Money is integer
micro-dollars (domain/money.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

import phonenumbers

from domain.agency import SubAccount
from domain.audit import AuditKind, AuditNote, Subject
from domain.errors import DomainError, ErrorCode
from domain.money import dollars_to_micros, to_dollars
from domain.sub_account import check_changeable

MAX_LINES_PER_CALL = 100
MAX_MONTHLY_PRICE_MICROS = 1_000_000 * 1_000_000  # $1,000,000 a month: far past any real line


@dataclass(frozen=True)
class PhoneLine:
    id: UUID
    agency_id: UUID
    sub_account_id: UUID | None  # None: in the Available pool
    number: str  # E.164
    monthly_price_micros: int
    created_at: datetime


@dataclass(frozen=True)
class LineHolding:
    """Who held a line over which agency-local days: [from_date, to_date)."""

    line_id: UUID
    sub_account_id: UUID | None
    from_date: date
    to_date: date | None = None

    def days_in(self, first: date, last: date) -> int:
        """Days of the inclusive range [first, last] this holding covers."""
        start = max(self.from_date, first).toordinal()
        end = last.toordinal() + 1  # exclusive
        if self.to_date is not None:
            end = min(end, self.to_date.toordinal())
        return max(end - start, 0)


def normalize_number(raw: str, field: tuple[str, ...]) -> str:
    """A number with its country code (+…), as E.164; anything else is INVALID_PHONE_NUMBER.

    No default region: a national number such as 4155550100 could be any country's, so it is
    refused rather than guessed. Extensions are refused too: a line is a whole number."""
    try:
        parsed = phonenumbers.parse(raw.strip(), None)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or parsed.extension or not phonenumbers.is_valid_number(parsed):
        raise DomainError(
            ErrorCode.INVALID_PHONE_NUMBER,
            f"{raw!r} is not a valid phone number with its country code, e.g. +14155550100.",
            field,
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def check_monthly_price(amount: Decimal) -> int:
    """A monthly price in dollars as micro-dollars: zero or more, exact to the micro-dollar."""
    if not amount.is_finite() or amount < 0:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "A monthly price is zero or more.", ("monthlyPrice",)
        )
    try:
        micros = dollars_to_micros(amount)
    except ValueError:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "At most six decimals.", ("monthlyPrice",)
        ) from None
    if micros > MAX_MONTHLY_PRICE_MICROS:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "A monthly price is at most $1,000,000.", ("monthlyPrice",)
        )
    return micros


def check_new_numbers(raw_numbers: Sequence[str], taken: frozenset[str] = frozenset()) -> list[str]:
    """1 to 100 numbers, each valid, none twice, none held by an unreleased line of the agency
    (`taken`, E.164): all of them as E.164, or the first offender's error (all or nothing)."""
    if not 1 <= len(raw_numbers) <= MAX_LINES_PER_CALL:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"Add between 1 and {MAX_LINES_PER_CALL} numbers at a time.",
            ("numbers",),
        )
    seen: set[str] = set()
    numbers = []
    for index, raw in enumerate(raw_numbers):
        field = ("numbers", str(index))
        number = normalize_number(raw, field)
        if number in seen or number in taken:
            raise DomainError(
                ErrorCode.LINE_NUMBER_TAKEN,
                f"{number} is already a line of this agency"
                + (" (it appears twice in this request)." if number in seen else "."),
                field,
            )
        seen.add(number)
        numbers.append(number)
    return numbers


def new_lines(
    ids: Sequence[UUID], agency_id: UUID, numbers: Sequence[str], price_micros: int, now: datetime
) -> list[PhoneLine]:
    """New lines land in the pool."""
    return [
        PhoneLine(line_id, agency_id, None, number, price_micros, now)
        for line_id, number in zip(ids, numbers, strict=True)
    ]


def first_holdings(lines: Sequence[PhoneLine], today: date) -> list[LineHolding]:
    return [LineHolding(line.id, line.sub_account_id, today) for line in lines]


def _holder_name(sub_account: SubAccount | None) -> str:
    return "the Available pool" if sub_account is None else sub_account.name


def subject(line: PhoneLine) -> Subject:
    return Subject("PhoneLine", line.id)


def lines_added(lines: Sequence[PhoneLine]) -> AuditNote:
    price = to_dollars(lines[0].monthly_price_micros)
    shown = ", ".join(line.number for line in lines[:5])
    more = f" and {len(lines) - 5} more" if len(lines) > 5 else ""
    count = f"{len(lines)} line{'' if len(lines) == 1 else 's'}"
    summary = f"added {count} to the Available pool at ${price:.2f} a month: {shown}{more}"
    subject_of = subject(lines[0]) if len(lines) == 1 else Subject("Agency", lines[0].agency_id)
    return AuditNote(AuditKind.LINES_ADDED, summary, subject_of)


@dataclass(frozen=True)
class Move:
    """A line's move: the line after it, the holding it closes, the one it opens."""

    line: PhoneLine
    closed: LineHolding
    opened: LineHolding
    note: AuditNote


def _closing_day(holding: LineHolding, today: date) -> date:
    """Today, or the holding's first day if the agency's clock went back (a new time zone):
    a holding never ends before it began."""
    return max(holding.from_date, today)


def assign(
    line: PhoneLine,
    holding: LineHolding,
    source: SubAccount | None,
    target: SubAccount | None,
    today: date,
) -> Move | None:
    """Move `line` from `source` (its holder, None for the pool) to `target` (None: back to
    the pool); None when it is there already. Neither end may be suspended, removed or
    merged: a suspended sub-account's lines are frozen with it."""
    target_id = None if target is None else target.id
    if target_id == line.sub_account_id:
        return None
    if source is not None:
        check_changeable(source, "lineId")
    if target is not None:
        check_changeable(target, "subAccountId")
    day = _closing_day(holding, today)
    moved = replace(line, sub_account_id=target_id)
    summary = f"moved the line {line.number} from {_holder_name(source)} to {_holder_name(target)}"
    return Move(
        moved,
        replace(holding, to_date=day),
        LineHolding(line.id, target_id, day),
        AuditNote(AuditKind.LINE_ASSIGNED, summary, subject(line)),
    )


def release(
    line: PhoneLine, holding: LineHolding, holder: SubAccount | None, today: date
) -> tuple[LineHolding, AuditNote]:
    """A line released for good: its holding closes today (the day is nobody's); it stays in
    the history. Not out of a suspended sub-account (no change there while suspended)."""
    if holder is not None:
        check_changeable(holder, "lineId")
    summary = f"released the line {line.number} from {_holder_name(holder)}"
    closed = replace(holding, to_date=_closing_day(holding, today))
    return closed, AuditNote(AuditKind.LINE_RELEASED, summary, subject(line))


def released_with(
    holdings: Sequence[LineHolding], to_pool: bool, today: date
) -> tuple[list[LineHolding], list[LineHolding]]:
    """A removed sub-account's lines: each holding closed today, and, for TO_POOL, a pool
    holding opened today for each line (closed, opened)."""
    closed = [replace(h, to_date=_closing_day(h, today)) for h in holdings]
    opened = [LineHolding(c.line_id, None, c.to_date or today) for c in closed]
    return closed, opened if to_pool else []


def removal_text(count: int, to_pool: bool) -> str:
    """What a removal did with the sub-account's lines, for its audit line."""
    if not count:
        return ""
    lines = f"{count} line{'' if count == 1 else 's'}"
    return (
        f"; its {lines} went to the Available pool" if to_pool else f"; its {lines} were released"
    )
