"""Payers' Stripe Customers and their saved cards (our own list of their PaymentMethods)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.payments import PaymentCard
from persistence.records import sub_account_t
from persistence.tables import PaymentCardRow

card_t = PaymentCardRow.__table__


async def customer_id(conn: AsyncConnection, payer_id: uuid.UUID) -> str | None:
    found: str | None = await conn.scalar(
        select(sub_account_t.c.stripe_customer_id).where(sub_account_t.c.id == payer_id)
    )
    return found


async def keep_customer_id(conn: AsyncConnection, payer_id: uuid.UUID, stripe_id: str) -> str:
    """The payer's Customer: `stripe_id`, unless another request saved one first (then that)."""
    await conn.execute(
        update(sub_account_t)
        .where(sub_account_t.c.id == payer_id, sub_account_t.c.stripe_customer_id.is_(None))
        .values(stripe_customer_id=stripe_id)
    )
    kept = await customer_id(conn, payer_id)
    assert kept is not None
    return kept


def _card(row: Any) -> PaymentCard:
    return PaymentCard(
        id=row.id,
        agency_id=row.agency_id,
        payer_id=row.payer_id,
        stripe_payment_method_id=row.stripe_payment_method_id,
        brand=row.brand,
        last4=row.last4,
        exp_month=row.exp_month,
        exp_year=row.exp_year,
        is_default=row.is_default,
        created_at=row.created_at,
    )


async def cards_of(conn: AsyncConnection, payer_id: uuid.UUID) -> list[PaymentCard]:
    """The payer's cards, the default first, then the newest."""
    rows = await conn.execute(
        select(card_t)
        .where(card_t.c.payer_id == payer_id)
        .order_by(card_t.c.is_default.desc(), card_t.c.created_at.desc(), card_t.c.id)
    )
    return [_card(r) for r in rows]


async def cards_of_payers(
    conn: AsyncConnection, payer_ids: list[uuid.UUID]
) -> list[list[PaymentCard]]:
    """A DataLoader batch: each payer's cards, as `cards_of` orders them."""
    rows = await conn.execute(
        select(card_t)
        .where(card_t.c.payer_id.in_(payer_ids))
        .order_by(card_t.c.is_default.desc(), card_t.c.created_at.desc(), card_t.c.id)
    )
    found: dict[uuid.UUID, list[PaymentCard]] = {}
    for row in rows:
        found.setdefault(row.payer_id, []).append(_card(row))
    return [found.get(payer_id, []) for payer_id in payer_ids]


async def card_by_id(conn: AsyncConnection, card_id: uuid.UUID) -> PaymentCard | None:
    row = (await conn.execute(select(card_t).where(card_t.c.id == card_id))).first()
    return None if row is None else _card(row)


async def add_card(conn: AsyncConnection, card: PaymentCard) -> None:
    if card.is_default:
        await _clear_default(conn, card.payer_id)
    await conn.execute(
        insert(card_t).values(
            id=card.id,
            agency_id=card.agency_id,
            payer_id=card.payer_id,
            stripe_payment_method_id=card.stripe_payment_method_id,
            brand=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            is_default=card.is_default,
            created_at=card.created_at,
        )
    )


async def _clear_default(conn: AsyncConnection, payer_id: uuid.UUID) -> None:
    await conn.execute(update(card_t).where(card_t.c.payer_id == payer_id).values(is_default=False))


async def make_default(conn: AsyncConnection, card: PaymentCard) -> None:
    await _clear_default(conn, card.payer_id)
    await conn.execute(update(card_t).where(card_t.c.id == card.id).values(is_default=True))


async def remove_card(conn: AsyncConnection, card: PaymentCard) -> PaymentCard | None:
    """Deletes the card; a removed default hands over to the newest other card (returned)."""
    await conn.execute(delete(card_t).where(card_t.c.id == card.id))
    if not card.is_default:
        return None
    rest = await cards_of(conn, card.payer_id)
    if not rest:
        return None
    await make_default(conn, rest[0])
    return rest[0]
