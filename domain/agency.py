"""Agencies, their sub-accounts and users as the rules see them, and what signing up creates."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from uuid import UUID

from domain.billing_cycle import next_anniversary
from domain.identity import check_name, check_password, normalize_email
from domain.money import Tier, minutes_to_seconds
from domain.plans import BillingModel, PlanSpec, plan_named
from domain.policy import Role


class SubAccountKind(StrEnum):
    PRIMARY = "PRIMARY"
    SECONDARY = "SECONDARY"


class SubAccountStatus(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    REMOVED = "REMOVED"
    MERGED = "MERGED"


class BalanceSource(StrEnum):
    CUSTOMER = "CUSTOMER"
    AGENCY = "AGENCY"


@dataclass(frozen=True)
class Agency:
    id: UUID
    name: str
    plan_name: str
    billing_model: BillingModel
    sub_account_cap: int | None
    included_monthly_minutes: int
    included_tier: Tier
    plan_started_on: date
    time_zone: str

    def plan_renewal_date(self, today: date) -> date:
        return next_anniversary(self.plan_started_on, today)


@dataclass(frozen=True)
class SubAccount:
    id: UUID
    agency_id: UUID
    kind: SubAccountKind
    name: str
    login_email: str
    status: SubAccountStatus
    subscription_start_date: date
    balance_source: BalanceSource
    knowledge_pack_credits: int
    markup_basic_bp: int = 0
    markup_premium_bp: int = 0
    suspended_at: datetime | None = None
    suspension_note: str | None = None
    removed_at: datetime | None = None
    capped_at: datetime | None = None  # its spending cap was reached this billing period

    @property
    def is_primary(self) -> bool:
        return self.kind is SubAccountKind.PRIMARY

    def next_billing_date(self, today: date) -> date:
        return next_anniversary(self.subscription_start_date, today)

    def markup_bp(self, tier: Tier) -> int:
        return self.markup_basic_bp if tier is Tier.BASIC else self.markup_premium_bp

    @property
    def is_live(self) -> bool:
        """Counts against the plan's cap, and can be worked with (not removed or merged)."""
        return self.status in (SubAccountStatus.ACTIVE, SubAccountStatus.SUSPENDED)


@dataclass(frozen=True)
class User:
    id: UUID
    agency_id: UUID
    email: str
    role: Role
    all_sub_accounts: bool


@dataclass(frozen=True)
class SignUp:
    """A validated sign-up: what the resolver must persist, in one transaction."""

    agency_name: str
    owner_email: str
    plan: PlanSpec
    started_on: date
    included_seconds: int

    @property
    def included_tier(self) -> Tier:
        return self.plan.included_tier


def sign_up(
    agency_name: str, owner_email: str, password: str, plan_name: str | None, now: datetime
) -> SignUp:
    """Check a sign-up. The plan's included minutes go to the Primary at once (SPEC)."""
    name = check_name(agency_name, "agencyName")
    email = normalize_email(owner_email, "ownerEmail")
    check_password(password, email)
    plan = plan_named(plan_name)
    return SignUp(
        agency_name=name,
        owner_email=email,
        plan=plan,
        started_on=now.date(),
        included_seconds=minutes_to_seconds(plan.included_monthly_minutes),
    )


def edit_agency(agency: Agency, name: str | None, time_zone: str | None) -> Agency:
    """The agency renamed, or set to cut its days in another zone (validated by the caller's
    input checks: `check_name`, `check_time_zone`)."""
    return replace(
        agency,
        name=agency.name if name is None else name,
        time_zone=agency.time_zone if time_zone is None else time_zone,
    )
