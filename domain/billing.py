"""The billing summary of a date range: line charges prorated by the days each group held
each line, usage charges at base cost, discounts and credits, per sub-account and the pool.

Money is integer micro-dollars (domain/money.py). Two rounding points, both named here: a
line's charge in a group is rounded half up to the cent (`prorated_charge`); usage charges
are the rollups' base cost, each call already rounded to the micro-dollar at ingestion.
Everything else is exact sums.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from domain.audit import AuditKind, AuditNote, Subject
from domain.errors import DomainError, ErrorCode
from domain.lines import LineHolding, PhoneLine
from domain.money import dollars_to_micros, to_dollars

MAX_BILLING_DAYS = 366  # a leap year: a year's summary, never more
MICROS_PER_CENT = 10_000
MAX_ADJUSTMENT_MICROS = 1_000_000 * 1_000_000  # $1,000,000: far past any real discount
MAX_NOTE_LENGTH = 500


class AdjustmentKind(StrEnum):
    DISCOUNT = "DISCOUNT"
    CREDIT = "CREDIT"


@dataclass(frozen=True)
class BillingAdjustment:
    """A discount or a credit for one sub-account, counted in the range its `date` is in."""

    id: UUID
    agency_id: UUID
    sub_account_id: UUID
    kind: AdjustmentKind
    amount_micros: int
    note: str
    date: date
    created_at: datetime


def check_range(first: date, last: date) -> int:
    """Inclusive local dates, at most a year: the number of days in it. The same codes and
    fields as the reports' ranges (domain/reporting.py)."""
    if last < first:
        raise DomainError(ErrorCode.INVALID_INPUT, "`to` is before `from`.", ("range", "to"))
    days = (last - first).days + 1
    if days > MAX_BILLING_DAYS:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"A billing summary spans at most {MAX_BILLING_DAYS} days.",
            ("range",),
        )
    return days


def check_adjustment(amount: Decimal, note: str) -> tuple[int, str]:
    """A positive amount exact to the micro-dollar, and a one-line note: (micros, note)."""
    if not amount.is_finite() or amount <= 0:
        raise DomainError(ErrorCode.INVALID_INPUT, "An amount is more than zero.", ("amount",))
    try:
        micros = dollars_to_micros(amount)
    except ValueError:
        raise DomainError(ErrorCode.INVALID_INPUT, "At most six decimals.", ("amount",)) from None
    if micros > MAX_ADJUSTMENT_MICROS:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "An adjustment is at most $1,000,000.", ("amount",)
        )
    text = " ".join(note.split())
    if not text:
        raise DomainError(ErrorCode.INVALID_INPUT, "Say what the adjustment is for.", ("note",))
    if len(text) > MAX_NOTE_LENGTH:
        raise DomainError(
            ErrorCode.NOTE_TOO_LONG, f"A note is at most {MAX_NOTE_LENGTH} characters.", ("note",)
        )
    return micros, text


def adjustment_added(adjustment: BillingAdjustment, sub_account_name: str) -> AuditNote:
    amount = to_dollars(adjustment.amount_micros)
    summary = (
        f"added a {adjustment.kind.value.lower()} of ${amount:.2f} for {sub_account_name} "
        f"dated {adjustment.date.isoformat()}: {adjustment.note}"
    )
    return AuditNote(
        AuditKind.BILLING_ADJUSTMENT_ADDED,
        summary,
        Subject("BillingAdjustment", adjustment.id),
    )


def prorated_charge(monthly_price_micros: int, days_held: int, days_in_range: int) -> int:
    """Monthly price * days held / days in the range, half up to the cent, in micro-dollars."""
    numerator = monthly_price_micros * days_held
    denominator = days_in_range * MICROS_PER_CENT
    cents = (2 * numerator + denominator) // (2 * denominator)
    return cents * MICROS_PER_CENT


@dataclass(frozen=True)
class LineCharge:
    line: PhoneLine
    days_held: int
    charge_micros: int


@dataclass(frozen=True)
class BillingGroup:
    """One sub-account's share of the range, or the pool's (`sub_account_id` None)."""

    sub_account_id: UUID | None
    lines: tuple[LineCharge, ...]
    usage_micros: int
    discounts_micros: int
    credits_micros: int

    @property
    def line_quantity(self) -> int:
        return len(self.lines)

    @property
    def line_charges_micros(self) -> int:
        return sum(charge.charge_micros for charge in self.lines)

    @property
    def total_micros(self) -> int:
        return (
            self.line_charges_micros
            + self.usage_micros
            - self.discounts_micros
            - self.credits_micros
        )


