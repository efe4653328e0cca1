"""The agency's earnings and their payouts to its Stripe Connect account.

Earnings are a running account, in micro-dollars: the profit of every client purchase that
succeeded, less what PENDING and PAID payouts took. A payout takes whole cents (a Transfer
cannot move less), so what is under a cent stays unpaid for the next one; a FAILED payout
takes nothing, so its amount is unpaid again. A payout is planned from the earnings read
under the agency's row lock, so however many run at once, PENDING and PAID payouts together
never exceed what was earned: never two payouts for the same earnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from domain.audit import AuditKind, AuditNote, Subject
from domain.errors import DomainError, ErrorCode
from domain.money import dollars_to_micros, to_dollars
from domain.payments import MICROS_PER_CENT

DEFAULT_PAYOUT_THRESHOLD_MICROS = 100_000_000  # $100 (SPEC)
MAX_PAYOUT_THRESHOLD_MICROS = 1_000_000_000_000  # $1,000,000


@dataclass(frozen=True)
class TransferState:
    """What Stripe says of a Transfer to a Connect account."""

    id: str
    amount_cents: int
    destination: str
    payout_id: UUID | None  # from its metadata: ours, set when we made it


class PayoutStatus(StrEnum):
    PENDING = "PENDING"
    PAID = "PAID"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Payout:
    id: UUID
    agency_id: UUID
    amount_micros: int  # whole cents
    status: PayoutStatus
    destination: str  # the Connect account it goes to
    created_at: datetime
    stripe_transfer_id: str | None = None
    failure_reason: str | None = None
    paid_at: datetime | None = None
    requested_by: str | None = None  # the owner's email; None for the payouts job

    @property
    def amount_cents(self) -> int:
        return self.amount_micros // MICROS_PER_CENT

    @property
    def stripe_idempotency_key(self) -> str:
        """One Transfer per payout, whatever crashes and retries happen."""
        return f"agencyhub-payout-{self.id}"


@dataclass(frozen=True)
class Earnings:
    total_micros: int  # profit of succeeded client purchases, ever
    pending_micros: int  # in PENDING payouts
    paid_out_micros: int  # in PAID payouts
    threshold_micros: int
    connected_account_id: str | None

    @property
    def unpaid_micros(self) -> int:
        return self.total_micros - self.pending_micros - self.paid_out_micros

    @property
    def payable_micros(self) -> int:
        """What a Transfer can move now: the unpaid earnings in whole cents."""
        return max(self.unpaid_micros, 0) // MICROS_PER_CENT * MICROS_PER_CENT


def requested_payout(earnings: Earnings) -> tuple[str, int]:
    """What the owner's requestPayout pays now: whatever is unpaid, threshold or not."""
    if earnings.connected_account_id is None:
        raise DomainError(
            ErrorCode.NO_CONNECTED_ACCOUNT,
            "Set the agency's Stripe Connect account first (setPayoutSettings).",
        )
    if earnings.payable_micros <= 0:
        raise DomainError(ErrorCode.NOTHING_TO_PAY, "There are no unpaid earnings to pay out.")
    return earnings.connected_account_id, earnings.payable_micros


def due_payout(earnings: Earnings) -> tuple[str, int] | None:
    """What the payouts job pays: everything unpaid, once it reaches the threshold and a
    Connect account is set; None otherwise."""
    if earnings.connected_account_id is None or earnings.payable_micros <= 0:
        return None
    if earnings.unpaid_micros < earnings.threshold_micros:
        return None
    return earnings.connected_account_id, earnings.payable_micros


def check_threshold(amount: Decimal) -> int:
    if not amount.is_finite() or amount < 0:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "A payout threshold is zero or more.", ("payoutThreshold",)
        )
    try:
        micros = dollars_to_micros(amount)
    except ValueError:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "At most six decimals.", ("payoutThreshold",)
        ) from None
    if micros > MAX_PAYOUT_THRESHOLD_MICROS:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "A payout threshold is at most $1,000,000.",
            ("payoutThreshold",),
        )
    return micros


def check_connected_account(account_id: str) -> str:
    account_id = account_id.strip()
    if not account_id.startswith("acct_") or len(account_id) > 255:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "A Stripe Connect account id starts with acct_.",
            ("connectedAccountId",),
        )
    return account_id


def settings_changed(agency_id: UUID, what: list[str]) -> AuditNote:
    summary = "changed the payout settings: " + ", ".join(what)
    return AuditNote(AuditKind.AGENCY_UPDATED, summary, Subject("Agency", agency_id))


def payout_requested(payout: Payout) -> AuditNote:
    return AuditNote(
        AuditKind.PAYOUT_REQUESTED,
        f"requested a payout of ${to_dollars(payout.amount_micros):.2f} to {payout.destination}",
        Subject("Agency", payout.agency_id),
    )


def payout_made(payout: Payout) -> AuditNote:
    """The payouts job's line (no one asked: the threshold was reached)."""
    return AuditNote(
        AuditKind.PAYOUT_REQUESTED,
        f"paid out ${to_dollars(payout.amount_micros):.2f} to {payout.destination}: unpaid "
        "earnings reached the threshold",
        Subject("Agency", payout.agency_id),
    )
