"""Earnings and payouts: the owner's settings and requestPayout, and the payouts job.

A payout is made in atomic phases like a purchase: a transaction that locks the agency row,
reads the earnings and writes the payout PENDING; one Stripe Transfer outside it, with the
payout's id as its Idempotency-Key; a guarded update to PAID (with the transfer id) or FAILED
(its amount unpaid again). A payout left PENDING by a crash is sent again, under the same
key, by the next run of the job.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from strawberry import UNSET

from domain import payouts as rules
from domain.agency import Agency
from domain.audit import Actor
from domain.paging import Page
from domain.payments import check_idempotency_key
from domain.payouts import Earnings, Payout, PayoutStatus
from domain.policy import Action, Target, can, require
from domain.reporting import Range
from persistence import agencies, idempotency, payouts
from persistence.errors import UniqueViolation
from persistence.stripe_gateway import StripeGateway, StripeUnavailable, TransferRefused
from persistence.unit_of_work import UnitOfWork
from resolvers import webhooks
from resolvers.context import RequestContext, Services
from resolvers.paging import page_size

log = logging.getLogger(__name__)

# A payout still PENDING this long after it was written lost its Transfer call to a crash
# or an outage: the job sends it again (same key, so Stripe makes one Transfer).
RESEND_AFTER = timedelta(minutes=10)


async def earnings_of(ctx: RequestContext, agency: Agency) -> Earnings:
    require(await ctx.viewer(), Action.VIEW_AGENCY_DETAILS, Target(agency.id))
    async with ctx.services.database.read() as conn:
        return await payouts.earnings(conn, agency.id)


async def profit_in(ctx: RequestContext, agency: Agency, window: Range) -> int:
    async with ctx.services.database.read() as conn:
        return await payouts.profit_between(conn, agency.id, window.start_utc, window.end_utc)


async def payouts_page(
    ctx: RequestContext, agency: Agency, first: int | None, after: str | None
) -> tuple[Page[Payout], int]:
    require(await ctx.viewer(), Action.VIEW_AGENCY_DETAILS, Target(agency.id))
    size = page_size(first)
    async with ctx.services.database.read() as conn:
        return await payouts.payouts_page(conn, agency.id, size, after)


async def set_payout_settings(
    ctx: RequestContext, connected_account_id: Any, payout_threshold: Any
) -> Earnings:
    """An omitted field stays as it is; an explicit null clears it (the threshold goes back to
    the $100 default)."""
    ctx.services.payments()
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_PAYOUTS, Target(viewer.agency_id))
    actor = await ctx.actor()
    values: dict[str, Any] = {}
    what = []
    if connected_account_id is not UNSET:
        account = (
            None
            if connected_account_id is None
            else rules.check_connected_account(connected_account_id)
        )
        values["stripe_connect_account_id"] = account
        what.append(f"connected account {account or 'none'}")
    if payout_threshold is not UNSET:
        threshold = (
            rules.DEFAULT_PAYOUT_THRESHOLD_MICROS
            if payout_threshold is None
            else rules.check_threshold(Decimal(payout_threshold))
        )
        values["payout_threshold_micros"] = threshold
        what.append(f"threshold ${threshold / 1_000_000:.2f}")

    async def save(uow: UnitOfWork) -> Earnings:
        await agencies.agency_for_update(uow.conn, viewer.agency_id)
        if not values:
            uow.nothing_changed()
        else:
            await payouts.save_settings(uow.conn, viewer.agency_id, **values)
            uow.audit(actor, rules.settings_changed(viewer.agency_id, what))
        return await payouts.earnings(uow.conn, viewer.agency_id)

    return await ctx.services.transact(save)


async def request_payout(ctx: RequestContext, idempotency_key: str) -> Payout:
    """Pay out whatever is unpaid now (threshold or not); a retry with the same key returns
    the same payout."""
    stripe = ctx.services.payments()
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_PAYOUTS, Target(viewer.agency_id))
    actor = await ctx.actor()
    key = check_idempotency_key(idempotency_key)
    scope = f"payout:{viewer.agency_id}"
    fingerprint = idempotency.request_hash("requestPayout", {})
    now = ctx.services.clock()

    async def begin(uow: UnitOfWork) -> Payout:
        await agencies.agency_for_update(uow.conn, viewer.agency_id)
        earlier = await idempotency.recall(uow.conn, scope, key, fingerprint)
        if earlier is not None:
            uow.nothing_changed()
            found = await payouts.payout_by_id(uow.conn, UUID(earlier["payout_id"]))
            assert found is not None
            return found
        destination, amount = rules.requested_payout(
            await payouts.earnings(uow.conn, viewer.agency_id)
        )
        payout = Payout(
            uuid.uuid4(),
            viewer.agency_id,
            amount,
            PayoutStatus.PENDING,
            destination,
            now,
            requested_by=actor.email,
        )
        await payouts.add_payout(uow.conn, payout)
        await idempotency.remember(
            uow.conn, scope, key, fingerprint, {"payout_id": str(payout.id)}, now
        )
        uow.audit(actor, rules.payout_requested(payout))
        return payout

    try:
        payout = await ctx.services.transact(begin)
    except UniqueViolation:
        payout = await ctx.services.transact(begin)  # a concurrent twin: its answer
    if payout.status is PayoutStatus.PENDING:
        payout = await send(ctx.services, stripe, payout)
    return payout


async def send(services: Services, stripe: StripeGateway, payout: Payout) -> Payout:
    """The payout's one Transfer, then PAID or FAILED; left PENDING if Stripe did not answer."""
    try:
        transfer = await stripe.transfer(
            payout.stripe_idempotency_key, payout.amount_cents, payout.destination, payout.id
        )
    except TransferRefused as refused:
        return await _settle(services, payout, None, str(refused))
    except StripeUnavailable:
        log.warning("payout %s left PENDING: Stripe did not answer", payout.id)
        return payout
    return await _settle(services, payout, transfer.id, None)