@dataclass(frozen=True)
class BillingSummary:
    first: date
    last: date
    groups: tuple[BillingGroup, ...]

    @property
    def total_micros(self) -> int:
        return sum(group.total_micros for group in self.groups)


def days_held(
    holdings: Iterable[LineHolding], first: date, last: date
) -> dict[UUID | None, dict[UUID, int]]:
    """Holder → line → days of [first, last] it held the line; a day belongs to whoever held
    the line at its end, and holdings are half-open, so no day is counted twice."""
    held: dict[UUID | None, dict[UUID, int]] = defaultdict(lambda: defaultdict(int))
    for holding in holdings:
        days = holding.days_in(first, last)
        if days:
            held[holding.sub_account_id][holding.line_id] += days
    return {holder: dict(lines) for holder, lines in held.items()}


def summarize(
    first: date,
    last: date,
    lines: Mapping[UUID, PhoneLine],
    holdings: Iterable[LineHolding],
    usage_micros: Mapping[UUID, int],
    adjustments: Iterable[BillingAdjustment],
    sort_key: Mapping[UUID, str],
) -> BillingSummary:
    """One group per sub-account that held a line, used minutes or has an adjustment in the
    range (an adjustment is never dropped from the total), and the pool when it held lines.
    Sub-accounts in `sort_key` order (then id), the pool last; each group's lines by number."""
    days_in_range = check_range(first, last)
    held = days_held(holdings, first, last)
    discounts: dict[UUID, int] = defaultdict(int)
    credits: dict[UUID, int] = defaultdict(int)
    for adjustment in adjustments:
        if first <= adjustment.date <= last:
            into = discounts if adjustment.kind is AdjustmentKind.DISCOUNT else credits
            into[adjustment.sub_account_id] += adjustment.amount_micros
    holders = {h for h in held if h is not None} | set(usage_micros) | set(discounts) | set(credits)
    ordered: list[UUID | None] = [*sorted(holders, key=lambda h: (sort_key.get(h, ""), str(h)))]
    if None in held:
        ordered.append(None)
    groups = []
    for holder in ordered:
        charges = [
            LineCharge(
                lines[line_id],
                days,
                prorated_charge(lines[line_id].monthly_price_micros, days, days_in_range),
            )
            for line_id, days in held.get(holder, {}).items()
        ]
        charges.sort(key=lambda c: (c.line.number, str(c.line.id)))
        groups.append(
            BillingGroup(
                holder,
                tuple(charges),
                0 if holder is None else usage_micros.get(holder, 0),
                0 if holder is None else discounts.get(holder, 0),
                0 if holder is None else credits.get(holder, 0),
            )
        )
    return BillingSummary(first, last, tuple(groups))


CSV_COLUMNS = (
    "sub_account_id",
    "sub_account_name",
    "line_quantity",
    "line_charges",
    "usage_charges",
    "discounts",
    "credits",
    "total",
)
POOL_NAME = "Available pool"


def _cell(text: str) -> str:
    """A name a spreadsheet would run as a formula (=, +, -, @ first) is quoted with ' first."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def summary_csv(summary: BillingSummary, labels: Mapping[UUID, tuple[str, str]]) -> str:
    """One row per group under a header of `CSV_COLUMNS`; money as plain decimals in dollars
    (the API's six places); `labels`: sub-account → (its global id, its name); the pool has no
    id and is named "Available pool"."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for group in summary.groups:
        gid, name = (
            ("", POOL_NAME) if group.sub_account_id is None else labels[group.sub_account_id]
        )
        writer.writerow(
            (
                gid,
                _cell(name),
                group.line_quantity,
                *(
                    str(to_dollars(micros))
                    for micros in (
                        group.line_charges_micros,
                        group.usage_micros,
                        group.discounts_micros,
                        group.credits_micros,
                        group.total_micros,
                    )
                ),
            )
        )
    return out.getvalue()


def group_order(names: Sequence[tuple[UUID, str]]) -> dict[UUID, str]:
    """The sort key of each sub-account: its name, case-folded."""
    return {key: name.casefold() for key, name in names}
