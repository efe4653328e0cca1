"""Webhook endpoints and their deliveries: the rows, the queue the worker reads, the log.

Deliveries are written by the unit of work of the change that caused the event
(`queue_deliveries`, from `UnitOfWork.notify`); the worker reads each endpoint's oldest pending
one (`queue_heads`) and records every attempt with a guarded update (`record_attempt`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.paging import Page
from domain.webhooks import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventKind,
)
from persistence.queries.paging import decode_id_cursor, encode_id_cursor, keyset_page
from persistence.tables import WebhookDeliveryRow, WebhookEndpointRow

endpoint_t = WebhookEndpointRow.__table__
delivery_t = WebhookDeliveryRow.__table__

JOB = "deliver-webhooks"  # the job that sends what is queued (woken by the commit)

_ENDPOINT_COLUMNS = (
    endpoint_t.c.id,
    endpoint_t.c.agency_id,
    endpoint_t.c.url,
    endpoint_t.c.events,
    endpoint_t.c.enabled,
    endpoint_t.c.created_at,
)


def _endpoint(row: Any) -> WebhookEndpoint:
    return WebhookEndpoint(
        row.id,
        row.agency_id,
        row.url,
        frozenset(WebhookEventKind(k) for k in row.events.split()),
        bool(row.enabled),
        row.created_at,
    )


def _delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery(
        id=int(row.id),
        endpoint_id=row.endpoint_id,
        agency_id=row.agency_id,
        event_id=row.event_id,
        kind=WebhookEventKind(row.kind),
        sub_account_id=row.sub_account_id,
        data=orjson.loads(row.data),
        test=bool(row.test),
        status=DeliveryStatus(row.status),
        attempts=int(row.attempts),
        last_response_status=row.last_response_status,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


# ---- endpoints -----------------------------------------------------------------------------


async def add_endpoint(conn: AsyncConnection, endpoint: WebhookEndpoint, sealed: bytes) -> None:
    await conn.execute(
        insert(endpoint_t).values(
            id=endpoint.id,
            agency_id=endpoint.agency_id,
            url=endpoint.url,
            events=" ".join(k.value for k in WebhookEventKind if k in endpoint.events),
            enabled=endpoint.enabled,
            secret_sealed=sealed,
            created_at=endpoint.created_at,
        )
    )


async def endpoint_by_id(conn: AsyncConnection, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
    row = (
        await conn.execute(select(*_ENDPOINT_COLUMNS).where(endpoint_t.c.id == endpoint_id))
    ).first()
    return None if row is None else _endpoint(row)


async def sealed_secrets(
    conn: AsyncConnection, endpoint_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[WebhookEndpoint, bytes]]:
    """The endpoints with their sealed signing secrets (for the worker alone)."""
    rows = await conn.execute(
        select(*_ENDPOINT_COLUMNS, endpoint_t.c.secret_sealed).where(
            endpoint_t.c.id.in_(list(endpoint_ids))
        )
    )
    return {r.id: (_endpoint(r), bytes(r.secret_sealed)) for r in rows}


async def delete_endpoint(
    conn: AsyncConnection, agency_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint | None:
    """The deleted endpoint, with its log and queue; None when the agency has no such one."""
    found = (
        await conn.execute(
            select(*_ENDPOINT_COLUMNS)
            .where(endpoint_t.c.id == endpoint_id, endpoint_t.c.agency_id == agency_id)
            .with_for_update()
        )
    ).first()
    if found is None:
        return None
    await conn.execute(delete(delivery_t).where(delivery_t.c.endpoint_id == endpoint_id))
    await conn.execute(delete(endpoint_t).where(endpoint_t.c.id == endpoint_id))
    return _endpoint(found)


async def endpoint_count(conn: AsyncConnection, agency_id: uuid.UUID) -> int:
    found = await conn.scalar(
        select(func.count()).select_from(endpoint_t).where(endpoint_t.c.agency_id == agency_id)
    )
    return int(found or 0)


async def endpoints_page(
    conn: AsyncConnection, agency_id: uuid.UUID, first: int, after: str | None
) -> tuple[Page[WebhookEndpoint], int]:
    async def build(rows: Sequence[Any]) -> list[WebhookEndpoint]:
        return [_endpoint(r) for r in rows]

    t = endpoint_t
    query = select(*_ENDPOINT_COLUMNS).where(t.c.agency_id == agency_id)
    page = await keyset_page(conn, query, t.c.created_at, t.c.id, first, after, build)
    total = await conn.scalar(select(func.count()).where(t.c.agency_id == agency_id))
    return page, int(total or 0)


# ---- deliveries ----------------------------------------------------------------------------


def _delivery_row(
    endpoint_id: uuid.UUID, event_id: uuid.UUID, event: WebhookEvent, test: bool, now: datetime
) -> dict[str, Any]:
    return {
        "endpoint_id": endpoint_id,
        "agency_id": event.agency_id,
        "event_id": event_id,
        "kind": event.kind.value,
        "sub_account_id": event.sub_account_id,
        "data": orjson.dumps(dict(event.data)).decode(),
        "test": test,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


async def queue_deliveries(
    conn: AsyncConnection, events: Sequence[WebhookEvent], now: datetime
) -> int:
    """One PENDING delivery per enabled endpoint of the event's agency subscribed to its kind
    (the caller's transaction: the event's cause commits with it). Returns how many.

    The endpoints are read `FOR KEY SHARE` (what the deliveries' foreign key takes anyway), so
    an endpoint being deleted meanwhile is waited for and then skipped, instead of failing the
    insert (and with it the change that raised the event) on the foreign key."""
    agency_ids = sorted({e.agency_id for e in events})
    rows = await conn.execute(
        select(*_ENDPOINT_COLUMNS)
        .where(endpoint_t.c.agency_id.in_(agency_ids), endpoint_t.c.enabled.is_(True))
        .order_by(endpoint_t.c.id)
        .with_for_update(read=True, key_share=True)
    )
    endpoints = [_endpoint(r) for r in rows]
    values = []
    for event in events:
        event_id = uuid.uuid4()
        for endpoint in endpoints:
            if endpoint.agency_id == event.agency_id and endpoint.listens_to(event.kind):
                values.append(_delivery_row(endpoint.id, event_id, event, False, now))
    if values:
        await conn.execute(insert(delivery_t), values)
    return len(values)


async def add_test_delivery(
    conn: AsyncConnection, endpoint: WebhookEndpoint, event: WebhookEvent, now: datetime
) -> None:
    await conn.execute(
        insert(delivery_t).values(_delivery_row(endpoint.id, uuid.uuid4(), event, True, now))
    )


_COLUMNS = tuple(delivery_t.c)


async def queue_heads(conn: AsyncConnection) -> list[WebhookDelivery]:
    """What the worker may send next: each endpoint's oldest pending event (a later one waits
    behind it), and every pending ping (they keep no order), due or not."""
    d = delivery_t
    oldest = (
        select(d.c.endpoint_id, func.min(d.c.id).label("id"))
        .where(d.c.status == DeliveryStatus.PENDING.value, d.c.test.is_(False))
        .group_by(d.c.endpoint_id)
        .subquery()
    )
    heads = select(*_COLUMNS).join(oldest, oldest.c.id == d.c.id)
    pings = select(*_COLUMNS).where(d.c.status == DeliveryStatus.PENDING.value, d.c.test.is_(True))
    rows = [*(await conn.execute(heads)), *(await conn.execute(pings))]
    return sorted((_delivery(r) for r in rows), key=lambda x: x.id)


async def record_attempt(
    conn: AsyncConnection,
    delivery: WebhookDelivery,
    status: DeliveryStatus,
    response_status: int | None,
    error: str | None,
    next_attempt_at: datetime,
    now: datetime,
) -> bool:
    """One more attempt, guarded by the attempts seen (a delivery is recorded once per try)."""
    d = delivery_t
    result = await conn.execute(
        update(d)
        .where(
            d.c.id == delivery.id,
            d.c.status == DeliveryStatus.PENDING.value,
            d.c.attempts == delivery.attempts,
        )
        .values(
            status=status.value,
            attempts=delivery.attempts + 1,
            last_response_status=response_status,
            last_error=None if error is None else error[:200],
            next_attempt_at=next_attempt_at,
            delivered_at=now if status is DeliveryStatus.DELIVERED else None,
        )
    )
    return bool(result.rowcount == 1)


async def deliveries_page(
    conn: AsyncConnection, endpoint_id: uuid.UUID, first: int, after: str | None
) -> tuple[Page[WebhookDelivery], int]:
    """An endpoint's deliveries, newest first; and how many there are."""
    d = delivery_t
    where = [d.c.endpoint_id == endpoint_id]
    query = select(*_COLUMNS).where(*where)
    if after is not None:
        query = query.where(d.c.id < decode_id_cursor("delivery", after))
    rows = (await conn.execute(query.order_by(d.c.id.desc()).limit(first + 1))).all()
    total = await conn.scalar(select(func.count()).select_from(d).where(and_(*where)))
    found = [_delivery(r) for r in rows[:first]]
    page = Page(
        found, [encode_id_cursor("delivery", x.id) for x in found], has_next_page=len(rows) > first
    )
    return page, int(total or 0)
