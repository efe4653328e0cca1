"""Agencies and their sub-accounts: writing what a sign-up creates."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import exists, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.agency import (
    Agency,
    BalanceSource,
    SignUp,
    SubAccount,
    SubAccountKind,
    SubAccountStatus,
)
from persistence.ledger import open_balances
from persistence.records import agency_t, sub_account_t, user_t


async def email_in_use(conn: AsyncConnection, email: str) -> bool:
    """Emails are unique across users and sub-account logins of every agency."""
    query = select(
        or_(
            exists().where(user_t.c.email == email),
            exists().where(sub_account_t.c.login_email == email),
        )
    )
    return bool(await conn.scalar(query))


async def add_agency(conn: AsyncConnection, signup: SignUp, now: datetime) -> Agency:
    agency = Agency(
        id=uuid.uuid4(),
        name=signup.agency_name,
        plan_name=signup.plan.name,
        billing_model=signup.plan.billing_model,
        sub_account_cap=signup.plan.sub_account_cap,
        included_monthly_minutes=signup.plan.included_monthly_minutes,
        included_tier=signup.plan.included_tier,
        plan_started_on=signup.started_on,
        time_zone="UTC",
    )
    await conn.execute(
        insert(agency_t).values(
            id=agency.id,
            name=agency.name,
            plan_name=agency.plan_name,
            billing_model=agency.billing_model.value,
            sub_account_cap=agency.sub_account_cap,
            included_monthly_minutes=agency.included_monthly_minutes,
            included_tier=agency.included_tier.value,
            plan_started_on=agency.plan_started_on,
            time_zone=agency.time_zone,
            created_at=now,
        )
    )
    return agency


async def add_sub_account(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    kind: SubAccountKind,
    name: str,
    login_email: str,
    subscription_start_date: datetime,
    knowledge_pack_credits: int,
    now: datetime,
) -> SubAccount:
    sub_account = SubAccount(
        id=uuid.uuid4(),
        agency_id=agency_id,
        kind=kind,
        name=name,
        login_email=login_email,
        status=SubAccountStatus.ACTIVE,
        subscription_start_date=subscription_start_date.date(),
        balance_source=BalanceSource.CUSTOMER,
        knowledge_pack_credits=knowledge_pack_credits,
    )
    await conn.execute(
        insert(sub_account_t).values(
            id=sub_account.id,
            agency_id=agency_id,
            kind=kind.value,
            name=name,
            login_email=login_email,
            status=sub_account.status.value,
            subscription_start_date=sub_account.subscription_start_date,
            balance_source=sub_account.balance_source.value,
            knowledge_pack_credits=knowledge_pack_credits,
            created_at=now,
        )
    )
    await open_balances(conn, sub_account.id)
    return sub_account
