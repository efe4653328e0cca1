"""Rules of a sub-account's life: the plan's cap, editing, suspension, removal, credits.

Each change is a pure transition: the sub-account(s) before → `Changed` (the new state, the
events to announce, the audit line). The use case loads, calls, saves, and hands the rest to
its unit of work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from enum import StrEnum

from domain.agency import Agency, BalanceSource, SubAccount, SubAccountStatus
from domain.audit import AuditKind, AuditNote, Subject, tier_minutes_text
from domain.banner import Banner, banner_of
from domain.errors import DomainError, ErrorCode
from domain.events import Changed, banner_event
from domain.money import Tier
from domain.pricing import bp_to_percent

__all__ = ["Banner", "banner_of"]

MAX_NOTE_LENGTH = 150


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


def check_auto_allocatable(sub_account: SubAccount, field: str = "subAccountId") -> None:
    """Auto allocation buys minutes at base cost for a live, unsuspended secondary."""
    check_changeable(sub_account, field)
    if sub_account.is_primary:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "Auto allocation buys minutes for a secondary.", (field,)
        )


def check_previewable(sub_account: SubAccount) -> None:
    """What removing it would move: asked only of what may be removed."""
    _not_primary(sub_account, "removed", "subAccountId")


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


def _not_primary(sub_account: SubAccount, what: str, field: str = "id") -> None:
    if sub_account.is_primary:
        raise DomainError(
            ErrorCode.PRIMARY_NOT_REMOVABLE,
            f"The primary sub-account cannot be {what}.",
            (field,),
        )


def subject(sub_account: SubAccount) -> Subject:
    return Subject("SubAccount", sub_account.id)


def _announced(sub_account: SubAccount, kind: AuditKind, summary: str) -> Changed[SubAccount]:
    """A change the client's banner reflects."""
    return Changed(
        sub_account,
        (banner_event(sub_account.id, banner_of(sub_account)),),
        AuditNote(kind, summary, subject(sub_account)),
    )


def suspend(sub_account: SubAccount, note: str | None, now: datetime) -> Changed[SubAccount]:
    """Suspends it; a second suspension only edits the note on the banner."""
    if sub_account.status is SubAccountStatus.SUSPENDED:
        edited = replace(sub_account, suspension_note=note)
        summary = (
            f"changed the suspension note of {edited.name} to: {note}"
            if note
            else f"removed the suspension note of {edited.name}"
        )
        return _announced(edited, AuditKind.SUBACCOUNT_SUSPENDED, summary)
    check_suspendable(sub_account)
    suspended = replace(
        sub_account, status=SubAccountStatus.SUSPENDED, suspended_at=now, suspension_note=note
    )
    summary = f"suspended {suspended.name}" + (f" (note: {note})" if note else "")
    return _announced(suspended, AuditKind.SUBACCOUNT_SUSPENDED, summary)


def restore(sub_account: SubAccount) -> Changed[SubAccount]:
    check_restorable(sub_account)
    restored = replace(
        sub_account, status=SubAccountStatus.ACTIVE, suspended_at=None, suspension_note=None
    )
    return _announced(restored, AuditKind.SUBACCOUNT_RESTORED, f"restored {restored.name}")


def remove(
    sub_account: SubAccount,
    destination: SubAccount,
    held_seconds: Mapping[Tier, int],
    now: datetime,
) -> Changed[SubAccount]:
    """REMOVED, its credits gone (to the primary, by the use case), its banner down; the
    audit line says what it held (`held_seconds`, moved to `destination` by the use case)."""
    check_removable(sub_account, destination)
    removed = replace(
        sub_account,
        status=SubAccountStatus.REMOVED,
        removed_at=now,
        knowledge_pack_credits=0,
        suspended_at=None,
        suspension_note=None,
        capped_at=None,
    )
    held = [tier_minutes_text(seconds, tier) for tier, seconds in held_seconds.items() if seconds]
    credits = sub_account.knowledge_pack_credits
    summary = f"removed {removed.name}; " + (
        f"its {' and '.join(held)} went to {destination.name}" if held else "it held no minutes"
    )
    if credits:
        summary += f"; its {_credits(credits)} went to the primary"
    return _announced(removed, AuditKind.SUBACCOUNT_REMOVED, summary)


