"""Batch loads behind the per-request DataLoaders: one statement per batch of keys."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.agency import Agency, SubAccount, User
from domain.ledger import Balance
from domain.money import Tier
from persistence import prepared
from persistence.ledger import balance_t
from persistence.prepared import Prepared, any_of, in_list
from persistence.records import (
    AGENCY_COLUMNS,
    SUB_ACCOUNT_COLUMNS,
    USER_COLUMNS,
    agency_from,
    agency_t,
    sub_account_from,
    sub_account_t,
    user_from,
    user_t,
)


async def agencies_by_id(conn: AsyncConnection, ids: Sequence[UUID]) -> list[Agency | None]:
    rows = await conn.execute(select(*AGENCY_COLUMNS).where(agency_t.c.id.in_(ids)))
    found = {row.id: agency_from(row) for row in rows}
    return [found.get(i) for i in ids]


async def sub_accounts_by_id(conn: AsyncConnection, ids: Sequence[UUID]) -> list[SubAccount | None]:
    rows = await conn.execute(select(*SUB_ACCOUNT_COLUMNS).where(sub_account_t.c.id.in_(ids)))
    found = {row.id: sub_account_from(row) for row in rows}
    return [found.get(i) for i in ids]


async def primary_sub_accounts_by_agency(
    conn: AsyncConnection, agency_ids: Sequence[UUID]
) -> list[SubAccount | None]:
    rows = await conn.execute(
        select(*SUB_ACCOUNT_COLUMNS).where(
            sub_account_t.c.agency_id.in_(agency_ids), sub_account_t.c.kind == "PRIMARY"
        )
    )
    found = {row.agency_id: sub_account_from(row) for row in rows}
    return [found.get(i) for i in agency_ids]


async def users_by_id(conn: AsyncConnection, ids: Sequence[UUID]) -> list[User | None]:
    rows = await conn.execute(select(*USER_COLUMNS).where(user_t.c.id.in_(ids)))
    found = {row.id: user_from(row) for row in rows}
    return [found.get(i) for i in ids]


_BALANCES = select(balance_t.c.sub_account_id, balance_t.c.tier, balance_t.c.seconds)
# Every request that shows or moves minutes reads balances: one statement, compiled once.
_BALANCES_OF = Prepared(
    _BALANCES.where(any_of(balance_t.c.sub_account_id, "ids")),
    fallback=_BALANCES.where(in_list(balance_t.c.sub_account_id, "ids")),
)


async def balances_by_sub_account(
    conn: AsyncConnection, ids: Sequence[UUID]
) -> list[list[Balance]]:
    return balances_from(await prepared.fetch(conn, _BALANCES_OF, {"ids": list(ids)}), ids)


def balances_from(rows: Iterable[Any], ids: Sequence[UUID]) -> list[list[Balance]]:
    """Every tier's balance of each of `ids` (0 where no row) from rows of `sub_account_id`,
    `tier` and `seconds` (a row without a tier, from an outer join, holds none)."""
    found: dict[UUID, dict[Tier, int]] = {}
    for row in rows:
        if row.tier is not None:
            found.setdefault(row.sub_account_id, {})[Tier(row.tier)] = int(row.seconds)
    return [[Balance(tier, found.get(i, {}).get(tier, 0)) for tier in Tier] for i in ids]
