"""Rules of a sub-account's life: the plan's cap, suspension and its banner, removal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.agency import Agency, SubAccount, SubAccountStatus
from domain.errors import DomainError, ErrorCode

MAX_NOTE_LENGTH = 150
SUSPENDED_MESSAGE = "This account is paused by your agency. You can still sign in and read it."


class ActivityKind(StrEnum):
    CAMPAIGN = "CAMPAIGN"
    INBOUND_AGENT = "INBOUND_AGENT"
    AUTOMATION = "AUTOMATION"


class LineRelease(StrEnum):
    """What removal does with a sub-account's phone lines."""

    DELETE = "DELETE"
    TO_POOL = "TO_POOL"


class ActivityStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"


@dataclass(frozen=True)
class Banner:
    active: bool
    message: str
    note: str | None
    since: datetime | None


def banner_of(sub_account: SubAccount) -> Banner:
    if sub_account.status is SubAccountStatus.SUSPENDED:
        return Banner(
            True, SUSPENDED_MESSAGE, sub_account.suspension_note, sub_account.suspended_at
        )
    return Banner(False, "", None, None)


def check_cap(agency: Agency, live_secondaries: int) -> None:
    """Removed and merged sub-accounts free their slot; the primary never takes one."""
    cap = agency.sub_account_cap
    if cap is not None and live_secondaries >= cap:
        raise DomainError(
            ErrorCode.PLAN_LIMIT_REACHED,
            f"The {agency.plan_name} plan allows {cap} sub-accounts; remove one or upgrade.",
        )


def slots_available(agency: Agency, live_secondaries: int) -> int | None:
    cap = agency.sub_account_cap
    return None if cap is None else max(cap - live_secondaries, 0)


def check_changeable(sub_account: SubAccount, field: str = "id") -> None:
    """Every change inside a suspended sub-account is refused; reads keep working."""
    if not sub_account.is_live:
        raise DomainError(ErrorCode.SUBACCOUNT_REMOVED, "This sub-account was removed.", (field,))
    if sub_account.status is SubAccountStatus.SUSPENDED:
        raise DomainError(
            ErrorCode.SUBACCOUNT_SUSPENDED, "This sub-account is suspended.", (field,)
        )


def check_note(note: str | None) -> str | None:
    if note is None:
        return None
    note = note.strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise DomainError(
            ErrorCode.NOTE_TOO_LONG,
            f"A note to the client has at most {MAX_NOTE_LENGTH} characters.",
            ("note",),
        )
    return note or None


def check_suspendable(sub_account: SubAccount) -> None:
    _not_primary(sub_account, "suspended")
    check_changeable(sub_account)


def check_restorable(sub_account: SubAccount) -> None:
    if sub_account.status is not SubAccountStatus.SUSPENDED:
        raise DomainError(ErrorCode.NOT_SUSPENDED, "This sub-account is not suspended.", ("id",))


def check_removable(sub_account: SubAccount, destination: SubAccount) -> None:
    """Removal works on suspended sub-accounts too; the minutes need a live destination."""
    _not_primary(sub_account, "removed")
    if not sub_account.is_live:
        raise DomainError(ErrorCode.SUBACCOUNT_REMOVED, "This sub-account was removed.", ("id",))
    if destination.id == sub_account.id:
        raise DomainError(
            ErrorCode.SAME_SUBACCOUNT, "Send the minutes to another account.", ("minutesToId",)
        )
    if not destination.is_live:
        raise DomainError(
            ErrorCode.SUBACCOUNT_REMOVED, "That account was removed.", ("minutesToId",)
        )


def _not_primary(sub_account: SubAccount, what: str) -> None:
    if sub_account.is_primary:
        raise DomainError(
            ErrorCode.PRIMARY_NOT_REMOVABLE,
            f"The primary sub-account cannot be {what}.",
            ("id",),
        )
