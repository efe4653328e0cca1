"""Running a team: role changes, removal and ownership transfer."""

from __future__ import annotations

from uuid import UUID

from domain.agency import User
from domain.errors import DomainError, ErrorCode
from domain.policy import Role


def check_role_change(target: User) -> None:
    if target.role is Role.AGENCY_OWNER:
        raise DomainError(
            ErrorCode.OWNER_ROLE_FIXED,
            "The owner's role changes only by transferring ownership.",
            ("userId",),
        )


def check_removal(actor_id: UUID, target: User) -> None:
    if target.role is Role.AGENCY_OWNER:
        raise DomainError(
            ErrorCode.OWNER_NOT_REMOVABLE,
            "The owner cannot be removed; transfer ownership first.",
            ("userId",),
        )
    if target.id == actor_id:
        raise DomainError(
            ErrorCode.CANNOT_REMOVE_SELF, "Ask another admin to remove you.", ("userId",)
        )


def check_ownership_transfer(actor_id: UUID, target: User) -> None:
    """Ownership goes to an agency admin; the old owner becomes an agency admin."""
    if target.id == actor_id or target.role is not Role.AGENCY_ADMIN:
        raise DomainError(
            ErrorCode.TARGET_NOT_ADMIN,
            "Ownership can only be transferred to an agency admin.",
            ("toUserId",),
        )
