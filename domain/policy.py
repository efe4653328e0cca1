"""Who may do what: the SPEC's role table as data, and the one function that reads it.

Every resolver, field and subscription asks `can`/`require`; nothing else decides access.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum, auto
from uuid import UUID

from domain.errors import AccessDenied


class Role(StrEnum):
    AGENCY_OWNER = "AGENCY_OWNER"
    AGENCY_ADMIN = "AGENCY_ADMIN"
    AGENCY_MEMBER = "AGENCY_MEMBER"
    SUBACCOUNT_ADMIN = "SUBACCOUNT_ADMIN"
    SUBACCOUNT_MEMBER = "SUBACCOUNT_MEMBER"


AGENCY_ROLES = frozenset({Role.AGENCY_OWNER, Role.AGENCY_ADMIN, Role.AGENCY_MEMBER})


class Action(Enum):
    VIEW_AGENCY = auto()  # the agency's name: every user of it
    VIEW_AGENCY_DETAILS = auto()  # plan, slots, client list, agency reports
    VIEW_SUB_ACCOUNT = auto()
    WORK_IN_SUB_ACCOUNT = auto()  # changes inside a sub-account (activities, settings)
    MAKE_PAYMENTS = auto()  # cards and minute purchases inside a sub-account
    ADMINISTER_SUB_ACCOUNTS = auto()  # create, suspend, restore, remove, merge, balance source
    TRANSFER_MINUTES = auto()
    VIEW_USERS = auto()
    MANAGE_USERS = auto()
    VIEW_AUDIT_EVENTS = auto()
    MANAGE_API_KEYS = auto()
    TRANSFER_OWNERSHIP = auto()
    MANAGE_AGENCY = auto()  # the agency's own settings: name, time zone
    MANAGE_PAYOUTS = auto()  # where the agency's earnings go, and when
    MANAGE_LINES = auto()  # add phone lines to the pool, assign, move and release them
    MANAGE_BILLING = auto()  # the billing summary, its discounts and credits
    MANAGE_WEBHOOKS = auto()  # the agency's outgoing webhook endpoints and their deliveries


class Scope(Enum):
    NONE = auto()
    AGENCY = auto()  # anything in the viewer's agency
    PRIMARY_AND_GRANTED = auto()  # the primary plus the sub-accounts granted to the viewer
    GRANTED = auto()  # only the sub-accounts granted to the viewer


_A, _PG, _G = Scope.AGENCY, Scope.PRIMARY_AND_GRANTED, Scope.GRANTED
# The SPEC gives the owner alone ownership transfer and payouts; ingestion keys are
# billing-grade credentials, so creating and revoking them is the owner's too.
_OWNER_ONLY = frozenset({Action.TRANSFER_OWNERSHIP, Action.MANAGE_API_KEYS, Action.MANAGE_PAYOUTS})

# role → action → scope; an action missing from a role's row is refused.
POLICY: dict[Role, dict[Action, Scope]] = {
    Role.AGENCY_OWNER: {action: _A for action in Action},
    Role.AGENCY_ADMIN: {action: _A for action in Action if action not in _OWNER_ONLY},
    Role.AGENCY_MEMBER: {
        Action.VIEW_AGENCY: _A,
        Action.VIEW_AGENCY_DETAILS: _A,
        Action.VIEW_SUB_ACCOUNT: _PG,
        Action.WORK_IN_SUB_ACCOUNT: _PG,
        Action.MAKE_PAYMENTS: _PG,
    },
    Role.SUBACCOUNT_ADMIN: {
        Action.VIEW_AGENCY: _A,
        Action.VIEW_SUB_ACCOUNT: _G,
        Action.WORK_IN_SUB_ACCOUNT: _G,
        Action.MAKE_PAYMENTS: _G,
    },
    Role.SUBACCOUNT_MEMBER: {
        Action.VIEW_AGENCY: _A,
        Action.VIEW_SUB_ACCOUNT: _G,
        Action.MAKE_PAYMENTS: _G,
    },
}


@dataclass(frozen=True)
class Viewer:
    """The signed-in principal of a request, as the policy needs it."""

    user_id: UUID
    agency_id: UUID
    role: Role
    all_sub_accounts: bool = False
    sub_account_ids: frozenset[UUID] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Target:
    """What an action touches: an agency, or one sub-account inside it."""

    agency_id: UUID
    sub_account_id: UUID | None = None
    is_primary: bool = False


def can(viewer: Viewer, action: Action, target: Target) -> bool:
    if viewer.agency_id != target.agency_id:
        return False  # tenant isolation comes before any role
    scope = POLICY[viewer.role].get(action, Scope.NONE)
    if scope is Scope.AGENCY:
        return True
    if scope is Scope.NONE or target.sub_account_id is None:
        return False
    if scope is Scope.PRIMARY_AND_GRANTED and target.is_primary:
        return True
    return viewer.all_sub_accounts or target.sub_account_id in viewer.sub_account_ids


def require(viewer: Viewer, action: Action, target: Target) -> None:
    if not can(viewer, action, target):
        raise AccessDenied(f"{viewer.role} may not {action.name.lower()} here")
