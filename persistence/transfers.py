"""Minute transfers: the record of each one, beside the ledger entries it wrote."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import bindparam, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.transfer import TransferPlan
from persistence import prepared
from persistence.prepared import Prepared
from persistence.tables import MinuteTransferRow

transfer_t = MinuteTransferRow.__table__
# Built and compiled once: every transfer runs it (persistence/prepared.py).
_ADD = Prepared(insert(transfer_t).values({c: bindparam(c.name) for c in transfer_t.columns}))


async def add_transfer(
    conn: AsyncConnection,
    transfer_id: UUID,
    agency_id: UUID,
    source_id: UUID,
    destination_id: UUID,
    plan: TransferPlan,
    now: datetime,
) -> None:
    await prepared.execute(
        conn,
        _ADD,
        {
            "id": transfer_id,
            "agency_id": agency_id,
            "from_sub_account_id": source_id,
            "to_sub_account_id": destination_id,
            "tier": plan.tier.value,
            "sent_seconds": plan.sent_seconds,
            "received_seconds": plan.received_seconds,
            "base_micros_per_minute": plan.base_micros_per_minute,
            "from_markup_bp": plan.from_markup_bp,
            "to_markup_bp": plan.to_markup_bp,
            "created_at": now,
        },
    )
