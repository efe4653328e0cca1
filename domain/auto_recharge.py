"""Threshold auto-recharge: when a debit (a call, a transfer out) leaves a tier's balance below
the threshold, one purchase of the top-up is charged at the sub-account's client price to its
payer's default card, outside the debit's transaction.

The debit writes a request (one per sub-account and tier) only when it leaves the balance
below the threshold and no request is open; the job turns a request into one AUTO_RECHARGE
purchase through the same phases as `buyMinutes`. A failure blocks new attempts for six
hours, or until the payer's default card is another one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from domain.agency import SubAccount
from domain.audit import AuditKind, AuditNote, Subject
from domain.errors import DomainError, ErrorCode
from domain.money import Tier, minutes_to_seconds
from domain.payments import check_minutes, quote_purchase
from domain.pricing import PriceBook

MAX_THRESHOLD_MINUTES = 1_000_000
BACKOFF = timedelta(hours=6)


@dataclass(frozen=True)
class AutoRecharge:
    """A sub-account's setting, as its row keeps it (`OFF` when it has none)."""

    enabled: bool
    tier: Tier
    threshold_minutes: int
    top_up_minutes: int
    last_purchase_id: UUID | None = None
    failed_at: datetime | None = None
    blocked_until: datetime | None = None
    blocked_card: str | None = None

    @property
    def threshold_seconds(self) -> int:
        return minutes_to_seconds(self.threshold_minutes)

    def wants(self, tier: Tier, seconds_after: int) -> bool:
        """Whether a debit of `tier` leaving `seconds_after` calls for a recharge."""
        return self.enabled and tier is self.tier and seconds_after < self.threshold_seconds

    def may_attempt(self, default_card: str | None, now: datetime) -> bool:
        """After a failure, a new attempt waits six hours unless the card changed."""
        if self.blocked_until is None or now >= self.blocked_until:
            return True
        return default_card is not None and default_card != self.blocked_card

    @property
    def payment_failed(self) -> bool:
        """Its last attempt failed (the PAYMENT_FAILED health flag) and it is still on."""
        return self.enabled and self.failed_at is not None


OFF = AutoRecharge(False, Tier.BASIC, 0, 0)


def configure(
    sub_account: SubAccount,
    current: AutoRecharge,
    enabled: bool,
    tier: Tier,
    threshold_minutes: int,
    top_up_minutes: int,
    prices: PriceBook,
) -> AutoRecharge:
    """The setting after `setAutoRecharge`. Turned on, the top-up must be a purchase a card
    can take (Stripe's minimum, as `buyMinutes`). Changing it keeps its history (last charge,
    backoff); turning it off clears the backoff."""
    if not 0 <= threshold_minutes <= MAX_THRESHOLD_MINUTES:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"Between 0 and {MAX_THRESHOLD_MINUTES:,} minutes.",
            ("thresholdMinutes",),
        )
    if enabled:
        check_minutes(top_up_minutes, "topUpMinutes")
        try:
            quote_purchase(sub_account, tier, top_up_minutes, prices)
        except DomainError as error:
            raise DomainError(error.code, error.message, ("topUpMinutes",)) from error
        if threshold_minutes < 1:
            raise DomainError(
                ErrorCode.INVALID_INPUT, "A threshold of at least 1 minute.", ("thresholdMinutes",)
            )
    elif not 0 <= top_up_minutes <= 100_000:
        raise DomainError(ErrorCode.INVALID_INPUT, "Between 0 and 100,000.", ("topUpMinutes",))
    if not enabled:
        return AutoRecharge(
            False, tier, threshold_minutes, top_up_minutes, current.last_purchase_id
        )
    return AutoRecharge(
        True,
        tier,
        threshold_minutes,
        top_up_minutes,
        current.last_purchase_id,
        current.failed_at,
        current.blocked_until,
        current.blocked_card,
    )


def requests_after(
    settings: Mapping[UUID, tuple[AutoRecharge, bool]],
    debited: Iterable[tuple[UUID, Tier]],
    balances_after: Mapping[tuple[UUID, Tier], int],
) -> list[tuple[UUID, Tier]]:
    """The (sub-account, tier) pairs a debit leaves below their threshold that have no open
    request yet (`settings`: each account's setting and whether a request is open). Pure and
    in memory: the debit pays a statement only when this is not empty."""
    wanted = []
    for account_id, tier in sorted(set(debited), key=lambda k: (k[0], k[1].value)):
        found = settings.get(account_id)
        if found is None:
            continue
        setting, open_request = found
        if not open_request and setting.wants(tier, balances_after.get((account_id, tier), 0)):
            wanted.append((account_id, tier))
    return wanted


class Step(StrEnum):
    """What the job does with an open request."""

    CHARGE = "CHARGE"  # a new purchase
    DROP = "DROP"  # nothing to do any more (off, recharged, not active): the request goes
    WAIT = "WAIT"  # a purchase in flight, or the backoff: leave it for a later run


def next_step(
    setting: AutoRecharge,
    active: bool,
    tier: Tier,
    balance_seconds: int,
    in_flight: bool,
    default_card: str | None,
    now: datetime,
) -> Step:
    if in_flight:
        return Step.WAIT
    if not active or not setting.wants(tier, balance_seconds):
        return Step.DROP
    if not setting.may_attempt(default_card, now):
        return Step.WAIT
    return Step.CHARGE


def failed(setting: AutoRecharge, card: str | None, now: datetime) -> AutoRecharge:
    """After a failed attempt: no new one for six hours or until the card changes."""
    return AutoRecharge(
        setting.enabled,
        setting.tier,
        setting.threshold_minutes,
        setting.top_up_minutes,
        setting.last_purchase_id,
        now,
        now + BACKOFF,
        card,
    )


def changed(sub_account: SubAccount, setting: AutoRecharge) -> AuditNote:
    summary = (
        f"set the auto-recharge of {sub_account.name} to {setting.top_up_minutes} "
        f"{setting.tier.value} minutes below {setting.threshold_minutes} minutes"
        if setting.enabled
        else f"turned the auto-recharge of {sub_account.name} off"
    )
    return AuditNote(
        AuditKind.AUTO_RECHARGE_CHANGED, summary, Subject("SubAccount", sub_account.id)
    )


def charge_failed(sub_account: SubAccount, reason: str | None) -> AuditNote:
    return AuditNote(
        AuditKind.AUTO_RECHARGE_FAILED,
        f"the auto-recharge of {sub_account.name} failed: {reason or 'no reason given'}; "
        "no new attempt for 6 hours or until the card changes",
        Subject("SubAccount", sub_account.id),
    )
