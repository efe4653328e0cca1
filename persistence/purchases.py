"""Purchases of minutes and the Stripe events applied to them.

A purchase leaves PENDING once: `settle_succeeded` / `settle_failed` are guarded updates
(`… WHERE status = 'PENDING'`) that tell whether this caller moved it; only that caller
writes the ledger credit. Stripe's answer, its webhook and the reconciliation job all go
through them, so whichever comes first wins and the others change nothing.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.auto_allocation import AutoAllocation, Due
from domain.money import Tier
from domain.paging import Page
from domain.payments import PaymentStatus, Purchase, PurchaseKind
from persistence.queries.paging import keyset_page
from persistence.records import agency_t, sub_account_t
from persistence.tables import AutoAllocationRow, PurchaseRow, StripeEventRow

purchase_t = PurchaseRow.__table__
event_t = StripeEventRow.__table__
auto_allocation_t = AutoAllocationRow.__table__
BATCH = 500


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


def _pending(purchase_id: uuid.UUID, attempt: int) -> Any:
    """The guard of every settling update: still PENDING, still on the attempt the caller
    read (a retry started since makes a late answer change nothing)."""
    return and_(
        purchase_t.c.id == purchase_id,
        purchase_t.c.status == "PENDING",
        purchase_t.c.attempts == attempt,
    )


async def settle_succeeded(
    conn: AsyncConnection, purchase_id: uuid.UUID, attempt: int, intent_id: str, now: datetime
) -> bool:
    """PENDING → SUCCEEDED; true only for the one caller that made the move."""
    result = await conn.execute(
        update(purchase_t)
        .where(_pending(purchase_id, attempt))
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
    attempt: int,
    intent_id: str | None,
    reason: str,
    next_attempt_at: datetime | None,
    now: datetime,
) -> bool:
    """PENDING → FAILED; true only for the one caller that made the move."""
    result = await conn.execute(
        update(purchase_t)
        .where(_pending(purchase_id, attempt))
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


async def note_intent(
    conn: AsyncConnection, purchase_id: uuid.UUID, attempt: int, intent_id: str
) -> None:
    """A PENDING purchase learns its PaymentIntent (Stripe has not decided yet)."""
    await conn.execute(
        update(purchase_t)
        .where(_pending(purchase_id, attempt))
        .values(stripe_payment_intent_id=intent_id)
    )


async def pending_since(conn: AsyncConnection, cutoff: datetime, now: datetime) -> list[Purchase]:
    """PENDING purchases made before `cutoff`, oldest first; a retried one only once its
    `next_attempt_at` has passed (the attempt under way is its job's, not reconciliation's)."""
    rows = await conn.execute(
        select(purchase_t)
        .where(
            purchase_t.c.status == "PENDING",
            purchase_t.c.created_at < cutoff,
            or_(purchase_t.c.next_attempt_at.is_(None), purchase_t.c.next_attempt_at <= now),
        )
        .order_by(purchase_t.c.created_at)
    )
    return [purchase_from(r) for r in rows]


# ---- monthly auto allocation charges ---------------------------------------------------------


async def auto_allocations_due(conn: AsyncConnection) -> list[Due]:
    """Every active secondary whose auto allocation is on, with the (period, tier) pairs it
    was already charged for since it was turned on."""
    primary = sub_account_t.alias("primary")
    rows = (
        await conn.execute(
            select(
                sub_account_t.c.agency_id,
                sub_account_t.c.id,
                primary.c.id.label("primary_id"),
                sub_account_t.c.subscription_start_date,
                agency_t.c.time_zone,
                auto_allocation_t.c.basic_minutes,
                auto_allocation_t.c.premium_minutes,
                auto_allocation_t.c.enabled_on,
            )
            .select_from(
                auto_allocation_t.join(
                    sub_account_t, sub_account_t.c.id == auto_allocation_t.c.sub_account_id
                )
                .join(agency_t, agency_t.c.id == sub_account_t.c.agency_id)
                .join(
                    primary,
                    and_(primary.c.agency_id == agency_t.c.id, primary.c.kind == "PRIMARY"),
                )
            )
            .where(
                auto_allocation_t.c.enabled.is_(True),
                auto_allocation_t.c.enabled_on.is_not(None),
                sub_account_t.c.status == "ACTIVE",
                sub_account_t.c.kind == "SECONDARY",
            )
        )
    ).all()
    charged: dict[uuid.UUID, set[tuple[date, Tier]]] = defaultdict(set)
    if rows:
        done = await conn.execute(
            select(purchase_t.c.sub_account_id, purchase_t.c.period_start, purchase_t.c.tier)
            .select_from(
                purchase_t.join(
                    auto_allocation_t,
                    auto_allocation_t.c.sub_account_id == purchase_t.c.sub_account_id,
                )
            )
            .where(
                auto_allocation_t.c.enabled.is_(True),
                purchase_t.c.period_start >= auto_allocation_t.c.enabled_on,
            )
        )
        for sub_account_id, period, tier in done:
            charged[sub_account_id].add((period, Tier(tier)))
    return [
        Due(
            agency_id=r.agency_id,
            sub_account_id=r.id,
            primary_id=r.primary_id,
            subscription_start=r.subscription_start_date,
            time_zone=r.time_zone,
            allocation=AutoAllocation(True, r.basic_minutes, r.premium_minutes, r.enabled_on),
            charged=frozenset(charged[r.id]),
        )
        for r in rows
    ]


async def retries_due(conn: AsyncConnection, now: datetime) -> list[Purchase]:
    """FAILED auto allocation charges whose next attempt is due, oldest first."""
    rows = await conn.execute(
        select(purchase_t)
        .where(
            purchase_t.c.next_attempt_at <= now,
            purchase_t.c.status == "FAILED",
            purchase_t.c.kind == "AUTO_ALLOCATION",
        )
        .order_by(purchase_t.c.next_attempt_at)
    )
    return [purchase_from(r) for r in rows]


async def start_retry(
    conn: AsyncConnection,
    purchase: Purchase,
    customer_id: str,
    payment_method_id: str | None,
    look_again_at: datetime,
) -> Purchase | None:
    """FAILED → PENDING for its next attempt, on the payer's card of now; None when another
    run started this attempt first (the guard: the attempt it saw, still FAILED)."""
    result = await conn.execute(
        update(purchase_t)
        .where(
            purchase_t.c.id == purchase.id,
            purchase_t.c.status == "FAILED",
            purchase_t.c.attempts == purchase.attempts,
        )
        .values(
            status="PENDING",
            attempts=purchase.attempts + 1,
            stripe_customer_id=customer_id,
            stripe_payment_method_id=payment_method_id,
            stripe_payment_intent_id=None,
            next_attempt_at=look_again_at,
            completed_at=None,
        )
        .returning(*purchase_t.c)
    )
    row = result.first()
    return None if row is None else purchase_from(row)


async def stop_retrying(conn: AsyncConnection, purchase_id: uuid.UUID) -> None:
    """A failed charge left FAILED for good."""
    await conn.execute(
        update(purchase_t)
        .where(purchase_t.c.id == purchase_id, purchase_t.c.status == "FAILED")
        .values(next_attempt_at=None)
    )


async def last_auto_allocation_charges(
    conn: AsyncConnection, sub_account_ids: Sequence[uuid.UUID]
) -> list[Purchase | None]:
    """Each sub-account's latest auto allocation charge: of its latest period charged, a
    failed one if any, else the latest made."""
    ranked = (
        select(
            purchase_t,
            func.row_number()
            .over(
                partition_by=purchase_t.c.sub_account_id,
                order_by=(
                    purchase_t.c.period_start.desc(),
                    # of one period's tiers, a failure first: it must stay visible
                    case((purchase_t.c.status == "FAILED", 0), else_=1),
                    purchase_t.c.created_at.desc(),
                    purchase_t.c.id.desc(),
                ),
            )
            .label("rank"),
        )
        .where(
            purchase_t.c.sub_account_id.in_(sub_account_ids),
            purchase_t.c.kind == "AUTO_ALLOCATION",
        )
        .subquery()
    )
    rows = await conn.execute(select(ranked).where(ranked.c.rank == 1))
    found = {r.sub_account_id: purchase_from(r) for r in rows}
    return [found.get(i) for i in sub_account_ids]


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


async def purchases_between(
    conn: AsyncConnection, start: datetime, end: datetime, after: tuple[datetime, uuid.UUID] | None
) -> list[Purchase]:
    """Purchases made in [start, end), oldest first, in batches after the (created_at, id) of
    the previous batch's last."""
    query = select(purchase_t).where(
        purchase_t.c.created_at >= start, purchase_t.c.created_at < end
    )
    if after is not None:
        query = query.where(tuple_(purchase_t.c.created_at, purchase_t.c.id) > tuple_(*after))
    query = query.order_by(purchase_t.c.created_at, purchase_t.c.id).limit(BATCH)
    return [purchase_from(r) for r in await conn.execute(query)]
