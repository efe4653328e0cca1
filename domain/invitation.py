"""Invitations: who may be invited to what, and whether a secret link still works."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from domain.errors import DomainError, ErrorCode
from domain.identity import normalize_email
from domain.policy import Role

INVITATION_VALIDITY = timedelta(days=7)
ASSIGNABLE_ROLES = frozenset(
    {Role.AGENCY_ADMIN, Role.AGENCY_MEMBER, Role.SUBACCOUNT_ADMIN, Role.SUBACCOUNT_MEMBER}
)
SUB_ACCOUNT_ROLES = frozenset({Role.SUBACCOUNT_ADMIN, Role.SUBACCOUNT_MEMBER})


@dataclass(frozen=True)
class Access:
    """A role and, where the role is scoped, which sub-accounts it reaches."""

    role: Role
    all_sub_accounts: bool
    sub_account_ids: frozenset[UUID]


def access_for(
    role: Role, all_sub_accounts: bool | None, sub_account_ids: Sequence[UUID] | None
) -> Access:
    """Check a role assignment (for an invitation or a role change).

    Agency admins reach everything, so grants mean nothing to them. Agency members use the
    primary plus whatever they are granted. Sub-account roles need all sub-accounts or a list.
    """
    if role not in ASSIGNABLE_ROLES:
        raise DomainError(
            ErrorCode.ROLE_NOT_ASSIGNABLE,
            "The owner role is not assigned: use transferOwnership.",
            ("role",),
        )
    ids = frozenset(sub_account_ids or ())
    if role is Role.AGENCY_ADMIN:
        return Access(role, True, frozenset())
    every = bool(all_sub_accounts)
    if role in SUB_ACCOUNT_ROLES and not every and not ids:
        raise DomainError(
            ErrorCode.SUBACCOUNTS_REQUIRED,
            "Choose all sub-accounts or at least one sub-account.",
            ("subAccountIds",),
        )
    return Access(role, every, frozenset() if every else ids)


@dataclass(frozen=True)
class Invitation:
    id: UUID
    agency_id: UUID
    email: str
    role: Role
    all_sub_accounts: bool
    sub_account_ids: frozenset[UUID]
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None

    @property
    def access(self) -> Access:
        return Access(self.role, self.all_sub_accounts, self.sub_account_ids)

    def is_pending(self, now: datetime) -> bool:
        return self.accepted_at is None and self.revoked_at is None and now < self.expires_at


def invitee_email(raw: str) -> str:
    return normalize_email(raw, "email")


def check_acceptable(invitation: Invitation, secret_superseded: bool, now: datetime) -> None:
    """Why a secret link no longer works, each with its own code; nothing when it does."""
    if invitation.accepted_at is not None:
        raise DomainError(ErrorCode.INVITATION_USED, "This invitation was already accepted.")
    if invitation.revoked_at is not None:
        raise DomainError(ErrorCode.INVITATION_REVOKED, "This invitation was revoked.")
    if secret_superseded:
        raise DomainError(
            ErrorCode.INVITATION_SUPERSEDED,
            "A newer invitation link was sent; use the latest email.",
        )
    if now >= invitation.expires_at:
        raise DomainError(
            ErrorCode.INVITATION_EXPIRED,
            "This invitation has expired; ask for a new one.",
        )


def check_resendable(invitation: Invitation) -> None:
    if invitation.accepted_at is not None or invitation.revoked_at is not None:
        raise DomainError(
            ErrorCode.INVITATION_NOT_PENDING, "Only a pending invitation can be resent."
        )
