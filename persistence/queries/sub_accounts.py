"""The Account Manager's list: an agency's sub-accounts page by page, and their settings."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.agency import SubAccount, SubAccountStatus
from domain.auto_allocation import OFF, AutoAllocation
from domain.paging import Page
from persistence.queries.paging import keyset_page
from persistence.records import LIVE_STATUSES, SUB_ACCOUNT_COLUMNS, sub_account_from, sub_account_t
from persistence.tables import AutoAllocationRow

auto_allocation_t = AutoAllocationRow.__table__


def _filtered(
    agency_id: uuid.UUID, status: SubAccountStatus | None, visible: frozenset[uuid.UUID] | None
) -> Any:
    query = select(*SUB_ACCOUNT_COLUMNS, sub_account_t.c.created_at).where(
        sub_account_t.c.agency_id == agency_id
    )
    if status is None:
        query = query.where(sub_account_t.c.status.in_(LIVE_STATUSES))
    else:
        query = query.where(sub_account_t.c.status == status.value)
    if visible is not None:
        query = query.where(sub_account_t.c.id.in_(visible))
    return query


async def sub_accounts_page(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    status: SubAccountStatus | None,
    visible: frozenset[uuid.UUID] | None,
    first: int,
    after: str | None,
) -> Page[SubAccount]:
    """`visible` None means every sub-account; the primary comes first (oldest)."""

    async def build(rows: Sequence[Any]) -> list[SubAccount]:
        return [sub_account_from(r) for r in rows]

    query = _filtered(agency_id, status, visible)
    return await keyset_page(
        conn, query, sub_account_t.c.created_at, sub_account_t.c.id, first, after, build
    )


async def count_sub_accounts(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    status: SubAccountStatus | None,
    visible: frozenset[uuid.UUID] | None,
) -> int:
    query = _filtered(agency_id, status, visible).subquery()
    return int(await conn.scalar(select(func.count()).select_from(query)) or 0)


async def auto_allocations(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> list[AutoAllocation]:
    rows = await conn.execute(
        select(
            auto_allocation_t.c.sub_account_id,
            auto_allocation_t.c.enabled,
            auto_allocation_t.c.basic_minutes,
            auto_allocation_t.c.premium_minutes,
            auto_allocation_t.c.enabled_on,
        ).where(auto_allocation_t.c.sub_account_id.in_(ids))
    )
    found = {
        r.sub_account_id: AutoAllocation(
            r.enabled, r.basic_minutes, r.premium_minutes, r.enabled_on
        )
        for r in rows
    }
    return [found.get(i, OFF) for i in ids]