def _credits(count: int) -> str:
    return f"{count} Knowledge Pack credit{'' if count == 1 else 's'}"


def edit(
    sub_account: SubAccount,
    name: str | None,
    login_email: str | None,
    markups: dict[str, int],
) -> Changed[SubAccount]:
    """Name, login email and markups (`markup_basic_bp`/`markup_premium_bp`) as given."""
    check_changeable(sub_account)
    if sub_account.is_primary and markups:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "The primary pays base cost: it has no markup.",
            ("markupPercent",),
        )
    edited = replace(
        sub_account,
        name=sub_account.name if name is None else name,
        login_email=sub_account.login_email if login_email is None else login_email,
        **markups,  # type: ignore[arg-type]
    )
    what = []
    if edited.name != sub_account.name:
        what.append(f"name to {edited.name}")
    if edited.login_email != sub_account.login_email:
        what.append(f"login email to {edited.login_email}")
    markup_bps = (edited.markup_basic_bp, edited.markup_premium_bp)
    if markup_bps != (sub_account.markup_basic_bp, sub_account.markup_premium_bp):
        basic, premium = (bp_to_percent(bp) for bp in markup_bps)
        what.append(f"markup to {basic} % BASIC and {premium} % PREMIUM")
    # Nothing changed: the use case sees `state == sub_account` and logs nothing.
    summary = f"updated {sub_account.name}: {', '.join(what) or 'nothing'}"
    return Changed(edited, (), AuditNote(AuditKind.SUBACCOUNT_UPDATED, summary, subject(edited)))


def set_balance_source(sub_account: SubAccount, source: BalanceSource) -> Changed[SubAccount]:
    check_changeable(sub_account)
    if sub_account.is_primary:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "The primary always pays from its own balance.", ("id",)
        )
    changed = replace(sub_account, balance_source=source)
    payer = "the agency" if source is BalanceSource.AGENCY else "its own balance"
    return Changed(
        changed,
        (),
        AuditNote(
            AuditKind.BALANCE_SOURCE_CHANGED,
            f"{changed.name} now pays for its calls from {payer}",
            subject(changed),
        ),
    )


def move_credits(
    source: SubAccount, destination: SubAccount, credits: int
) -> Changed[tuple[SubAccount, SubAccount]]:
    """Whole Knowledge Pack credits between the primary and a secondary, never below zero."""
    if credits <= 0:
        raise DomainError(ErrorCode.INVALID_INPUT, "Move at least one credit.", ("credits",))
    if source.id == destination.id:
        raise DomainError(
            ErrorCode.SAME_SUBACCOUNT, "Choose two different sub-accounts.", ("toId",)
        )
    if not (source.is_primary or destination.is_primary):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "Credits move between the primary and a secondary.", ("toId",)
        )
    check_changeable(source, "fromId")
    check_changeable(destination, "toId")
    if source.knowledge_pack_credits < credits:
        raise DomainError(
            ErrorCode.INSUFFICIENT_CREDITS,
            f"Only {source.knowledge_pack_credits} credits are left.",
            ("credits",),
        )
    moved = (
        replace(source, knowledge_pack_credits=source.knowledge_pack_credits - credits),
        replace(destination, knowledge_pack_credits=destination.knowledge_pack_credits + credits),
    )
    secondary = destination if source.is_primary else source
    summary = f"moved {_credits(credits)} from {source.name} to {destination.name}"
    return Changed(moved, (), AuditNote(AuditKind.CREDITS_TRANSFERRED, summary, subject(secondary)))
