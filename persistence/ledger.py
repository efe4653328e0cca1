"""Balances and the append-only ledger, always changed together in one transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.errors import DomainError, ErrorCode
from domain.ledger import Movement
from domain.money import Tier
from persistence import prepared
from persistence.arrays import insert_unnested_sql, unnested
from persistence.prepared import Prepared, any_of, in_list
from persistence.tables import BalanceRow, LedgerEntryRow

balance_t = BalanceRow.__table__
ledger_t = LedgerEntryRow.__table__


async def open_balances(conn: AsyncConnection, sub_account_id: UUID) -> None:
    """Every sub-account has a zero balance row per tier from birth, ready to lock."""
    await conn.execute(
        insert(balance_t),
        [{"sub_account_id": sub_account_id, "tier": tier.value, "seconds": 0} for tier in Tier],
    )


def _lock_balances(accounts: ColumnElement[bool]) -> Select[Any]:
    return (
        select(balance_t.c.sub_account_id, balance_t.c.tier, balance_t.c.seconds)
        .where(accounts)
        .order_by(balance_t.c.sub_account_id, balance_t.c.tier)
        .with_for_update(key_share=True)
    )


# Built once (ingestion and transfers run it on every request; building it cost more than
# running). On PostgreSQL the accounts go as one array (persistence/prepared.py).
_LOCK_BALANCES = Prepared(
    _lock_balances(any_of(balance_t.c.sub_account_id, "ids")),
    fallback=_lock_balances(in_list(balance_t.c.sub_account_id, "ids")),
)


async def balances_for_update(
    conn: AsyncConnection, sub_account_ids: Iterable[UUID]
) -> dict[tuple[UUID, Tier], int]:
    """Every tier's balance of these accounts, locked in (sub-account, tier) order: the one
    order every money path takes balance rows in (docs/ARCHITECTURE.md, "Locks")."""
    ids = sorted(set(sub_account_ids))
    if not ids:
        return {}
    rows = await prepared.fetch(conn, _LOCK_BALANCES, {"ids": ids})
    return {(r.sub_account_id, Tier(r.tier)): int(r.seconds) for r in rows}


# Built once (every transfer runs them; building and hashing them cost more than running).
_CREDIT_STATEMENT = (
    update(balance_t)
    .where(
        balance_t.c.sub_account_id == bindparam("m_sub_account_id"),
        balance_t.c.tier == bindparam("m_tier"),
    )
    .values(seconds=balance_t.c.seconds + bindparam("m_delta", type_=BigInteger))
)
_CREDIT = Prepared(_CREDIT_STATEMENT)
_DEBIT = Prepared(
    _CREDIT_STATEMENT.where(balance_t.c.seconds + bindparam("m_delta", type_=BigInteger) >= 0)
)
_ENTRY_COLUMNS = (
    ledger_t.c.agency_id,
    ledger_t.c.sub_account_id,
    ledger_t.c.tier,
    ledger_t.c.delta_seconds,
    ledger_t.c.kind,
    ledger_t.c.reference,
)
_ADD_ENTRIES = insert(ledger_t)


def _chained_sql(count: int) -> str:
    """`count` balance changes and their ledger rows in one statement (PostgreSQL).

    First every tier's balance of the accounts moved (`:accounts`) is locked, in (sub-account,
    tier) order: what the transaction reads of them afterwards (the figures its events carry)
    stays as it is until the commit. Then change k runs only once change k - 1 has run and
    moved its row: its WHERE holds an uncorrelated `(SELECT count(*) FROM move_{k-1})`, which
    PostgreSQL evaluates (running that change) before it scans for its own row. So rows are
    locked in the order given (the one order every money path keeps, docs/ARCHITECTURE.md
    "Locks"), and nothing after a refused debit runs; the ledger rows are written only when
    every change went through. A debit (a negative delta) only moves a balance that stays at
    zero or above. The answer is the number of balances moved: `count` when all went through."""
    table = balance_t.name
    moves = [
        f"locked AS MATERIALIZED (SELECT 1 FROM {table}"
        f" WHERE {table}.sub_account_id = ANY(CAST(:accounts AS UUID[]))"
        f" ORDER BY {table}.sub_account_id, {table}.tier FOR NO KEY UPDATE)"
    ]
    for k in range(count):
        delta = f"CAST(:m{k}_delta AS BIGINT)"
        after = f"move_{k - 1}" if k else "locked"
        moves.append(
            f"move_{k} AS (UPDATE {table} SET seconds = {table}.seconds + {delta}"
            f" WHERE {table}.sub_account_id = CAST(:m{k}_sub_account_id AS UUID)"
            f" AND {table}.tier = CAST(:m{k}_tier AS VARCHAR)"
            f" AND ({delta} >= 0 OR {table}.seconds + {delta} >= 0)"
            f" AND (SELECT count(*) FROM {after}) {'= 1' if k else '>= 0'} RETURNING 1)"
        )
    entries = insert_unnested_sql(
        ledger_t,
        _ENTRY_COLUMNS,
        constants=(ledger_t.c.created_at,),
        tail=f"WHERE (SELECT count(*) FROM move_{count - 1}) = 1",
    )
    moved = " + ".join(f"(SELECT count(*) FROM move_{k})" for k in range(count))
    return f"WITH {', '.join(moves)}, entries AS ({entries}) SELECT {moved}"


# Built for each number of movements when first needed (one or two for nearly every caller,
# at most four: a removal or merge moving both tiers); more go one statement each.
_CHAINED: dict[int, Prepared] = {}
_CHAIN_LIMIT = 8


def _chained(count: int) -> Prepared:
    if (statement := _CHAINED.get(count)) is None:
        statement = _CHAINED[count] = Prepared(text(_chained_sql(count)))
    return statement


def _entry_arrays(
    movements: Sequence[Movement], now: datetime, prefix: str = ""
) -> dict[str, object]:
    """The movements' ledger rows as one array per column (`unnest` inserts), named after the
    columns (after `prefix`), and the time they were written."""
    return {
        f"{prefix}agency_id": [m.agency_id for m in movements],
        f"{prefix}sub_account_id": [m.sub_account_id for m in movements],
        f"{prefix}tier": [m.tier.value for m in movements],
        f"{prefix}delta_seconds": [m.delta_seconds for m in movements],
        f"{prefix}kind": [m.kind.value for m in movements],
        f"{prefix}reference": [m.reference for m in movements],
        f"{prefix}created_at": now,
    }


def check_moved(moved: int, expected: int) -> None:
    """Each statement that moves balances says how many it moved; fewer than asked means a
    debit would have taken one below zero, and the caller's transaction must roll back."""
    if moved != expected:
        raise DomainError(ErrorCode.INSUFFICIENT_MINUTES, "Not enough minutes left.")


