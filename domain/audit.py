"""The audit log: who changed what in an agency, and when, in one line each.

A change describes itself with an `AuditNote`; the unit of work stores it as an `AuditRecord`
in the change's own transaction (and announces it to the live feed). The log is kept, not
pruned with the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from domain.money import SECONDS_PER_MINUTE, Tier


class AuditKind(StrEnum):
    USER_SIGNED_IN = "USER_SIGNED_IN"
    SIGN_IN_FAILED = "SIGN_IN_FAILED"
    USER_SIGNED_OUT = "USER_SIGNED_OUT"
    AGENCY_SIGNED_UP = "AGENCY_SIGNED_UP"
    AGENCY_UPDATED = "AGENCY_UPDATED"
    USER_INVITED = "USER_INVITED"
    INVITATION_RESENT = "INVITATION_RESENT"
    INVITATION_REVOKED = "INVITATION_REVOKED"
    INVITATION_ACCEPTED = "INVITATION_ACCEPTED"
    USER_ROLE_CHANGED = "USER_ROLE_CHANGED"
    USER_REMOVED = "USER_REMOVED"
    OWNERSHIP_TRANSFERRED = "OWNERSHIP_TRANSFERRED"
    API_KEY_CREATED = "API_KEY_CREATED"
    API_KEY_REVOKED = "API_KEY_REVOKED"
    SUBACCOUNT_CREATED = "SUBACCOUNT_CREATED"
    SUBACCOUNT_UPDATED = "SUBACCOUNT_UPDATED"
    SUBACCOUNT_SUSPENDED = "SUBACCOUNT_SUSPENDED"
    SUBACCOUNT_RESTORED = "SUBACCOUNT_RESTORED"
    SUBACCOUNT_REMOVED = "SUBACCOUNT_REMOVED"
    MINUTES_TRANSFERRED = "MINUTES_TRANSFERRED"
    CREDITS_TRANSFERRED = "CREDITS_TRANSFERRED"
    BALANCE_SOURCE_CHANGED = "BALANCE_SOURCE_CHANGED"
    AUTO_ALLOCATION_CHANGED = "AUTO_ALLOCATION_CHANGED"
    ACTIVITY_CREATED = "ACTIVITY_CREATED"
    ACTIVITY_STATUS_CHANGED = "ACTIVITY_STATUS_CHANGED"
    # wave 2
    MINUTES_PURCHASED = "MINUTES_PURCHASED"
    PAYMENT_CARD_ADDED = "PAYMENT_CARD_ADDED"
    PAYMENT_CARD_REMOVED = "PAYMENT_CARD_REMOVED"
    PAYOUT_REQUESTED = "PAYOUT_REQUESTED"
    LINES_ADDED = "LINES_ADDED"
    LINE_ASSIGNED = "LINE_ASSIGNED"
    LINE_RELEASED = "LINE_RELEASED"
    BILLING_ADJUSTMENT_ADDED = "BILLING_ADJUSTMENT_ADDED"
    MERGE_REQUESTED = "MERGE_REQUESTED"
    MERGE_APPROVED = "MERGE_APPROVED"
    MERGE_REJECTED = "MERGE_REJECTED"
    WEBHOOK_ENDPOINT_CREATED = "WEBHOOK_ENDPOINT_CREATED"
    WEBHOOK_ENDPOINT_DELETED = "WEBHOOK_ENDPOINT_DELETED"
    WEBHOOK_ENDPOINT_PINGED = "WEBHOOK_ENDPOINT_PINGED"
    # wallet automation
    AUTO_RECHARGE_CHANGED = "AUTO_RECHARGE_CHANGED"
    AUTO_RECHARGE_FAILED = "AUTO_RECHARGE_FAILED"
    SPENDING_CAP_CHANGED = "SPENDING_CAP_CHANGED"
    SPENDING_CAP_REACHED = "SPENDING_CAP_REACHED"
    SPENDING_CAP_LIFTED = "SPENDING_CAP_LIFTED"


@dataclass(frozen=True)
class Subject:
    """What was acted on: its kind as the API names it (`SubAccount`, `User`, …) and its id."""

    type_name: str
    id: UUID


@dataclass(frozen=True)
class AuditNote:
    """What a change says about itself. `email` is who did it when that is not the signed-in
    actor (a sign-in names the account signing in)."""

    kind: AuditKind
    summary: str
    subject: Subject | None = None
    email: str | None = None


@dataclass(frozen=True)
class Actor:
    """Who is changing things: the agency they act in and their email."""

    agency_id: UUID
    email: str | None


@dataclass(frozen=True)
class AuditRecord:
    id: int
    agency_id: UUID
    kind: AuditKind
    occurred_at: datetime
    email: str | None
    subject: Subject | None
    summary: str


def minutes_text(seconds: int) -> str:
    """'8 minutes', '1 minute', '1 min 30 s', '45 s': exact, as the ledger counts."""
    minutes, rest = divmod(seconds, SECONDS_PER_MINUTE)
    if not rest:
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def tier_minutes_text(seconds: int, tier: Tier) -> str:
    """'10 PREMIUM minutes', or '1 min 30 s of PREMIUM' when it is not whole minutes."""
    minutes, rest = divmod(seconds, SECONDS_PER_MINUTE)
    if not rest:
        return f"{minutes} {tier.value} minute{'' if minutes == 1 else 's'}"
    return f"{minutes_text(seconds)} of {tier.value}"
