"""A sub-account's calls over a range, newest first, page by page: one range of the index on
(sub_account_id, started_at, id), read backwards from the cursor."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.money import Tier
from domain.paging import Page
from domain.usage import CallChannel, CallDirection, CallStatus, RecordedCall
from persistence.merges import owned_accounts
from persistence.queries import paging
from persistence.usage import call_t

_COLUMNS = [c for c in call_t.columns if c.name not in ("agency_id", "recorded_at")]


def encode_cursor(call: RecordedCall) -> str:
    return paging.encode_cursor(call.started_at, call.id)


def _call_from(row: Any) -> RecordedCall:
    return RecordedCall(
        id=row.id,
        external_id=row.external_id,
        sub_account_id=row.sub_account_id,
        direction=CallDirection(row.direction),
        channel=CallChannel(row.channel),
        status=CallStatus(row.status),
        tier=Tier(row.tier),
        started_at=row.started_at,
        duration_seconds=row.duration_seconds,
        funded_by=row.funded_by or row.sub_account_id,
        overage_seconds=row.overage_seconds,
        spent_micros=row.spent_micros,
        cost_micros=row.cost_micros,
    )


async def calls_page(
    conn: AsyncConnection,
    sub_account_id: uuid.UUID,
    start: datetime,
    end: datetime,
    first: int,
    after: str | None,
) -> Page[RecordedCall]:
    """Calls that started in [start, end), newest first (ties by id, newest first): the
    account's own and those of the accounts merged into it, each account's read as one
    backward range of its index, the newest `first` of them all kept."""
    accounts = [sub_account_id, *await owned_accounts(conn, sub_account_id)]
    cursor = paging.decode_cursor(after, int) if after is not None else None

    def of(account: uuid.UUID) -> Select[Any]:
        query = select(*_COLUMNS).where(
            call_t.c.sub_account_id == account,
            call_t.c.started_at >= start,
            call_t.c.started_at < end,
        )
        if cursor is not None:
            query = query.where(tuple_(call_t.c.started_at, call_t.c.id) < tuple_(*cursor))
        return query.order_by(call_t.c.started_at.desc(), call_t.c.id.desc()).limit(first + 1)

    if len(accounts) == 1:
        query = of(sub_account_id)
    else:
        merged = union_all(*(of(a).subquery().select() for a in accounts)).subquery()
        query = (
            select(merged).order_by(merged.c.started_at.desc(), merged.c.id.desc()).limit(first + 1)
        )
    rows = (await conn.execute(query)).all()
    calls = [_call_from(r) for r in rows[:first]]
    return Page(
        items=calls, cursors=[encode_cursor(c) for c in calls], has_next_page=len(rows) > first
    )
