"""Rows to domain objects: the one place that knows both shapes."""

from __future__ import annotations

from typing import Any

from domain.agency import Agency, BalanceSource, SubAccount, SubAccountKind, SubAccountStatus, User
from domain.money import Tier
from domain.plans import BillingModel
from domain.policy import Role
from persistence.tables import AgencyRow, SubAccountRow, UserRow

agency_t = AgencyRow.__table__
sub_account_t = SubAccountRow.__table__
user_t = UserRow.__table__

AGENCY_COLUMNS = (
    agency_t.c.id,
    agency_t.c.name,
    agency_t.c.plan_name,
    agency_t.c.billing_model,
    agency_t.c.sub_account_cap,
    agency_t.c.included_monthly_minutes,
    agency_t.c.included_tier,
    agency_t.c.plan_started_on,
    agency_t.c.time_zone,
)
# The statuses that count against a plan's cap and can be worked with (SubAccount.is_live).
LIVE_STATUSES = ("ACTIVE", "SUSPENDED")
SUB_ACCOUNT_COLUMNS = (
    sub_account_t.c.id,
    sub_account_t.c.agency_id,
    sub_account_t.c.kind,
    sub_account_t.c.name,
    sub_account_t.c.login_email,
    sub_account_t.c.status,
    sub_account_t.c.subscription_start_date,
    sub_account_t.c.balance_source,
    sub_account_t.c.knowledge_pack_credits,
    sub_account_t.c.markup_basic_bp,
    sub_account_t.c.markup_premium_bp,
    sub_account_t.c.suspended_at,
    sub_account_t.c.suspension_note,
    sub_account_t.c.removed_at,
    sub_account_t.c.capped_at,
)
USER_COLUMNS = (
    user_t.c.id,
    user_t.c.agency_id,
    user_t.c.email,
    user_t.c.role,
    user_t.c.all_sub_accounts,
)


def agency_from(row: Any) -> Agency:
    return Agency(
        id=row.id,
        name=row.name,
        plan_name=row.plan_name,
        billing_model=BillingModel(row.billing_model),
        sub_account_cap=row.sub_account_cap,
        included_monthly_minutes=row.included_monthly_minutes,
        included_tier=Tier(row.included_tier),
        plan_started_on=row.plan_started_on,
        time_zone=row.time_zone,
    )


def sub_account_from(row: Any) -> SubAccount:
    return SubAccount(
        id=row.id,
        agency_id=row.agency_id,
        kind=SubAccountKind(row.kind),
        name=row.name,
        login_email=row.login_email,
        status=SubAccountStatus(row.status),
        subscription_start_date=row.subscription_start_date,
        balance_source=BalanceSource(row.balance_source),
        knowledge_pack_credits=row.knowledge_pack_credits,
        markup_basic_bp=row.markup_basic_bp,
        markup_premium_bp=row.markup_premium_bp,
        suspended_at=row.suspended_at,
        suspension_note=row.suspension_note,
        removed_at=row.removed_at,
        capped_at=row.capped_at,
    )


def user_from(row: Any) -> User:
    return User(
        id=row.id,
        agency_id=row.agency_id,
        email=row.email,
        role=Role(row.role),
        all_sub_accounts=row.all_sub_accounts,
    )
