"""Auto-recharge settings and the requests debits write for the auto-recharge job.

A request is a row per (sub-account, tier), written with ON CONFLICT DO NOTHING in the debit's
transaction; its `purchase_id` is the recharge in flight. The job takes the request's row
(`FOR UPDATE`, after the sub-account's: lock order row 2, then row 7) before it writes a
purchase, so two runs never start two recharges for one request, and the purchase table's
partial unique index (one PENDING AUTO_RECHARGE per sub-account and tier) says so again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.auto_recharge import OFF, AutoRecharge
from domain.money import Tier
from persistence import prepared
from persistence.database import dialect_insert
from persistence.prepared import Prepared, any_of, in_list
from persistence.tables import AutoRechargeRequestRow, AutoRechargeRow

JOB = "charge-auto-recharges"  # the job that charges them (woken by the debits that ask)

auto_recharge_t = AutoRechargeRow.__table__
request_t = AutoRechargeRequestRow.__table__


def setting_from(row: Any) -> AutoRecharge:
    return AutoRecharge(
        enabled=row.enabled,
        tier=Tier(row.tier),
        threshold_minutes=row.threshold_minutes,
        top_up_minutes=row.top_up_minutes,
        last_purchase_id=row.last_purchase_id,
        failed_at=row.failed_at,
        blocked_until=row.blocked_until,
        blocked_card=row.blocked_card,
    )


# A transfer out reads its source's setting: compiled once (persistence/prepared.py).
_SETTINGS_OF = Prepared(
    select(auto_recharge_t).where(any_of(auto_recharge_t.c.sub_account_id, "ids")),
    fallback=select(auto_recharge_t).where(in_list(auto_recharge_t.c.sub_account_id, "ids")),
)


async def settings_of(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> list[AutoRecharge]:
    rows = await prepared.fetch(conn, _SETTINGS_OF, {"ids": list(ids)})
    found = {r.sub_account_id: setting_from(r) for r in rows}
    return [found.get(i, OFF) for i in ids]


async def save_setting(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    sub_account_id: uuid.UUID,
    setting: AutoRecharge,
    now: datetime,
) -> None:
    values = {
        "enabled": setting.enabled,
        "tier": setting.tier.value,
        "threshold_minutes": setting.threshold_minutes,
        "top_up_minutes": setting.top_up_minutes,
        "last_purchase_id": setting.last_purchase_id,
        "failed_at": setting.failed_at,
        "blocked_until": setting.blocked_until,
        "blocked_card": setting.blocked_card,
        "updated_at": now,
    }
    upsert = dialect_insert(conn, auto_recharge_t).values(
        sub_account_id=sub_account_id, agency_id=agency_id, **values
    )
    await conn.execute(upsert.on_conflict_do_update(index_elements=["sub_account_id"], set_=values))


async def request(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    wanted: Sequence[tuple[uuid.UUID, Tier]],
    now: datetime,
) -> None:
    """In the debit's transaction: a request per (sub-account, tier), unless one is open."""
    rows = [
        {
            "sub_account_id": sub_account_id,
            "tier": tier.value,
            "agency_id": agency_id,
            "requested_at": now,
        }
        for sub_account_id, tier in wanted
    ]
    await conn.execute(dialect_insert(conn, request_t).values(rows).on_conflict_do_nothing())


@dataclass(frozen=True)
class Request:
    sub_account_id: uuid.UUID
    tier: Tier
    agency_id: uuid.UUID
    requested_at: datetime
    purchase_id: uuid.UUID | None


def _request_from(row: Any) -> Request:
    return Request(
        row.sub_account_id, Tier(row.tier), row.agency_id, row.requested_at, row.purchase_id
    )


async def open_requests(conn: AsyncConnection) -> list[Request]:
    rows = await conn.execute(select(request_t).order_by(request_t.c.requested_at))
    return [_request_from(r) for r in rows]


async def request_for_update(
    conn: AsyncConnection, sub_account_id: uuid.UUID, tier: Tier
) -> Request | None:
    row = (
        await conn.execute(
            select(request_t)
            .where(request_t.c.sub_account_id == sub_account_id, request_t.c.tier == tier.value)
            .with_for_update()
        )
    ).first()
    return None if row is None else _request_from(row)


async def start(
    conn: AsyncConnection,
    sub_account_id: uuid.UUID,
    tier: Tier,
    purchase_id: uuid.UUID,
    now: datetime,
) -> None:
    """The request's recharge is this purchase (in flight), and it is the last charge."""
    await conn.execute(
        update(request_t)
        .where(request_t.c.sub_account_id == sub_account_id, request_t.c.tier == tier.value)
        .values(purchase_id=purchase_id)
    )
    await conn.execute(
        update(auto_recharge_t)
        .where(auto_recharge_t.c.sub_account_id == sub_account_id)
        .values(last_purchase_id=purchase_id, updated_at=now)
    )


async def close(conn: AsyncConnection, sub_account_id: uuid.UUID, tier: Tier) -> None:
    """The request is done with (recharged, no longer needed)."""
    await conn.execute(
        delete(request_t).where(
            request_t.c.sub_account_id == sub_account_id, request_t.c.tier == tier.value
        )
    )


async def succeeded(
    conn: AsyncConnection, sub_account_id: uuid.UUID, tier: Tier, now: datetime
) -> None:
    """A recharge succeeded: its request closes and any backoff is over."""
    await close(conn, sub_account_id, tier)
    await conn.execute(
        update(auto_recharge_t)
        .where(auto_recharge_t.c.sub_account_id == sub_account_id)
        .values(failed_at=None, blocked_until=None, blocked_card=None, updated_at=now)
    )


async def failed(
    conn: AsyncConnection,
    sub_account_id: uuid.UUID,
    tier: Tier,
    setting: AutoRecharge,
    now: datetime,
) -> None:
    """A recharge failed: the request stays open, with nothing in flight, and the backoff
    (`setting`, from `domain.auto_recharge.failed`) is stored."""
    await conn.execute(
        update(request_t)
        .where(request_t.c.sub_account_id == sub_account_id, request_t.c.tier == tier.value)
        .values(purchase_id=None)
    )
    await conn.execute(
        update(auto_recharge_t)
        .where(auto_recharge_t.c.sub_account_id == sub_account_id)
        .values(
            failed_at=setting.failed_at,
            blocked_until=setting.blocked_until,
            blocked_card=setting.blocked_card,
            updated_at=now,
        )
    )


async def close_idle(conn: AsyncConnection, sub_account_id: uuid.UUID, tier: Tier) -> None:
    """Turned off: an open request with nothing in flight goes (one in flight is finished by
    the job when it settles)."""
    await conn.execute(
        delete(request_t).where(
            request_t.c.sub_account_id == sub_account_id,
            request_t.c.tier == tier.value,
            request_t.c.purchase_id.is_(None),
        )
    )
