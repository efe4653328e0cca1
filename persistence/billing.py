"""Billing adjustments: the discounts and credits of the billing summary, written once."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.billing import AdjustmentKind, BillingAdjustment
from persistence.tables import BillingAdjustmentRow

adjustment_t = BillingAdjustmentRow.__table__


def adjustment_from(row: Any) -> BillingAdjustment:
    return BillingAdjustment(
        row.id,
        row.agency_id,
        row.sub_account_id,
        AdjustmentKind(row.kind),
        row.amount_micros,
        row.note,
        row.dated_on,
        row.created_at,
    )


async def add_adjustment(conn: AsyncConnection, adjustment: BillingAdjustment) -> None:
    await conn.execute(
        insert(adjustment_t).values(
            id=adjustment.id,
            agency_id=adjustment.agency_id,
            sub_account_id=adjustment.sub_account_id,
            kind=adjustment.kind.value,
            amount_micros=adjustment.amount_micros,
            note=adjustment.note,
            dated_on=adjustment.date,
            created_at=adjustment.created_at,
        )
    )


async def adjustment_by_id(conn: AsyncConnection, key: uuid.UUID) -> BillingAdjustment | None:
    row = (await conn.execute(select(adjustment_t).where(adjustment_t.c.id == key))).first()
    return None if row is None else adjustment_from(row)
