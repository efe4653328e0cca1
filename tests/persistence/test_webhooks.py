"""The webhook queue in the database: deliveries written with the change, and an endpoint
deleted while an event is being queued for it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from domain.webhooks import WebhookEndpoint, WebhookEvent, WebhookEventKind
from persistence import webhooks
from persistence.unit_of_work import UnitOfWork
from tests.persistence.test_unit_of_work import new_account

now = lambda: datetime.now(UTC)
delivery_t = webhooks.delivery_t


async def add_endpoint(database, agency_id, kinds=(WebhookEventKind.PAYOUT_PAID,)):
    endpoint = WebhookEndpoint(
        uuid.uuid4(), agency_id, "https://127.0.0.1/h", frozenset(kinds), True, now()
    )
    async with database.transaction() as conn:
        await webhooks.add_endpoint(conn, endpoint, b"sealed")
    return endpoint


def paid(agency_id) -> WebhookEvent:
    return WebhookEvent(WebhookEventKind.PAYOUT_PAID, agency_id, None, {"amount": "1.00"})


async def count(database) -> int:
    async with database.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(delivery_t)) or 0)


async def test_notify_writes_with_the_commit_and_nothing_on_rollback(database):
    agency_id, _ = await new_account(database)
    await add_endpoint(database, agency_id)
    await add_endpoint(database, agency_id, (WebhookEventKind.LOW_BALANCE,))  # not listening
    with pytest.raises(RuntimeError):
        async with UnitOfWork(database, now) as uow:
            uow.notify(paid(agency_id))
            raise RuntimeError("the change failed")
    assert await count(database) == 0
    woken = []
    async with UnitOfWork(database, now, wake_job=woken.append) as uow:
        uow.notify(paid(agency_id))
        uow.notify(paid(agency_id))
    assert await count(database) == 2 and woken == ["deliver-webhooks"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_endpoint_deleted_while_an_event_is_queued_is_skipped_not_an_error(database):
    agency_id, _ = await new_account(database)
    endpoint = await add_endpoint(database, agency_id)
    deleting = database.transaction()
    conn = await deleting.__aenter__()
    assert await webhooks.delete_endpoint(conn, agency_id, endpoint.id) is not None

    async def queue() -> int:
        async with database.transaction() as other:
            return await webhooks.queue_deliveries(other, [paid(agency_id)], now())

    # the queueing transaction waits for the deletion, then finds no endpoint
    queued = asyncio.create_task(queue())
    await asyncio.sleep(0.3)
    assert not queued.done()
    await deleting.__aexit__(None, None, None)
    assert await asyncio.wait_for(queued, 5) == 0
    assert await count(database) == 0


async def test_an_alert_is_also_a_webhook_event_as_often_as_its_mail(database):
    """LOW_BALANCE, PAYMENT_FAILED and SPENDING_CAP_REACHED reach the agency's endpoints
    through the one place alerts are raised, with the alert's data; a second alert of the
    kind the same day (no mail) queues nothing either."""
    import orjson

    from domain.alerts import Alert, AlertKind

    agency_id, sub_account_id = await new_account(database)
    await add_endpoint(database, agency_id, (WebhookEventKind.PAYMENT_FAILED,))
    today = now().date()
    failed = Alert(agency_id, sub_account_id, AlertKind.PAYMENT_FAILED, today, {"reason": "no"})
    woken = []
    async with UnitOfWork(database, now, wake_job=woken.append) as uow:
        assert await uow.raise_alert(failed)
        assert not await uow.raise_alert(failed)  # one a day
        await uow.raise_alert(Alert(agency_id, sub_account_id, AlertKind.LOW_BALANCE, today))
    async with database.read() as conn:
        rows = (await conn.execute(select(delivery_t))).all()
    assert [(r.kind, r.sub_account_id, orjson.loads(r.data)) for r in rows] == [
        ("PAYMENT_FAILED", sub_account_id, {"reason": "no"})
    ]
    assert set(woken) == {"send-alerts", "deliver-webhooks"}
    async with UnitOfWork(database, now) as uow:
        assert not await uow.raise_alert(failed)
    assert await count(database) == 1