async def _settle(
    services: Services, payout: Payout, transfer_id: str | None, reason: str | None
) -> Payout:
    now = services.clock()

    async def record(uow: UnitOfWork) -> Payout:
        paid = False
        if transfer_id is not None:
            paid = await payouts.settle_paid(uow.conn, payout.id, transfer_id, now)
        else:
            await payouts.settle_failed(uow.conn, payout.id, reason or "refused")
        settled = await payouts.payout_by_id(uow.conn, payout.id)
        assert settled is not None
        if paid:
            uow.notify(webhooks.payout_paid(settled))
        return settled

    return await services.transact(record, audited=False)


async def pay_out(services: Services) -> int:
    """The payouts job: send payouts left PENDING, then pay every agency whose unpaid
    earnings reached its threshold and that has a Connect account. Returns payouts PAID."""
    stripe = services.payments()
    now = services.clock()
    paid = 0
    async with services.database.read() as conn:
        stranded = await payouts.pending_since(conn, now - RESEND_AFTER)
        agency_ids = await payouts.agencies_with_connected_accounts(conn)
    for payout in stranded:
        paid += (await send(services, stripe, payout)).status is PayoutStatus.PAID
    for agency_id in agency_ids:
        payout = await _due_payout(services, agency_id, now)
        if payout is not None:
            paid += (await send(services, stripe, payout)).status is PayoutStatus.PAID
    return paid


async def _due_payout(services: Services, agency_id: UUID, now: datetime) -> Payout | None:
    async def begin(uow: UnitOfWork) -> Payout | None:
        await agencies.agency_for_update(uow.conn, agency_id)
        due = rules.due_payout(await payouts.earnings(uow.conn, agency_id))
        if due is None:
            return None
        destination, amount = due
        payout = Payout(uuid.uuid4(), agency_id, amount, PayoutStatus.PENDING, destination, now)
        await payouts.add_payout(uow.conn, payout)
        uow.audit(Actor(agency_id, None), rules.payout_made(payout))
        return payout

    return await services.transact(begin, audited=False)


async def payout_node(ctx: RequestContext, key: UUID) -> Payout | None:
    viewer = await ctx.viewer()
    async with ctx.services.database.read() as conn:
        payout = await payouts.payout_by_id(conn, key)
    if payout is None or not can(viewer, Action.VIEW_AGENCY_DETAILS, Target(payout.agency_id)):
        return None
    return payout
