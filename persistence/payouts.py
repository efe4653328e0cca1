"""The agency's earnings (read from its purchases and payouts) and its payouts.

A payout is written PENDING in the transaction that read the earnings under the agency's row
lock (`agencies.agency_for_update`), and leaves PENDING once (`settle_paid`/`settle_failed`
are guarded updates), so concurrent runs and requests can never pay the same earnings twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.paging import Page
from domain.payouts import Earnings, Payout, PayoutStatus
from persistence.queries.paging import keyset_page
from persistence.records import agency_t
from persistence.tables import PayoutRow, PurchaseRow

payout_t = PayoutRow.__table__
BATCH = 500
purchase_t = PurchaseRow.__table__
# Purchases at the client price earn the agency its markup: a client's own, and its
# auto-recharges (auto allocations are at base cost).
EARNING_KINDS = ("CLIENT_PURCHASE", "AUTO_RECHARGE")


def _succeeded_profit(agency_id: uuid.UUID) -> Any:
    return (
        select(func.coalesce(func.sum(purchase_t.c.profit_micros), 0))
        .where(
            purchase_t.c.agency_id == agency_id,
            purchase_t.c.status == "SUCCEEDED",
            purchase_t.c.kind.in_(EARNING_KINDS),
        )
        .scalar_subquery()
    )


def _paid(agency_id: uuid.UUID, status: PayoutStatus) -> Any:
    return (
        select(func.coalesce(func.sum(payout_t.c.amount_micros), 0))
        .where(payout_t.c.agency_id == agency_id, payout_t.c.status == status.value)
        .scalar_subquery()
    )


async def earnings(conn: AsyncConnection, agency_id: uuid.UUID) -> Earnings:
    row = (
        await conn.execute(
            select(
                _succeeded_profit(agency_id).label("total"),
                _paid(agency_id, PayoutStatus.PENDING).label("pending"),
                _paid(agency_id, PayoutStatus.PAID).label("paid"),
                agency_t.c.payout_threshold_micros,
                agency_t.c.stripe_connect_account_id,
            ).where(agency_t.c.id == agency_id)
        )
    ).one()
    return Earnings(
        int(row.total),
        int(row.pending),
        int(row.paid),
        int(row.payout_threshold_micros),
        row.stripe_connect_account_id,
    )


async def profit_between(
    conn: AsyncConnection, agency_id: uuid.UUID, start: datetime, end: datetime
) -> int:
    """Profit of the client purchases that succeeded in [start, end)."""
    total = await conn.scalar(
        select(func.coalesce(func.sum(purchase_t.c.profit_micros), 0)).where(
            purchase_t.c.agency_id == agency_id,
            purchase_t.c.status == "SUCCEEDED",
            purchase_t.c.kind.in_(EARNING_KINDS),
            purchase_t.c.completed_at >= start,
            purchase_t.c.completed_at < end,
        )
    )
    return int(total or 0)


async def save_settings(conn: AsyncConnection, agency_id: uuid.UUID, **values: Any) -> None:
    """`stripe_connect_account_id` and/or `payout_threshold_micros`."""
    await conn.execute(update(agency_t).where(agency_t.c.id == agency_id).values(**values))


async def agencies_with_connected_accounts(conn: AsyncConnection) -> list[uuid.UUID]:
    rows = await conn.scalars(
        select(agency_t.c.id).where(agency_t.c.stripe_connect_account_id.is_not(None))
    )
    return list(rows.all())


def payout_from(row: Any) -> Payout:
    return Payout(
        id=row.id,
        agency_id=row.agency_id,
        amount_micros=row.amount_micros,
        status=PayoutStatus(row.status),
        destination=row.destination,
        created_at=row.created_at,
        stripe_transfer_id=row.stripe_transfer_id,
        failure_reason=row.failure_reason,
        paid_at=row.paid_at,
        requested_by=row.requested_by,
    )


async def add_payout(conn: AsyncConnection, payout: Payout) -> None:
    await conn.execute(
        insert(payout_t).values(
            id=payout.id,
            agency_id=payout.agency_id,
            amount_micros=payout.amount_micros,
            status=payout.status.value,
            destination=payout.destination,
            requested_by=payout.requested_by,
            created_at=payout.created_at,
        )
    )


async def payout_by_id(conn: AsyncConnection, payout_id: uuid.UUID) -> Payout | None:
    row = (await conn.execute(select(payout_t).where(payout_t.c.id == payout_id))).first()
    return None if row is None else payout_from(row)


async def settle_paid(
    conn: AsyncConnection, payout_id: uuid.UUID, transfer_id: str, now: datetime
) -> bool:
    result = await conn.execute(
        update(payout_t)
        .where(payout_t.c.id == payout_id, payout_t.c.status == "PENDING")
        .values(status="PAID", stripe_transfer_id=transfer_id, paid_at=now)
    )
    return bool(result.rowcount == 1)


async def settle_failed(conn: AsyncConnection, payout_id: uuid.UUID, reason: str) -> bool:
    """FAILED: its amount counts as unpaid again."""
    result = await conn.execute(
        update(payout_t)
        .where(payout_t.c.id == payout_id, payout_t.c.status == "PENDING")
        .values(status="FAILED", failure_reason=reason[:500])
    )
    return bool(result.rowcount == 1)


async def pending_since(conn: AsyncConnection, cutoff: datetime) -> list[Payout]:
    rows = await conn.execute(
        select(payout_t)
        .where(payout_t.c.status == "PENDING", payout_t.c.created_at < cutoff)
        .order_by(payout_t.c.created_at)
    )
    return [payout_from(r) for r in rows]


async def payouts_page(
    conn: AsyncConnection, agency_id: uuid.UUID, first: int, after: str | None
) -> tuple[Page[Payout], int]:
    async def build(rows: Sequence[Any]) -> list[Payout]:
        return [payout_from(r) for r in rows]

    query = select(payout_t).where(payout_t.c.agency_id == agency_id)
    page = await keyset_page(conn, query, payout_t.c.created_at, payout_t.c.id, first, after, build)
    total = await conn.scalar(
        select(func.count()).select_from(payout_t).where(payout_t.c.agency_id == agency_id)
    )
    return page, int(total or 0)


async def payouts_between(
    conn: AsyncConnection, start: datetime, end: datetime, after: tuple[datetime, uuid.UUID] | None
) -> list[Payout]:
    """Payouts written in [start, end), oldest first, in batches (as `purchases_between`)."""
    query = select(payout_t).where(payout_t.c.created_at >= start, payout_t.c.created_at < end)
    if after is not None:
        query = query.where(tuple_(payout_t.c.created_at, payout_t.c.id) > tuple_(*after))
    query = query.order_by(payout_t.c.created_at, payout_t.c.id).limit(BATCH)
    return [payout_from(r) for r in await conn.execute(query)]
