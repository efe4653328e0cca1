"""Outgoing webhooks: the endpoints' use cases (owners and agency admins), the events the
use cases raise, and the delivery worker.

The worker runs as a server job (`resolvers.jobs.deliver_webhooks`, one runner in the
deployment), never inside a request: a slow or dead endpoint costs the API nothing. Per pass it
reads each endpoint's oldest pending delivery (a later event waits behind it) and every pending
ping, sends those that are due, and records each attempt. Before every attempt the host is
resolved again and every address checked (DNS may have changed since the endpoint was made),
and the request goes to the address that was checked.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from domain.agency import SubAccount
from domain.audit import AuditKind, AuditNote, Subject
from domain.errors import DomainError, ErrorCode
from domain.money import to_dollars
from domain.paging import Page
from domain.payouts import Payout
from domain.policy import Action, Target, can, require
from domain.webhooks import (
    SECRET_PREFIX,
    SIGNATURE_HEADER,
    DeliveryStatus,
    IPAddress,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventKind,
    WebhookTarget,
    check_addresses,
    check_events,
    check_room,
    event_id_text,
    parse_url,
    sign,
    succeeded,
)
from persistence import agencies
from persistence import webhooks as store
from persistence.unit_of_work import UnitOfWork
from persistence.webhook_sender import Answer, Unresolvable, new_client, post
from resolvers.context import RequestContext, Services
from resolvers.global_id import to_global_id
from resolvers.ids import decode, not_found
from resolvers.paging import page_size

log = logging.getLogger(__name__)

# ---- the events the use cases raise (ids in `data` are the API's global IDs) ---------------


def suspended(sub_account: SubAccount, note: str | None) -> WebhookEvent:
    return WebhookEvent(
        WebhookEventKind.SUBACCOUNT_SUSPENDED,
        sub_account.agency_id,
        sub_account.id,
        {"name": sub_account.name, "note": note},
    )


def restored(sub_account: SubAccount) -> WebhookEvent:
    return WebhookEvent(
        WebhookEventKind.SUBACCOUNT_RESTORED,
        sub_account.agency_id,
        sub_account.id,
        {"name": sub_account.name},
    )


def payout_paid(payout: Payout) -> WebhookEvent:
    return WebhookEvent(
        WebhookEventKind.PAYOUT_PAID,
        payout.agency_id,
        None,
        {
            "payoutId": to_global_id("Payout", payout.id),
            "amount": f"{to_dollars(payout.amount_micros):.2f}",
            "currency": "USD",
            "destination": payout.destination,
        },
    )


# ---- endpoints -----------------------------------------------------------------------------


async def checked_target(services: Services, url: str) -> tuple[WebhookTarget, list[IPAddress]]:
    """The URL parsed and every address of its host allowed, or a DomainError saying why."""
    target = parse_url(url)
    try:
        addresses = await services.resolve_host(target.host, target.port)
    except Unresolvable:
        raise DomainError(
            ErrorCode.URL_NOT_ALLOWED, f"The host {target.host} could not be resolved.", ("url",)
        ) from None
    return target, check_addresses(target, addresses, services.webhook_allow_loopback)


async def create_webhook_endpoint(
    ctx: RequestContext, url: str, events: list[WebhookEventKind]
) -> tuple[WebhookEndpoint, str]:
    """The endpoint and its signing secret, shown this once (kept sealed, never in clear)."""
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_WEBHOOKS, Target(viewer.agency_id))
    actor = await ctx.actor()
    services = ctx.services
    chosen = check_events(events)
    target, _ = await checked_target(services, url)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    sealed = services.tokens.seal(secret)
    endpoint = WebhookEndpoint(
        uuid.uuid4(), viewer.agency_id, target.url, chosen, True, services.clock()
    )

    async def add(uow: UnitOfWork) -> WebhookEndpoint:
        await agencies.agency_for_update(uow.conn, viewer.agency_id)  # one creation at a time
        check_room(await store.endpoint_count(uow.conn, viewer.agency_id))
        await store.add_endpoint(uow.conn, endpoint, sealed)
        kinds = ", ".join(k.value for k in WebhookEventKind if k in chosen)
        uow.audit(
            actor,
            AuditNote(
                AuditKind.WEBHOOK_ENDPOINT_CREATED,
                f"added the webhook endpoint {target.url} for {kinds}",
                Subject("WebhookEndpoint", endpoint.id),
            ),
        )
        return endpoint

    return await services.transact(add), secret


async def _manage(ctx: RequestContext) -> UUID:
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_WEBHOOKS, Target(viewer.agency_id))
    return viewer.agency_id


async def delete_webhook_endpoint(ctx: RequestContext, global_id: str) -> WebhookEndpoint:
    """Gone with its delivery log and whatever was still queued for it."""
    agency_id = await _manage(ctx)
    endpoint_id = decode(global_id, "WebhookEndpoint", "id")
    actor = await ctx.actor()

    async def remove(uow: UnitOfWork) -> WebhookEndpoint:
        endpoint = await store.delete_endpoint(uow.conn, agency_id, endpoint_id)
        if endpoint is None:
            raise not_found("id", "webhook endpoint")
        uow.audit(
            actor,
            AuditNote(
                AuditKind.WEBHOOK_ENDPOINT_DELETED,
                f"deleted the webhook endpoint {endpoint.url}",
                Subject("WebhookEndpoint", endpoint.id),
            ),
        )
        return endpoint

    return await ctx.services.transact(remove)


def test_event(endpoint: WebhookEndpoint) -> WebhookEvent:
    """What a ping sends: an event of the endpoint's first kind, `data: {"test": true}`."""
    return WebhookEvent(endpoint.test_kind, endpoint.agency_id, None, {"test": True})


