"""Events that reach live screens: their kinds, their payloads, the broker topics they travel
on, and their JSON form (`encode` and `decode`, the one place a payload is spelled out)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar
from uuid import UUID

from domain.audit import AuditKind, AuditNote, AuditRecord, Subject
from domain.banner import Banner
from domain.live import (
    AgencyTotals,
    UsageSnapshot,
    totals_from,
    totals_payload,
    usage_payload,
    usage_snapshot_from,
)


class EventKind(StrEnum):
    USAGE_UPDATED = "USAGE_UPDATED"  # calls were recorded
    BALANCES_CHANGED = "BALANCES_CHANGED"  # minutes moved otherwise (transfer, removal)
    AGENCY_TOTALS_UPDATED = "AGENCY_TOTALS_UPDATED"
    BANNER_CHANGED = "BANNER_CHANGED"
    ACCESS_CHANGED = "ACCESS_CHANGED"  # on a user's topic: re-check what they may watch
    AUDIT_RECORDED = "AUDIT_RECORDED"


USAGE_KINDS = frozenset({EventKind.USAGE_UPDATED, EventKind.BALANCES_CHANGED})


def agency_topic(agency_id: UUID) -> str:
    return f"agency:{agency_id}"


def sub_account_topic(sub_account_id: UUID) -> str:
    return f"sub_account:{sub_account_id}"


def user_topic(user_id: UUID) -> str:
    """Where a user's open subscriptions hear that the user's access changed."""
    return f"user:{user_id}"


@dataclass(frozen=True)
class BannerChanged:
    sub_account_id: UUID
    banner: Banner


@dataclass(frozen=True)
class AccessChanged:
    user_id: UUID


Payload = UsageSnapshot | AgencyTotals | BannerChanged | AccessChanged | AuditRecord


@dataclass(frozen=True)
class Event:
    """Something to announce after commit, on `topic`.

    `key` narrows who on the topic may want it (a sub-account's usage on its agency's topic):
    each process hands an event only to the subscribers of its key, or of the whole topic.
    """

    topic: str
    kind: EventKind
    payload: Payload
    key: str | None = None


T = TypeVar("T")


@dataclass(frozen=True)
class Changed(Generic[T]):
    """What a domain transition returns: the new state, the events to announce once it is
    committed, and the line it adds to the audit log."""

    state: T
    events: tuple[Event, ...]
    note: AuditNote


def usage_event(snapshot: UsageSnapshot, kind: EventKind = EventKind.BALANCES_CHANGED) -> Event:
    """On the agency's topic, keyed by sub-account: one channel per agency carries every
    sub-account's usage; a screen watching one sub-account is handed only its events."""
    sub_account = snapshot.sub_account
    return Event(agency_topic(sub_account.agency_id), kind, snapshot, key=str(sub_account.id))


def totals_event(agency_id: UUID, totals: AgencyTotals) -> Event:
    return Event(agency_topic(agency_id), EventKind.AGENCY_TOTALS_UPDATED, totals)


def banner_event(sub_account_id: UUID, banner: Banner) -> Event:
    return Event(
        sub_account_topic(sub_account_id),
        EventKind.BANNER_CHANGED,
        BannerChanged(sub_account_id, banner),
    )


def access_changed(user_id: UUID) -> Event:
    return Event(user_topic(user_id), EventKind.ACCESS_CHANGED, AccessChanged(user_id))


def audit_recorded(record: AuditRecord) -> Event:
    return Event(agency_topic(record.agency_id), EventKind.AUDIT_RECORDED, record)


# ---- JSON ----------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _banner_payload(event: BannerChanged) -> dict[str, Any]:
    banner = event.banner
    return {
        "sub_account_id": str(event.sub_account_id),
        "active": banner.active,
        "message": banner.message,
        "note": banner.note,
        "since": _iso(banner.since),
    }


def _banner_from(data: dict[str, Any]) -> BannerChanged:
    return BannerChanged(
        UUID(data["sub_account_id"]),
        Banner(data["active"], data["message"], data["note"], _moment(data["since"])),
    )


def _access_payload(event: AccessChanged) -> dict[str, Any]:
    return {"user_id": str(event.user_id)}


def _access_from(data: dict[str, Any]) -> AccessChanged:
    return AccessChanged(UUID(data["user_id"]))


def _audit_payload(record: AuditRecord) -> dict[str, Any]:
    subject = record.subject
    return {
        "id": record.id,
        "agency_id": str(record.agency_id),
        "kind": record.kind.value,
        "occurred_at": record.occurred_at.isoformat(),
        "email": record.email,
        "subject": None if subject is None else [subject.type_name, str(subject.id)],
        "summary": record.summary,
    }


def _audit_from(data: dict[str, Any]) -> AuditRecord:
    subject = data["subject"]
    return AuditRecord(
        id=data["id"],
        agency_id=UUID(data["agency_id"]),
        kind=AuditKind(data["kind"]),
        occurred_at=datetime.fromisoformat(data["occurred_at"]),
        email=data["email"],
        subject=None if subject is None else Subject(subject[0], UUID(subject[1])),
        summary=data["summary"],
    )


_CODECS: dict[EventKind, tuple[Callable[[Any], dict[str, Any]], Callable[[Any], Any]]] = {
    EventKind.USAGE_UPDATED: (usage_payload, usage_snapshot_from),
    EventKind.BALANCES_CHANGED: (usage_payload, usage_snapshot_from),
    EventKind.AGENCY_TOTALS_UPDATED: (totals_payload, totals_from),
    EventKind.BANNER_CHANGED: (_banner_payload, _banner_from),
    EventKind.ACCESS_CHANGED: (_access_payload, _access_from),
    EventKind.AUDIT_RECORDED: (_audit_payload, _audit_from),
}


def encode(event: Event) -> dict[str, Any]:
    """The event's payload as JSON-ready data, as the outbox stores it."""
    return _CODECS[event.kind][0](event.payload)


def decode(kind: str, data: dict[str, Any]) -> Payload | None:
    """A payload from its JSON form; None for a kind or shape this version does not know (an
    event written by an older version, still in the outbox's replay window)."""
    try:
        return _CODECS[EventKind(kind)][1](data)  # type: ignore[no-any-return]
    except (ValueError, KeyError, TypeError):
        return None
