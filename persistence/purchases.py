"""Purchases of minutes and the Stripe events applied to them.

A purchase leaves PENDING once: `settle_succeeded` / `settle_failed` are guarded updates
(`… WHERE status = 'PENDING'`) that tell whether this caller moved it; only that caller
writes the ledger credit. Stripe's answer, its webhook and the reconciliation job all go
through them, so whichever comes first wins and the others change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.money import Tier
from domain.paging import Page
from domain.payments import PaymentStatus, Purchase, PurchaseKind
from persistence.queries.paging import keyset_page
from persistence.tables import PurchaseRow, StripeEventRow

purchase_t = PurchaseRow.__table__
event_t = StripeEventRow.__table__


def purchase_from(row: Any) -> Purchase:
    return Purchase(
        id=row.id,
        agency_id=row.agency_id,
        sub_account_id=row.sub_account_id,
        payer_id=row.payer_id,
        kind=PurchaseKind(row.kind),
        tier=Tier(row.tier),
        seconds=row.seconds,
        amount_micros=row.amount_micros,
        profit_micros=row.profit_micros,
        status=PaymentStatus(row.status),
        attempts=row.attempts,
        created_at=row.created_at,
        stripe_customer_id=row.stripe_customer_id,
        stripe_payment_method_id=row.stripe_payment_method_id,
        stripe_payment_intent_id=row.stripe_payment_intent_id,
        failure_reason=row.failure_reason,
        completed_at=row.completed_at,
        next_attempt_at=row.next_attempt_at,
        period_start=row.period_start,
        created_by=row.created_by,
    )


def _values(purchase: Purchase) -> dict[str, Any]:
    return {
        "id": purchase.id,
        "agency_id": purchase.agency_id,
        "sub_account_id": purchase.sub_account_id,
        "payer_id": purchase.payer_id,
        "kind": purchase.kind.value,
        "tier": purchase.tier.value,
        "seconds": purchase.seconds,
        "amount_micros": purchase.amount_micros,
        "profit_micros": purchase.profit_micros,
        "status": purchase.status.value,
        "attempts": purchase.attempts,
        "failure_reason": purchase.failure_reason,
        "stripe_customer_id": purchase.stripe_customer_id,
        "stripe_payment_method_id": purchase.stripe_payment_method_id,
        "stripe_payment_intent_id": purchase.stripe_payment_intent_id,
        "period_start": purchase.period_start,
        "next_attempt_at": purchase.next_attempt_at,
        "created_by": purchase.created_by,
        "created_at": purchase.created_at,
        "completed_at": purchase.completed_at,
    }


async def add_purchase(conn: AsyncConnection, purchase: Purchase) -> None:
    await conn.execute(insert(purchase_t).values(_values(purchase)))


async def purchase_by_id(conn: AsyncConnection, purchase_id: uuid.UUID) -> Purchase | None:
    row = (await conn.execute(select(purchase_t).where(purchase_t.c.id == purchase_id))).first()
    return None if row is None else purchase_from(row)


async def purchases_by_id(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> list[Purchase | None]:
    rows = await conn.execute(select(purchase_t).where(purchase_t.c.id.in_(ids)))
    found = {r.id: purchase_from(r) for r in rows}
    return [found.get(i) for i in ids]


async def purchase_for_intent(conn: AsyncConnection, intent_id: str) -> Purchase | None:
    row = (
        await conn.execute(
            select(purchase_t).where(purchase_t.c.stripe_payment_intent_id == intent_id)
        )
    ).first()
    return None if row is None else purchase_from(row)


async def settle_succeeded(
    conn: AsyncConnection, purchase_id: uuid.UUID, intent_id: str, now: datetime
) -> bool:
    """PENDING → SUCCEEDED; true only for the one caller that made the move."""
    result = await conn.execute(
        update(purchase_t)
        .where(purchase_t.c.id == purchase_id, purchase_t.c.status == "PENDING")
        .values(
            status="SUCCEEDED",
            stripe_payment_intent_id=intent_id,
            failure_reason=None,
            next_attempt_at=None,
            completed_at=now,
        )
    )
    return bool(result.rowcount == 1)


async def settle_failed(
    conn: AsyncConnection,
    purchase_id: uuid.UUID,
    intent_id: str | None,
    reason: str,
    next_attempt_at: datetime | None,
    now: datetime,
) -> bool:
    """PENDING → FAILED; true only for the one caller that made the move."""
    result = await conn.execute(
        update(purchase_t)
        .where(purchase_t.c.id == purchase_id, purchase_t.c.status == "PENDING")
        .values(
            status="FAILED",
            stripe_payment_intent_id=func.coalesce(
                intent_id, purchase_t.c.stripe_payment_intent_id
            ),
            failure_reason=reason[:500],
            next_attempt_at=next_attempt_at,
            completed_at=now,
        )
    )
    return bool(result.rowcount == 1)


async def note_intent(conn: AsyncConnection, purchase_id: uuid.UUID, intent_id: str) -> None:
    """A PENDING purchase learns its PaymentIntent (Stripe has not decided yet)."""
    await conn.execute(
        update(purchase_t)
        .where(purchase_t.c.id == purchase_id, purchase_t.c.status == "PENDING")
        .values(stripe_payment_intent_id=intent_id)
    )


async def pending_since(conn: AsyncConnection, cutoff: datetime) -> list[Purchase]:
    """PENDING purchases made before `cutoff`, oldest first."""
    rows = await conn.execute(
        select(purchase_t)
        .where(purchase_t.c.status == "PENDING", purchase_t.c.created_at < cutoff)
        .order_by(purchase_t.c.created_at)
    )
    return [purchase_from(r) for r in rows]


async def record_event(
    conn: AsyncConnection, event_id: str, event_type: str, now: datetime
) -> None:
    """In the transaction applying the event: a replay fails here on the primary key."""
    await conn.execute(insert(event_t).values(id=event_id, type=event_type, received_at=now))


async def purchases_page(
    conn: AsyncConnection, sub_account_id: uuid.UUID, first: int, after: str | None
) -> tuple[Page[Purchase], int]:
    """A sub-account's purchases, oldest first, and how many there are."""

    async def build(rows: Sequence[Any]) -> list[Purchase]:
        return [purchase_from(r) for r in rows]

    query = select(purchase_t).where(purchase_t.c.sub_account_id == sub_account_id)
    page = await keyset_page(
        conn, query, purchase_t.c.created_at, purchase_t.c.id, first, after, build
    )
    total = await conn.scalar(
        select(func.count())
        .select_from(purchase_t)
        .where(purchase_t.c.sub_account_id == sub_account_id)
    )
    return page, int(total or 0)