async def ping_webhook_endpoint(ctx: RequestContext, global_id: str) -> WebhookEndpoint:
    """Queue a test event that the worker sends at once (woken now), outside the endpoint's
    order and without retries: its one attempt shows in the delivery log (`test: true`)."""
    agency_id = await _manage(ctx)
    endpoint_id = decode(global_id, "WebhookEndpoint", "id")
    actor = await ctx.actor()
    now = ctx.services.clock()

    async def queue(uow: UnitOfWork) -> WebhookEndpoint:
        endpoint = await store.endpoint_by_id(uow.conn, endpoint_id)
        if endpoint is None or endpoint.agency_id != agency_id:
            raise not_found("id", "webhook endpoint")
        await store.add_test_delivery(uow.conn, endpoint, test_event(endpoint), now)
        uow.audit(
            actor,
            AuditNote(
                AuditKind.WEBHOOK_ENDPOINT_PINGED,
                f"sent a test event to the webhook endpoint {endpoint.url}",
                Subject("WebhookEndpoint", endpoint.id),
            ),
        )
        return endpoint

    endpoint = await ctx.services.transact(queue)
    ctx.services.wake_job(store.JOB)
    return endpoint


async def webhook_endpoints(
    ctx: RequestContext, agency_id: UUID, first: int | None, after: str | None
) -> tuple[Page[WebhookEndpoint], int]:
    require(await ctx.viewer(), Action.MANAGE_WEBHOOKS, Target(agency_id))
    async with ctx.services.database.read() as conn:
        return await store.endpoints_page(conn, agency_id, page_size(first), after)


async def deliveries(
    ctx: RequestContext, endpoint: WebhookEndpoint, first: int | None, after: str | None
) -> tuple[Page[WebhookDelivery], int]:
    require(await ctx.viewer(), Action.MANAGE_WEBHOOKS, Target(endpoint.agency_id))
    async with ctx.services.database.read() as conn:
        return await store.deliveries_page(conn, endpoint.id, page_size(first), after)


async def endpoint_node(ctx: RequestContext, key: UUID) -> WebhookEndpoint | None:
    viewer = await ctx.viewer()
    if not can(viewer, Action.MANAGE_WEBHOOKS, Target(viewer.agency_id)):
        return None
    async with ctx.services.database.read() as conn:
        endpoint = await store.endpoint_by_id(conn, key)
    return endpoint if endpoint is not None and endpoint.agency_id == viewer.agency_id else None


# ---- the delivery worker -------------------------------------------------------------------


def body_of(delivery: WebhookDelivery) -> bytes:
    """The JSON body, the same bytes on every attempt: ids are the API's global IDs, the
    event's id is `evt_…`, times are ISO 8601 in UTC."""
    envelope: dict[str, Any] = {
        "id": event_id_text(delivery.event_id),
        "kind": delivery.kind.value,
        "occurredAt": delivery.created_at.isoformat(),
        "agencyId": to_global_id("Agency", delivery.agency_id),
        "subAccountId": None
        if delivery.sub_account_id is None
        else to_global_id("SubAccount", delivery.sub_account_id),
        "data": dict(delivery.data),
    }
    return orjson.dumps(envelope)