async def apply(conn: AsyncConnection, movements: Sequence[Movement], now: datetime) -> None:
    """Apply movements; a debit that would take a balance below zero refuses the whole lot.

    Rows are updated in (sub-account, tier) order so concurrent movements over the same
    accounts always lock in the same order and cannot deadlock. On PostgreSQL the changes and
    the ledger rows are one statement (`_chained_sql`) when no balance moves twice, and it
    locks every tier's balance of the accounts moved until the commit.
    """
    ordered = sorted(movements, key=lambda m: (m.sub_account_id, m.tier.value))
    keys = {(m.sub_account_id, m.tier) for m in ordered}
    chained = 0 < len(ordered) <= _CHAIN_LIMIT and len(keys) == len(ordered)
    if conn.dialect.name == "postgresql" and chained:
        params = _entry_arrays(movements, now)
        params["accounts"] = sorted({m.sub_account_id for m in ordered})
        for k, m in enumerate(ordered):
            params[f"m{k}_sub_account_id"] = m.sub_account_id
            params[f"m{k}_tier"] = m.tier.value
            params[f"m{k}_delta"] = m.delta_seconds
        check_moved(await prepared.fetch_value(conn, _chained(len(ordered)), params), len(ordered))
        return
    for m in ordered:
        moved = await prepared.execute(
            conn,
            _DEBIT if m.delta_seconds < 0 else _CREDIT,
            {
                "m_sub_account_id": m.sub_account_id,
                "m_tier": m.tier.value,
                "m_delta": m.delta_seconds,
            },
        )
        check_moved(moved, 1)
    if not movements:
        return
    await conn.execute(
        _ADD_ENTRIES,
        [
            {
                "agency_id": m.agency_id,
                "sub_account_id": m.sub_account_id,
                "tier": m.tier.value,
                "delta_seconds": m.delta_seconds,
                "kind": m.kind.value,
                "reference": m.reference,
                "created_at": now,
            }
            for m in movements
        ],
    )


# A whole batch of movements in one statement (PostgreSQL): for ingestion, which debits up to
# a thousand balances per transaction and has already locked them in order
# (balances_for_update). The balances change by their net movement (arrays named after the
# columns), and each movement becomes its ledger row (arrays named `entry_…`); the count of
# balances moved tells whether any would have gone below zero (the caller then rolls the
# transaction back, ledger rows with it). One round trip where there were two.
_MOVED = (ledger_t.c.sub_account_id, ledger_t.c.tier, ledger_t.c.delta_seconds)


