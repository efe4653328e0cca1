"""Spending caps: a secondary's monthly limit on what it spends (client price of its calls).

When what it spent in the current billing period reaches the cap, the sub-account is marked
capped (`capped_at`), its ACTIVE campaigns are paused and marked as the cap's (the use case,
beside suspension's own marks, so the two never undo each other), its banner says so and an
alert goes out. Calls still reported are recorded and billed. A new billing period (spent
starts again from zero), a higher cap or no cap lifts it and brings back exactly what it
paused.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal

from domain.agency import SubAccount
from domain.audit import AuditKind, AuditNote, Subject
from domain.banner import banner_of
from domain.billing_cycle import period_start
from domain.errors import DomainError, ErrorCode
from domain.events import Changed, banner_event
from domain.money import dollars_to_micros, to_dollars

MAX_CAP_MICROS = 10**15  # a billion dollars


def check_amount(sub_account: SubAccount, amount_micros: int | None) -> None:
    if sub_account.is_primary:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "A spending cap is set on a secondary.", ("subAccountId",)
        )
    if amount_micros is not None and not 0 < amount_micros <= MAX_CAP_MICROS:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "A cap is a positive amount of dollars.", ("amount",)
        )


def is_reached(cap_micros: int | None, spent_micros: int) -> bool:
    return cap_micros is not None and spent_micros >= cap_micros


def _subject(sub_account: SubAccount) -> Subject:
    return Subject("SubAccount", sub_account.id)


def _dollars(micros: int) -> str:
    return f"{to_dollars(micros):.2f}"


def reach(
    sub_account: SubAccount, cap_micros: int | None, spent_micros: int, now: datetime
) -> Changed[SubAccount] | None:
    """Capped, when its spending reached the cap and it is not capped already."""
    if sub_account.capped_at is not None or not sub_account.is_live:
        return None
    if not is_reached(cap_micros, spent_micros):
        return None
    assert cap_micros is not None
    capped = replace(sub_account, capped_at=now)
    return Changed(
        capped,
        (banner_event(capped.id, banner_of(capped)),),
        AuditNote(
            AuditKind.SPENDING_CAP_REACHED,
            f"{capped.name} reached its spending cap (${_dollars(spent_micros)} of "
            f"${_dollars(cap_micros)}); its active campaigns are paused",
            _subject(capped),
        ),
    )


def lift(
    sub_account: SubAccount, cap_micros: int | None, spent_micros: int
) -> Changed[SubAccount] | None:
    """No longer capped, when the cap is gone, higher than its spending or a new billing
    period began (what this period spent starts from zero)."""
    if sub_account.capped_at is None or is_reached(cap_micros, spent_micros):
        return None
    lifted = replace(sub_account, capped_at=None)
    return Changed(
        lifted,
        (banner_event(lifted.id, banner_of(lifted)),),
        AuditNote(
            AuditKind.SPENDING_CAP_LIFTED,
            f"the spending cap of {lifted.name} no longer holds; its campaigns paused by the cap "
            "are back",
            _subject(lifted),
        ),
    )


def period_turned(sub_account: SubAccount, today: date, capped_on: date) -> bool:
    """Whether a new billing period began since it was capped (`today` and `capped_on` in the
    agency's zone): the only way a cap lets go without a change to the cap."""
    return period_start(sub_account.subscription_start_date, today) > capped_on


def changed(sub_account: SubAccount, amount_micros: int | None) -> AuditNote:
    summary = (
        f"removed the spending cap of {sub_account.name}"
        if amount_micros is None
        else f"set the spending cap of {sub_account.name} to ${_dollars(amount_micros)} a month"
    )
    return AuditNote(AuditKind.SPENDING_CAP_CHANGED, summary, _subject(sub_account))


def alert_data(cap_micros: int, spent_micros: int) -> dict[str, str]:
    return {"cap": _dollars(cap_micros), "spent": _dollars(spent_micros)}


def to_micros(amount: Decimal) -> int:
    """Dollars to micro-dollars; more than six decimals is refused, not rounded."""
    if not amount.is_finite():
        raise DomainError(ErrorCode.INVALID_INPUT, "A cap is an amount of dollars.", ("amount",))
    try:
        return dollars_to_micros(amount)
    except ValueError:
        raise DomainError(ErrorCode.INVALID_INPUT, "At most six decimals.", ("amount",)) from None
