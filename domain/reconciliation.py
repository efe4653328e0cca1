"""Reconciliation: each purchase beside its PaymentIntent at Stripe and its ledger credit, each
payout beside its Transfer; what disagrees, in words an operator can act on.

The checks are pure: the caller brings what Stripe said (or that it could not be asked) and
what the ledger holds. A row that cannot be verified is a disagreement too: a report that
passes only because Stripe was down would hide exactly what it is for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from domain.payments import IntentState, PaymentStatus, Purchase
from domain.payouts import Payout, PayoutStatus, TransferState

# How long a record may stay PENDING before it is a disagreement: the job that settles it
# looks at what is 10 minutes old, every 5 minutes (reconcile-payments) or every hour
# (pay-out), with room for a slow run.
PURCHASE_SETTLES_WITHIN = timedelta(minutes=30)
PAYOUT_SETTLES_WITHIN = timedelta(minutes=90)


@dataclass(frozen=True)
class Unreachable:
    """Stripe was asked and did not answer (or does not know the id)."""

    reason: str


@dataclass(frozen=True)
class Line:
    """One row of the report."""

    record: str  # "purchase" | "payout"
    id: UUID
    agency_id: UUID
    sub_account_id: UUID | None
    created_at: datetime
    status: str
    amount_cents: int
    stripe_id: str | None
    stripe_status: str | None
    stripe_amount_cents: int | None
    credited_seconds: int | None
    expected_seconds: int | None
    problems: tuple[str, ...]

    @property
    def agrees(self) -> bool:
        return not self.problems


def check_purchase(
    purchase: Purchase,
    intent: IntentState | Unreachable | None,
    credited_seconds: int,
    now: datetime,
    other_attempts: Sequence[IntentState] | Unreachable = (),
) -> Line:
    """A purchase agrees when Stripe's PaymentIntent and the ledger tell the same story:
    SUCCEEDED = an intent that succeeded for the same amount in USD, credited exactly once;
    FAILED = nothing charged, nothing credited; PENDING = nothing credited yet, and not for
    longer than the reconciliation job lets it stay. `other_attempts`: the intents Stripe
    holds for the purchase's earlier attempts (a retried one); none of them may have
    succeeded, or the card was charged for an attempt recorded as failed."""
    problems: list[str] = []
    if isinstance(other_attempts, Unreachable):
        problems.append(f"Stripe could not be asked: {other_attempts.reason}")
        other_attempts = ()
    for other in other_attempts:
        if other.id != purchase.stripe_payment_intent_id and other.status == "succeeded":
            problems.append(f"an earlier attempt's PaymentIntent {other.id} succeeded at Stripe")
    seen = intent if isinstance(intent, IntentState) else None
    succeeded = purchase.status is PaymentStatus.SUCCEEDED
    if isinstance(intent, Unreachable):
        problems.append(f"Stripe could not be asked: {intent.reason}")
    if seen is not None and seen.purchase_id not in (None, purchase.id):
        problems.append(f"the PaymentIntent belongs to purchase {seen.purchase_id}")
    charged = seen is not None and seen.status == "succeeded"
    if succeeded:
        if purchase.stripe_payment_intent_id is None:
            problems.append("SUCCEEDED without a PaymentIntent")
        elif seen is not None and not charged:
            problems.append(f"SUCCEEDED here, {seen.status} at Stripe")
        if seen is not None and (seen.amount_cents, seen.currency) != (
            purchase.amount_cents,
            "usd",
        ):
            problems.append(
                f"charged {seen.amount_cents} {seen.currency} cents at Stripe, "
                f"{purchase.amount_cents} usd here"
            )
        if credited_seconds != purchase.seconds:
            problems.append(f"credited {credited_seconds} s, bought {purchase.seconds} s")
    else:
        if charged:
            problems.append(f"charged at Stripe, {purchase.status.value} here")
        if credited_seconds != 0:
            problems.append(f"credited {credited_seconds} s while {purchase.status.value}")
        if (
            purchase.status is PaymentStatus.PENDING
            and now - purchase.created_at > PURCHASE_SETTLES_WITHIN
            and (purchase.next_attempt_at is None or purchase.next_attempt_at <= now)
        ):
            problems.append("PENDING for longer than the reconciliation job allows")
    return Line(
        record="purchase",
        id=purchase.id,
        agency_id=purchase.agency_id,
        sub_account_id=purchase.sub_account_id,
        created_at=purchase.created_at,
        status=purchase.status.value,
        amount_cents=purchase.amount_cents,
        stripe_id=purchase.stripe_payment_intent_id,
        stripe_status=None if seen is None else seen.status,
        stripe_amount_cents=None if seen is None else seen.amount_cents,
        credited_seconds=credited_seconds,
        expected_seconds=purchase.seconds if succeeded else 0,
        problems=tuple(problems),
    )


def check_payout(
    payout: Payout, transfer: TransferState | Unreachable | None, now: datetime
) -> Line:
    """A payout agrees when PAID has its Transfer for the same amount to the same account and
    PENDING is young enough for the payouts job to finish it. (A FAILED payout keeps no
    Transfer id; a Transfer Stripe made for it anyway is not looked for: Stripe lists
    Transfers by destination and group, not by our metadata.)"""
    problems: list[str] = []
    seen = transfer if isinstance(transfer, TransferState) else None
    if isinstance(transfer, Unreachable):
        problems.append(f"Stripe could not be asked: {transfer.reason}")
    if payout.status is PayoutStatus.PAID:
        if payout.stripe_transfer_id is None:
            problems.append("PAID without a Transfer")
        if seen is not None:
            if seen.amount_cents != payout.amount_cents:
                problems.append(
                    f"transferred {seen.amount_cents} cents, {payout.amount_cents} here"
                )
            if seen.destination != payout.destination:
                problems.append(f"transferred to {seen.destination}, not {payout.destination}")
            if seen.payout_id not in (None, payout.id):
                problems.append(f"the Transfer belongs to payout {seen.payout_id}")
    elif payout.status is PayoutStatus.PENDING and now - payout.created_at > PAYOUT_SETTLES_WITHIN:
        problems.append("PENDING for longer than the payouts job allows")
    return Line(
        record="payout",
        id=payout.id,
        agency_id=payout.agency_id,
        sub_account_id=None,
        created_at=payout.created_at,
        status=payout.status.value,
        amount_cents=payout.amount_cents,
        stripe_id=payout.stripe_transfer_id,
        stripe_status=None if seen is None else "transferred",
        stripe_amount_cents=None if seen is None else seen.amount_cents,
        credited_seconds=None,
        expected_seconds=None,
        problems=tuple(problems),
    )