def apply_locked_ctes_pg(prefix: str = "") -> str:
    """`moved` (one row per balance changed) and `entries` (the ledger rows), as CTEs another
    statement can start with; parameters named after the columns, after `prefix` (the ledger
    rows' after `{prefix}entry_`)."""
    return (
        "moved AS ("
        f" UPDATE {balance_t.name} SET seconds = {balance_t.name}.seconds + m.delta_seconds"
        f" FROM {unnested(_MOVED, alias='m', prefix=prefix)}"
        f" WHERE {balance_t.name}.sub_account_id = m.sub_account_id"
        f" AND {balance_t.name}.tier = m.tier AND {balance_t.name}.seconds + m.delta_seconds >= 0"
        " RETURNING 1),"
        " entries AS ("
        + insert_unnested_sql(
            ledger_t,
            (ledger_t.c.agency_id, *_MOVED, ledger_t.c.kind, ledger_t.c.reference),
            constants=(ledger_t.c.created_at,),
            prefix=f"{prefix}entry_",
        )
        + ")"
    )


_APPLY_MANY_PG = Prepared(text(f"WITH {apply_locked_ctes_pg()} SELECT count(*) FROM moved"))


def apply_locked_params(
    movements: Sequence[Movement], now: datetime, prefix: str = ""
) -> tuple[dict[str, object], int]:
    """`apply_locked_ctes_pg(prefix)`'s parameters, and how many rows `moved` must hold (the
    balances changed; fewer means one would have gone below zero)."""
    net: dict[tuple[UUID, Tier], int] = defaultdict(int)
    for m in movements:
        net[m.sub_account_id, m.tier] += m.delta_seconds
    params = {
        f"{prefix}sub_account_id": [account_id for account_id, _ in net],
        f"{prefix}tier": [tier.value for _, tier in net],
        f"{prefix}delta_seconds": list(net.values()),
        **_entry_arrays(movements, now, prefix=f"{prefix}entry_"),
    }
    return params, len(net)


async def apply_locked(conn: AsyncConnection, movements: Sequence[Movement], now: datetime) -> None:
    """`apply` for a caller that already holds the balance rows' locks, taken in order.

    Each balance changes once, by the sum of its movements, and not below zero (else
    INSUFFICIENT_MINUTES, and the caller's transaction must roll back: the ledger rows are
    written in the same statement); each movement is its own ledger entry, in the order given.
    One statement on PostgreSQL. For debits (ingestion), as here, the sum's check is each
    movement's check.
    """
    if conn.dialect.name != "postgresql":
        await apply(conn, movements, now)
        return
    params, expected = apply_locked_params(movements, now)
    check_moved(await prepared.fetch_value(conn, _APPLY_MANY_PG, params), expected)


async def mismatches(conn: AsyncConnection) -> list[tuple[UUID, str, int, int]]:
    """(sub-account, tier, balance, ledger sum) wherever the two disagree; empty when sound."""
    sums = (
        select(
            ledger_t.c.sub_account_id,
            ledger_t.c.tier,
            func.sum(ledger_t.c.delta_seconds).label("total"),
        )
        .group_by(ledger_t.c.sub_account_id, ledger_t.c.tier)
        .subquery()
    )
    rows = await conn.execute(
        select(
            balance_t.c.sub_account_id,
            balance_t.c.tier,
            balance_t.c.seconds,
            func.coalesce(sums.c.total, 0),
        )
        .select_from(
            balance_t.outerjoin(
                sums,
                (sums.c.sub_account_id == balance_t.c.sub_account_id)
                & (sums.c.tier == balance_t.c.tier),
            )
        )
        .where(balance_t.c.seconds != func.coalesce(sums.c.total, 0))
    )
    return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows]


async def purchase_credits(conn: AsyncConnection, references: Sequence[str]) -> dict[str, int]:
    """Seconds credited under each purchase's reference (absent: none)."""
    if not references:
        return {}
    rows = await conn.execute(
        select(ledger_t.c.reference, func.sum(ledger_t.c.delta_seconds))
        .where(
            ledger_t.c.kind.in_(("PURCHASE", "AUTO_ALLOCATION")),
            ledger_t.c.reference.in_(references),
        )
        .group_by(ledger_t.c.reference)
    )
    return {reference: int(total) for reference, total in rows}
