"""Paying with a card: who pays for a sub-account, what a purchase of minutes costs and earns,
the states a purchase goes through, and what Stripe's answer means for it.

Money is integer micro-dollars, as everywhere. A card is charged in whole cents: the exact
amount (minutes x price per minute, a fraction) is rounded half-up to the cent once, here
(`charge_cents`), and that is the purchase's amount. The agency's profit is exact:
minutes x (client price - base cost), rounded half-up to the micro-dollar only when the base
cost is not a whole number of micro-dollars per basis point (never with the default prices).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from fractions import Fraction
from uuid import UUID

from domain.agency import BalanceSource, SubAccount
from domain.audit import AuditKind, AuditNote, Subject, tier_minutes_text
from domain.errors import DomainError, ErrorCode
from domain.ledger import LedgerKind, Movement
from domain.money import Tier, minutes_to_seconds, to_dollars
from domain.pricing import PriceBook, client_price_per_minute, to_micros

MICROS_PER_CENT = 10_000
MIN_CHARGE_CENTS = 50  # Stripe's minimum charge in USD
MAX_PURCHASE_MINUTES = 100_000
MAX_IDEMPOTENCY_KEY_LENGTH = 200
# An auto allocation that failed is tried again this long after each failed attempt, then left
# FAILED (SPEC: after 1 h, 6 h and 24 h).
RETRY_DELAYS = (timedelta(hours=1), timedelta(hours=6), timedelta(hours=24))
# A purchase still PENDING this long after it was made is asked about at Stripe (a lost
# webhook, a crash between the charge and its recording).
RECONCILE_AFTER = timedelta(minutes=10)


class PurchaseKind(StrEnum):
    CLIENT_PURCHASE = "CLIENT_PURCHASE"
    AUTO_ALLOCATION = "AUTO_ALLOCATION"
    AUTO_RECHARGE = "AUTO_RECHARGE"


class PaymentStatus(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class PaymentCard:
    """A PaymentMethod attached to the payer's Stripe Customer, as our own table keeps it."""

    id: UUID
    agency_id: UUID
    payer_id: UUID  # the sub-account whose Customer holds it
    stripe_payment_method_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    is_default: bool
    created_at: datetime


@dataclass(frozen=True)
class CardDetails:
    """What Stripe tells of a card once it is attached."""

    brand: str
    last4: str
    exp_month: int
    exp_year: int


def payer_of(sub_account: SubAccount, primary: SubAccount) -> SubAccount:
    """Whose Customer and cards pay for `sub_account`: its own when the client funds it
    (CUSTOMER), the agency's (the primary's) for the primary and AGENCY-funded secondaries."""
    if not sub_account.is_primary and sub_account.balance_source is BalanceSource.CUSTOMER:
        return sub_account
    return primary


def charge_cents(amount_micros: Fraction) -> int:
    """An exact amount as a card charge: whole cents, half up, once."""
    cents = Decimal(amount_micros.numerator) / Decimal(amount_micros.denominator) / MICROS_PER_CENT
    return int(cents.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Quote:
    """What a purchase of minutes charges and earns."""

    tier: Tier
    minutes: int
    amount_cents: int
    profit_micros: int

    @property
    def seconds(self) -> int:
        return minutes_to_seconds(self.minutes)

    @property
    def amount_micros(self) -> int:
        return self.amount_cents * MICROS_PER_CENT


def check_minutes(minutes: int, field: str = "minutes") -> None:
    if not 1 <= minutes <= MAX_PURCHASE_MINUTES:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"Buy between 1 and {MAX_PURCHASE_MINUTES:,} whole minutes.",
            (field,),
        )


