"""Agencies and their sub-accounts: writing what a sign-up creates."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.agency import (
    Agency,
    BalanceSource,
    SignUp,
    SubAccount,
    SubAccountKind,
    SubAccountStatus,
)
from domain.auto_allocation import AutoAllocation
from domain.payouts import DEFAULT_PAYOUT_THRESHOLD_MICROS
from persistence import prepared
from persistence.database import dialect_insert
from persistence.ledger import open_balances
from persistence.prepared import Prepared, any_of, in_list
from persistence.records import (
    AGENCY_COLUMNS,
    LIVE_STATUSES,
    SUB_ACCOUNT_COLUMNS,
    agency_from,
    agency_t,
    sub_account_from,
    sub_account_t,
    user_t,
)
from persistence.tables import AutoAllocationRow

auto_allocation_t = AutoAllocationRow.__table__


async def agency_exists(conn: AsyncConnection, agency_id: uuid.UUID) -> bool:
    return bool(await conn.scalar(select(exists().where(agency_t.c.id == agency_id))))


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
            payout_threshold_micros=DEFAULT_PAYOUT_THRESHOLD_MICROS,
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
    subscription_start_date: date,
    knowledge_pack_credits: int,
    now: datetime,
    markup_bp: int = 0,
) -> SubAccount:
    sub_account = SubAccount(
        id=uuid.uuid4(),
        agency_id=agency_id,
        kind=kind,
        name=name,
        login_email=login_email,
        status=SubAccountStatus.ACTIVE,
        subscription_start_date=subscription_start_date,
        balance_source=BalanceSource.CUSTOMER,
        knowledge_pack_credits=knowledge_pack_credits,
        markup_basic_bp=markup_bp,
        markup_premium_bp=markup_bp,
    )
    await conn.execute(
        insert(sub_account_t).values(
            id=sub_account.id,
            agency_id=agency_id,
            kind=kind.value,
            name=name,
            login_email=login_email,
            status=sub_account.status.value,
            subscription_start_date=subscription_start_date,
            balance_source=sub_account.balance_source.value,
            knowledge_pack_credits=knowledge_pack_credits,
            markup_basic_bp=markup_bp,
            markup_premium_bp=markup_bp,
            created_at=now,
        )
    )
    await open_balances(conn, sub_account.id)
    return sub_account


async def agency_for_update(conn: AsyncConnection, agency_id: uuid.UUID) -> Agency | None:
    """The agency row, locked: creations under one plan cap go one at a time.

    FOR NO KEY UPDATE (docs/ARCHITECTURE.md, "Locks"): the id never changes, so the foreign-key
    checks of concurrent inserts (calls, ledger entries) need not wait for it.
    """
    query = (
        select(*AGENCY_COLUMNS).where(agency_t.c.id == agency_id).with_for_update(key_share=True)
    )
    row = (await conn.execute(query)).first()
    return None if row is None else agency_from(row)


async def update_agency(conn: AsyncConnection, agency_id: uuid.UUID, **values: Any) -> None:
    await conn.execute(update(agency_t).where(agency_t.c.id == agency_id).values(**values))


async def save_agency(conn: AsyncConnection, agency: Agency) -> None:
    """Write the agency's own settings as its entity has them."""
    await update_agency(conn, agency.id, name=agency.name, time_zone=agency.time_zone)


async def live_secondaries(conn: AsyncConnection, agency_id: uuid.UUID) -> int:
    return int(
        await conn.scalar(
            select(func.count())
            .select_from(sub_account_t)
            .where(
                sub_account_t.c.agency_id == agency_id,
                sub_account_t.c.kind == "SECONDARY",
                sub_account_t.c.status.in_(LIVE_STATUSES),
            )
        )
        or 0
    )


def _lock_sub_accounts(accounts: ColumnElement[bool], share: bool = False) -> Select[Any]:
    return (
        select(*SUB_ACCOUNT_COLUMNS)
        .where(accounts, sub_account_t.c.agency_id == bindparam("agency_id"))
        .order_by(sub_account_t.c.id)
        .with_for_update(read=share, key_share=not share)
    )


# Every transfer and most changes to a client run one: compiled once (persistence/prepared.py).
_LOCK_SUB_ACCOUNTS = Prepared(
    _lock_sub_accounts(any_of(sub_account_t.c.id, "ids")),
    fallback=_lock_sub_accounts(in_list(sub_account_t.c.id, "ids")),
)
_SHARE_SUB_ACCOUNTS = Prepared(
    _lock_sub_accounts(any_of(sub_account_t.c.id, "ids"), share=True),
    fallback=_lock_sub_accounts(in_list(sub_account_t.c.id, "ids"), share=True),
)


async def sub_accounts_for_update(
    conn: AsyncConnection, agency_id: uuid.UUID, ids: list[uuid.UUID], share: bool = False
) -> dict[uuid.UUID, SubAccount]:
    """Sub-accounts of this agency by id (others look absent), row-locked in id order.

    FOR NO KEY UPDATE: ingestion's foreign-key checks (KEY SHARE) on these rows go on while
    they are held, so a transfer and a batch of calls never wait on each other here.
    With `share`, FOR SHARE: for a change that only needs the accounts to stay as they are
    (a transfer: their status and markups) and changes nothing in their rows. Such changes
    then run side by side, and wait for (or hold off) anything that changes the rows.
    (SQLite, one writer at a time, compiles no lock clause at all.)
    """
    statement = _SHARE_SUB_ACCOUNTS if share else _LOCK_SUB_ACCOUNTS
    rows = await prepared.fetch(conn, statement, {"ids": ids, "agency_id": agency_id})
    return {row.id: sub_account_from(row) for row in rows}


async def save_sub_account(conn: AsyncConnection, sub_account: SubAccount) -> None:
    """Write a sub-account's state as its entity has it (what a transition returned)."""
    await conn.execute(
        update(sub_account_t)
        .where(sub_account_t.c.id == sub_account.id)
        .values(
            name=sub_account.name,
            login_email=sub_account.login_email,
            status=sub_account.status.value,
            balance_source=sub_account.balance_source.value,
            knowledge_pack_credits=sub_account.knowledge_pack_credits,
            markup_basic_bp=sub_account.markup_basic_bp,
            markup_premium_bp=sub_account.markup_premium_bp,
            suspended_at=sub_account.suspended_at,
            suspension_note=sub_account.suspension_note,
            removed_at=sub_account.removed_at,
            capped_at=sub_account.capped_at,
        )
    )


async def save_auto_allocation(
    conn: AsyncConnection, sub_account_id: uuid.UUID, allocation: AutoAllocation, now: datetime
) -> None:
    values = {
        "enabled": allocation.enabled,
        "basic_minutes": allocation.basic_minutes,
        "premium_minutes": allocation.premium_minutes,
        "enabled_on": allocation.enabled_on,
        "updated_at": now,
    }
    upsert = dialect_insert(conn, auto_allocation_t).values(sub_account_id=sub_account_id, **values)
    await conn.execute(upsert.on_conflict_do_update(index_elements=["sub_account_id"], set_=values))


async def stop_auto_allocation(
    conn: AsyncConnection, sub_account_id: uuid.UUID, now: datetime
) -> None:
    await conn.execute(
        update(auto_allocation_t)
        .where(auto_allocation_t.c.sub_account_id == sub_account_id)
        .values(enabled=False, enabled_on=None, updated_at=now)
    )


async def update_sub_account(
    conn: AsyncConnection, sub_account_id: uuid.UUID, **values: Any
) -> None:
    await conn.execute(
        update(sub_account_t).where(sub_account_t.c.id == sub_account_id).values(**values)
    )