def headers_for(
    delivery: WebhookDelivery, secret: str, body: bytes, at: datetime
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "agencyhub-webhooks/1",
        "Agencyhub-Event-Id": event_id_text(delivery.event_id),
        SIGNATURE_HEADER: sign(secret, int(at.timestamp()), body),
    }


@dataclass(frozen=True)
class Pass:
    attempted: int
    delivered: int


MAX_CONCURRENT_ATTEMPTS = 50


async def deliver_due(services: Services) -> Pass:
    """One pass: each due queue head and ping tried once, all endpoints at once (so one slow
    endpoint holds back the others by at most its 5 s timeout)."""
    now = services.clock()
    async with services.database.read() as conn:
        heads = await store.queue_heads(conn)
        due = [d for d in heads if d.next_attempt_at <= now]
        if not due:
            return Pass(0, 0)
        endpoints = await store.sealed_secrets(conn, sorted({d.endpoint_id for d in due}))
    gate = asyncio.Semaphore(MAX_CONCURRENT_ATTEMPTS)

    async def one(delivery: WebhookDelivery) -> bool | None:
        found = endpoints.get(delivery.endpoint_id)
        if found is None or not found[0].enabled:
            return None  # deleted meanwhile (its deliveries went with it), or switched off
        endpoint, sealed = found
        async with gate:
            return await _attempt(services, client, endpoint, sealed, delivery)

    async with new_client(services.webhook_tls) as client:
        results = await asyncio.gather(*(one(d) for d in due), return_exceptions=True)
    for delivery, result in zip(due, results, strict=True):
        if isinstance(result, Exception):  # recorded nothing: tried again next pass
            log.warning("webhook delivery %d failed to run", delivery.id, exc_info=result)
    tried = [r for r in results if isinstance(r, bool)]
    return Pass(len(tried), sum(tried))


async def _attempt(
    services: Services,
    client: Any,
    endpoint: WebhookEndpoint,
    sealed: bytes,
    delivery: WebhookDelivery,
) -> bool:
    body = body_of(delivery)
    try:
        target, addresses = await checked_target(services, endpoint.url)
    except DomainError as refused:
        answer = Answer(None, refused.message)
    else:
        secret = services.tokens.unseal(sealed)
        if secret is None:
            answer = Answer(None, "the signing secret cannot be read (SECRET_KEY changed?)")
        else:
            headers = headers_for(delivery, secret, body, services.clock())
            answer = await post(client, target, addresses[0], headers, body)
    return await _record(services, delivery, answer)


async def _record(services: Services, delivery: WebhookDelivery, answer: Answer) -> bool:
    now = services.clock()
    next_at: datetime | None = delivery.next_attempt_at
    if succeeded(answer.status):
        status = DeliveryStatus.DELIVERED
    else:
        next_at = (
            None
            if delivery.test
            else services.webhook_retries.next_attempt(
                delivery.created_at, delivery.attempts + 1, now
            )
        )
        status = DeliveryStatus.PENDING if next_at is not None else DeliveryStatus.FAILED
        error = answer.error or f"HTTP {answer.status}"
        log.info(
            "webhook %s to endpoint %s: attempt %d failed (%s)%s",
            event_id_text(delivery.event_id),
            delivery.endpoint_id,
            delivery.attempts + 1,
            error,
            "" if next_at is None else f", again at {next_at.isoformat()}",
        )

    async def record(uow: UnitOfWork) -> bool:
        return await store.record_attempt(
            uow.conn,
            delivery,
            status,
            answer.status,
            None if succeeded(answer.status) else (answer.error or f"HTTP {answer.status}"),
            next_at or now,
            now,
        )

    await services.transact(record, audited=False)
    return status is DeliveryStatus.DELIVERED


MAX_PASSES_PER_RUN = 100


async def deliver_webhooks(services: Services) -> int:
    """Passes until nothing is due (a delivered event makes its endpoint's next one due at
    once). Returns how many were delivered."""
    delivered = 0
    for _ in range(MAX_PASSES_PER_RUN):
        done = await deliver_due(services)
        delivered += done.delivered
        if done.attempted == 0:
            break
    return delivered