def quote_purchase(sub_account: SubAccount, tier: Tier, minutes: int, prices: PriceBook) -> Quote:
    """A client's purchase: at its client price; the agency earns the markup (the primary has
    none). Below Stripe's $0.50 minimum it cannot be charged."""
    check_minutes(minutes)
    base = prices.base_per_minute(tier)
    price = client_price_per_minute(base, sub_account.markup_bp(tier))
    cents = charge_cents(minutes * price)
    if cents < MIN_CHARGE_CENTS:
        raise DomainError(
            ErrorCode.AMOUNT_TOO_SMALL,
            f"That comes to ${to_dollars(cents * MICROS_PER_CENT):.2f}; a card charge is at "
            f"least ${MIN_CHARGE_CENTS / 100:.2f}.",
            ("minutes",),
        )
    profit = 0 if sub_account.is_primary else to_micros(minutes * (price - base))
    return Quote(tier, minutes, cents, profit)


def quote_auto_allocation(tier: Tier, minutes: int, prices: PriceBook) -> Quote:
    """A monthly auto allocation: at base cost, no profit (SPEC)."""
    return Quote(tier, minutes, charge_cents(Fraction(minutes * prices.base_per_minute(tier))), 0)


def check_idempotency_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"An idempotency key has 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters.",
            ("idempotencyKey",),
        )
    return key


@dataclass(frozen=True)
class Purchase:
    id: UUID
    agency_id: UUID
    sub_account_id: UUID  # credited
    payer_id: UUID  # whose card
    kind: PurchaseKind
    tier: Tier
    seconds: int
    amount_micros: int
    profit_micros: int
    status: PaymentStatus
    attempts: int
    created_at: datetime
    stripe_customer_id: str
    stripe_payment_method_id: str | None
    stripe_payment_intent_id: str | None = None
    failure_reason: str | None = None
    completed_at: datetime | None = None
    next_attempt_at: datetime | None = None
    period_start: date | None = None
    created_by: str | None = None  # the buyer's email; None for the jobs

    @property
    def amount_cents(self) -> int:
        return self.amount_micros // MICROS_PER_CENT

    @property
    def stripe_idempotency_key(self) -> str:
        """The same request to Stripe for every try of one attempt (a crash, a retry, the
        reconciliation job), a new one for each attempt (Stripe replays a decline under the
        key it was made with)."""
        return f"agencyhub-purchase-{self.id}-{self.attempts}"

    def credit(self) -> Movement:
        kind = LedgerKind.AUTO_ALLOCATION if self.is_auto_allocation else LedgerKind.PURCHASE
        return Movement(
            self.agency_id, self.sub_account_id, self.tier, self.seconds, kind, self.reference
        )

    @property
    def reference(self) -> str:
        """The ledger entries' reference: how reconciliation finds a purchase's credit."""
        return f"purchase:{self.id}"

    @property
    def is_auto_allocation(self) -> bool:
        return self.kind is PurchaseKind.AUTO_ALLOCATION


def new_purchase(
    purchase_id: UUID,
    sub_account: SubAccount,
    payer: SubAccount,
    kind: PurchaseKind,
    quote: Quote,
    customer_id: str,
    payment_method_id: str | None,
    now: datetime,
    created_by: str | None = None,
    period_start: date | None = None,
) -> Purchase:
    return Purchase(
        id=purchase_id,
        agency_id=sub_account.agency_id,
        sub_account_id=sub_account.id,
        payer_id=payer.id,
        kind=kind,
        tier=quote.tier,
        seconds=quote.seconds,
        amount_micros=quote.amount_micros,
        profit_micros=quote.profit_micros,
        status=PaymentStatus.PENDING,
        attempts=1,
        created_at=now,
        stripe_customer_id=customer_id,
        stripe_payment_method_id=payment_method_id,
        created_by=created_by,
        period_start=period_start,
    )


@dataclass(frozen=True)
class IntentState:
    """What Stripe says of a PaymentIntent (its answer, a webhook, a later look-up)."""

    id: str
    status: str
    amount_cents: int
    currency: str
    purchase_id: UUID | None  # from its metadata: ours, set when we made it
    failure_reason: str | None = None
    attempt: int | None = None  # from its metadata: which attempt of the purchase made it


@dataclass(frozen=True)
class Declined:
    """Stripe refused the charge outright (a card error): no PaymentIntent to follow."""

    reason: str
    intent_id: str | None = None


