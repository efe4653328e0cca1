"""Merging one secondary into another: requested by one owner or agency admin, approved or
rejected by a different one, irreversible.

Approval moves the source's balances (converted by value, as transfers do), Knowledge Pack
credits, lines, activities and user grants to the target in one transaction; the source
becomes MERGED and frees its slot, and its history rolls up into the target's reports
(docs/ARCHITECTURE.md, "Merging sub-accounts").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from domain.agency import SubAccount, SubAccountStatus
from domain.audit import AuditKind, AuditNote, Subject, tier_minutes_text
from domain.errors import DomainError, ErrorCode
from domain.money import Tier

MAX_MERGE_NOTE_LENGTH = 500


class MergeStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class MergeRequest:
    id: UUID
    agency_id: UUID
    source_id: UUID
    target_id: UUID
    status: MergeStatus
    note: str | None
    requested_by: UUID | None  # None once that user was removed from the agency
    requested_by_email: str
    requested_at: datetime
    decided_by: UUID | None = None
    decided_by_email: str | None = None
    decided_at: datetime | None = None


def subject(request: MergeRequest) -> Subject:
    return Subject("MergeRequest", request.id)


def check_note(note: str | None) -> str | None:
    if note is None:
        return None
    note = note.strip()
    if len(note) > MAX_MERGE_NOTE_LENGTH:
        raise DomainError(
            ErrorCode.NOTE_TOO_LONG,
            f"A merge note has at most {MAX_MERGE_NOTE_LENGTH} characters.",
            ("note",),
        )
    return note or None


def check_mergeable(source: SubAccount, target: SubAccount) -> None:
    """Two different ACTIVE secondaries (of one agency: the caller loads them agency-scoped)."""
    if source.id == target.id:
        raise DomainError(
            ErrorCode.SAME_SUBACCOUNT, "Merge into another sub-account.", ("targetId",)
        )
    for account, field in ((source, "sourceId"), (target, "targetId")):
        if account.is_primary:
            raise DomainError(
                ErrorCode.PRIMARY_NOT_MERGEABLE,
                "The primary sub-account cannot be merged.",
                (field,),
            )
    for account, field in ((source, "sourceId"), (target, "targetId")):
        if account.status is not SubAccountStatus.ACTIVE:
            raise DomainError(
                ErrorCode.SUBACCOUNT_NOT_ACTIVE,
                f"{account.name} is {account.status.value.lower()}: only active sub-accounts "
                "can be merged.",
                (field,),
            )


def already_pending() -> DomainError:
    return DomainError(
        ErrorCode.MERGE_ALREADY_PENDING,
        "This sub-account already has a merge request waiting for a decision.",
        ("sourceId",),
    )


def request(
    request_id: UUID,
    source: SubAccount,
    target: SubAccount,
    note: str | None,
    requested_by: UUID,
    requested_by_email: str,
    now: datetime,
) -> tuple[MergeRequest, AuditNote]:
    check_mergeable(source, target)
    made = MergeRequest(
        request_id,
        source.agency_id,
        source.id,
        target.id,
        MergeStatus.PENDING,
        note,
        requested_by,
        requested_by_email,
        now,
    )
    summary = f"asked to merge {source.name} into {target.name}" + (
        f" (note: {note})" if note else ""
    )
    return made, AuditNote(AuditKind.MERGE_REQUESTED, summary, subject(made))


def check_decidable(merge: MergeRequest, decider: UUID) -> None:
    """Only a PENDING request, and only by someone other than who asked for it."""
    if merge.status is not MergeStatus.PENDING:
        raise DomainError(
            ErrorCode.MERGE_NOT_PENDING,
            f"This merge request was {merge.status.value.lower()} already.",
            ("id",),
        )
    if merge.requested_by == decider:
        raise DomainError(
            ErrorCode.APPROVER_MUST_DIFFER,
            "Another owner or admin must decide on a merge you asked for.",
            ("id",),
        )


def _decided(
    merge: MergeRequest, status: MergeStatus, decider: UUID, email: str, now: datetime
) -> MergeRequest:
    return replace(merge, status=status, decided_by=decider, decided_by_email=email, decided_at=now)


def reject(
    merge: MergeRequest,
    source: SubAccount,
    target: SubAccount,
    decider: UUID,
    email: str,
    now: datetime,
) -> tuple[MergeRequest, AuditNote]:
    check_decidable(merge, decider)
    rejected = _decided(merge, MergeStatus.REJECTED, decider, email, now)
    summary = f"rejected merging {source.name} into {target.name}"
    return rejected, AuditNote(AuditKind.MERGE_REJECTED, summary, subject(rejected))


@dataclass(frozen=True)
class Approval:
    """What approving a merge makes: the decided request, the source MERGED (its credits
    gone to the target), the target with them, and the audit line."""

    request: MergeRequest
    source: SubAccount
    target: SubAccount
    note: AuditNote


def approve(
    merge: MergeRequest,
    source: SubAccount,
    target: SubAccount,
    decider: UUID,
    email: str,
    now: datetime,
    moved_seconds: Mapping[Tier, int],
    line_count: int,
) -> Approval:
    """The source and target as they are now (locked by the caller): still two different
    ACTIVE secondaries, or nothing happens. `moved_seconds`: what the source held, per tier
    (converted into the target's prices by the use case)."""
    check_decidable(merge, decider)
    check_mergeable(source, target)
    approved = _decided(merge, MergeStatus.APPROVED, decider, email, now)
    credits = source.knowledge_pack_credits
    merged = replace(
        source,
        status=SubAccountStatus.MERGED,
        knowledge_pack_credits=0,
        suspended_at=None,
        suspension_note=None,
    )
    grown = replace(target, knowledge_pack_credits=target.knowledge_pack_credits + credits)
    held = [tier_minutes_text(s, tier) for tier, s in moved_seconds.items() if s]
    moved = [*held]
    if credits:
        moved.append(f"{credits} Knowledge Pack credit{'' if credits == 1 else 's'}")
    if line_count:
        moved.append(f"{line_count} line{'' if line_count == 1 else 's'}")
    summary = f"merged {source.name} into {target.name}" + (
        f": moved {', '.join(moved)}" if moved else ""
    )
    return Approval(
        approved, merged, grown, AuditNote(AuditKind.MERGE_APPROVED, summary, subject(approved))
    )
