"""Events that reach live screens, and the broker topics they travel on."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.live import AgencyTotals, UsageSnapshot, totals_payload, usage_payload


def agency_topic(agency_id: UUID) -> str:
    return f"agency:{agency_id}"


def sub_account_topic(sub_account_id: UUID) -> str:
    return f"sub_account:{sub_account_id}"


def user_topic(user_id: UUID) -> str:
    """Where a user's open subscriptions hear that the user's access changed."""
    return f"user:{user_id}"


ACCESS_CHANGED = "ACCESS_CHANGED"


class AuditKind(StrEnum):
    """Security-relevant things that happened in an agency, for the owner's live audit feed."""

    USER_SIGNED_IN = "USER_SIGNED_IN"
    SIGN_IN_FAILED = "SIGN_IN_FAILED"
    USER_INVITED = "USER_INVITED"
    INVITATION_REVOKED = "INVITATION_REVOKED"
    INVITATION_ACCEPTED = "INVITATION_ACCEPTED"
    USER_ROLE_CHANGED = "USER_ROLE_CHANGED"
    USER_REMOVED = "USER_REMOVED"
    OWNERSHIP_TRANSFERRED = "OWNERSHIP_TRANSFERRED"
    API_KEY_CREATED = "API_KEY_CREATED"
    API_KEY_REVOKED = "API_KEY_REVOKED"


@dataclass(frozen=True)
class Event:
    """Something to announce after commit. `payload` is JSON-ready (str, int, bool, None).

    `key` narrows who on the topic may want it (a sub-account's usage on its agency's topic):
    each process hands an event only to the subscribers of its key, or of the whole topic.
    """

    topic: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    key: str | None = None


def audit_event(agency_id: UUID, kind: AuditKind, occurred_at: str, **details: Any) -> Event:
    return Event(agency_topic(agency_id), kind.value, {"occurred_at": occurred_at, **details})


def access_changed(user_id: UUID) -> Event:
    return Event(user_topic(user_id), ACCESS_CHANGED)


USAGE_UPDATED = "USAGE_UPDATED"  # calls were recorded
BALANCES_CHANGED = "BALANCES_CHANGED"  # minutes moved otherwise (transfer, removal)
AGENCY_TOTALS_UPDATED = "AGENCY_TOTALS_UPDATED"
BANNER_CHANGED = "BANNER_CHANGED"
USAGE_KINDS = frozenset({USAGE_UPDATED, BALANCES_CHANGED})


def usage_event(snapshot: UsageSnapshot, kind: str = BALANCES_CHANGED) -> Event:
    """On the agency's topic, keyed by sub-account: one channel per agency carries every
    sub-account's usage; a screen watching one sub-account is handed only its events."""
    sub_account = snapshot.sub_account
    return Event(
        agency_topic(sub_account.agency_id),
        kind,
        usage_payload(snapshot),
        key=str(sub_account.id),
    )


def totals_event(agency_id: UUID, totals: AgencyTotals) -> Event:
    return Event(agency_topic(agency_id), AGENCY_TOTALS_UPDATED, totals_payload(totals))