def about_attempt(answer: IntentState) -> int:
    """Which attempt of its purchase a PaymentIntent was made for (its metadata; intents made
    before they carried it are the first attempt's)."""
    return answer.attempt or 1


def is_current_attempt(purchase: Purchase, attempt: int) -> bool:
    """Whether an answer about `attempt` may settle the purchase. One about an earlier
    attempt (a late webhook, a slow look-up, our own call's answer arriving after a retry
    began) must not: its decline would fail the retry under way, its success be credited to
    an attempt that may be charged too. Reconciliation flags such an intent if it succeeded."""
    return attempt == purchase.attempts


def outcome(purchase: Purchase, answer: IntentState | Declined) -> PaymentStatus:
    """What the purchase becomes. A succeeded intent whose amount is not the purchase's credits
    nothing: it stays PENDING and reconciliation flags it (a bug, never a rounding)."""
    if isinstance(answer, Declined):
        return PaymentStatus.FAILED
    if answer.status == "succeeded":
        matches = answer.amount_cents == purchase.amount_cents and answer.currency == "usd"
        return PaymentStatus.SUCCEEDED if matches else PaymentStatus.PENDING
    if answer.status in ("requires_payment_method", "canceled"):
        return PaymentStatus.FAILED
    return PaymentStatus.PENDING  # processing, requires_action…: Stripe will tell us later


def failure_reason(answer: IntentState | Declined) -> str:
    if isinstance(answer, Declined):
        return answer.reason
    return answer.failure_reason or f"The payment ended as {answer.status}."


def next_attempt_after(purchase: Purchase, failed_at: datetime) -> datetime | None:
    """When a failed auto allocation is tried again: 1 h, 6 h, 24 h after its first three
    attempts; never after the fourth, nor for a client's own purchase (they buy again)."""
    if not purchase.is_auto_allocation or purchase.attempts > len(RETRY_DELAYS):
        return None
    return failed_at + RETRY_DELAYS[purchase.attempts - 1]


def declined_error(purchase: Purchase) -> DomainError | None:
    """The userError a FAILED purchase answers with."""
    if purchase.status is not PaymentStatus.FAILED:
        return None
    return DomainError(
        ErrorCode.CARD_DECLINED,
        f"The card was declined: {purchase.failure_reason}",
        ("cardId",),
    )


def purchased(purchase: Purchase, sub_account: SubAccount) -> AuditNote:
    """The audit line of a purchase that succeeded (written with its credit)."""
    what = tier_minutes_text(purchase.seconds, purchase.tier)
    amount = f"${to_dollars(purchase.amount_micros):.2f}"
    if purchase.is_auto_allocation:
        summary = (
            f"charged {amount} for the monthly auto allocation of {what} to {sub_account.name}"
        )
    elif purchase.kind is PurchaseKind.AUTO_RECHARGE:
        summary = f"auto-recharged {sub_account.name} with {what} ({amount})"
    else:
        summary = f"bought {what} for {sub_account.name} ({amount})"
    return AuditNote(
        AuditKind.MINUTES_PURCHASED,
        summary,
        Subject("SubAccount", sub_account.id),
    )


def card_added(card: PaymentCard, payer: SubAccount) -> AuditNote:
    return AuditNote(
        AuditKind.PAYMENT_CARD_ADDED,
        f"added the {card.brand} card ending {card.last4} to {payer.name}"
        + (" as its default" if card.is_default else ""),
        Subject("SubAccount", payer.id),
    )


def card_removed(card: PaymentCard, payer: SubAccount) -> AuditNote:
    return AuditNote(
        AuditKind.PAYMENT_CARD_REMOVED,
        f"removed the {card.brand} card ending {card.last4} of {payer.name}",
        Subject("SubAccount", payer.id),
    )


def default_card_set(card: PaymentCard, payer: SubAccount) -> AuditNote:
    return AuditNote(
        AuditKind.PAYMENT_CARD_ADDED,
        f"made the {card.brand} card ending {card.last4} the default of {payer.name}",
        Subject("SubAccount", payer.id),
    )
