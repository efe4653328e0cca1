"""Moving minutes between sub-accounts: preview and transfer, idempotent, never overdrawn."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain.agency import SubAccount
from domain.events import usage_event
from domain.money import Tier
from domain.policy import Action, Target, require
from domain.pricing import minutes_to_whole_seconds
from domain.transfer import TransferPlan, plan_transfer, transferred
from persistence import auto_recharge, idempotency, ledger, live, transfers
from persistence.errors import UniqueViolation
from persistence.unit_of_work import UnitOfWork
from resolvers.auto_recharges import after_debit
from resolvers.context import RequestContext
from resolvers.ids import decode, not_found
from resolvers.sub_account import lock_sub_accounts


@dataclass(frozen=True)
class TransferResult:
    id: UUID
    plan: TransferPlan
    source: SubAccount
    destination: SubAccount


async def preview_transfer(
    ctx: RequestContext, from_id: str, to_id: str, tier: Tier, minutes: Decimal
) -> TransferPlan:
    viewer = await ctx.viewer()
    require(viewer, Action.TRANSFER_MINUTES, Target(viewer.agency_id))
    sent = minutes_to_whole_seconds(minutes)
    keys = [decode(from_id, "SubAccount", "fromId"), decode(to_id, "SubAccount", "toId")]
    found = await ctx.loaders.sub_account_by_id.load_many(keys)
    for account, field in zip(found, ("fromId", "toId"), strict=True):
        if account is None or account.agency_id != viewer.agency_id:
            raise not_found(field, "sub-account")
    source, destination = found
    assert source is not None and destination is not None
    return plan_transfer(source, destination, tier, sent, ctx.services.prices)


async def transfer_minutes(
    ctx: RequestContext,
    from_id: str,
    to_id: str,
    tier: Tier,
    minutes: Decimal,
    idempotency_key: str | None,
) -> TransferResult:
    viewer = await ctx.viewer()
    require(viewer, Action.TRANSFER_MINUTES, Target(viewer.agency_id))
    sent = minutes_to_whole_seconds(minutes)
    request = {"from": from_id, "to": to_id, "tier": tier.value, "seconds": sent}
    fingerprint = idempotency.request_hash("transferMinutes", request)
    scope = f"transfer:{viewer.agency_id}"
    try:
        return await _transfer(
            ctx, viewer.agency_id, from_id, to_id, tier, sent, scope, idempotency_key, fingerprint
        )
    except UniqueViolation:
        if not idempotency_key:
            raise
        # A concurrent twin with the same key committed first: answer with its result.
        return await _transfer(
            ctx, viewer.agency_id, from_id, to_id, tier, sent, scope, idempotency_key, fingerprint
        )


async def _transfer(
    ctx: RequestContext,
    agency_id: UUID,
    from_id: str,
    to_id: str,
    tier: Tier,
    sent: int,
    scope: str,
    key: str | None,
    fingerprint: str,
) -> TransferResult:
    viewer = await ctx.viewer()
    actor = await ctx.actor()
    zone = (await ctx.require_session()).agency.time_zone
    now = ctx.services.clock()

    async def move(uow: UnitOfWork) -> TransferResult:
        # Shared: transfers between the same accounts run side by side up to their balance
        # rows, taken as late as possible (after the transfer's own row), until the commit.
        source, destination = await lock_sub_accounts(
            uow, viewer, (from_id, "fromId"), (to_id, "toId"), share=True
        )
        if key:
            earlier = await idempotency.recall(uow.conn, scope, key, fingerprint)
            if earlier is not None:
                uow.nothing_changed()
                return _replayed(earlier, source, destination)
        plan = plan_transfer(source, destination, tier, sent, ctx.services.prices)
        [recharge] = await auto_recharge.settings_of(uow.conn, [source.id])
        transfer_id = uuid.uuid4()
        await transfers.add_transfer(
            uow.conn, transfer_id, agency_id, source.id, destination.id, plan, now
        )
        if key:
            await idempotency.remember(
                uow.conn, scope, key, fingerprint, _stored(transfer_id, plan), now
            )
        await ledger.apply(
            uow.conn,
            plan.movements(agency_id, source.id, destination.id, f"transfer:{transfer_id}"),
            now,
        )
        for snapshot in await live.usage_snapshots(uow.conn, [source, destination], zone, now):
            uow.publish(usage_event(snapshot))
            if snapshot.sub_account.id == source.id:
                left = {b.tier: b.seconds for b in snapshot.balances}
                await after_debit(uow, source, recharge, plan.tier, left.get(plan.tier, 0), now)
        uow.audit(actor, transferred(plan, source, destination))
        return TransferResult(transfer_id, plan, source, destination)

    return await ctx.services.transact(move)


def _stored(transfer_id: UUID, plan: TransferPlan) -> dict[str, Any]:
    return {
        "id": str(transfer_id),
        "tier": plan.tier.value,
        "sent": plan.sent_seconds,
        "received": plan.received_seconds,
        "base": plan.base_micros_per_minute,
        "from_bp": plan.from_markup_bp,
        "to_bp": plan.to_markup_bp,
    }


def _replayed(
    stored: dict[str, Any], source: SubAccount, destination: SubAccount
) -> TransferResult:
    plan = TransferPlan(
        Tier(stored["tier"]),
        stored["sent"],
        stored["received"],
        stored["base"],
        stored["from_bp"],
        stored["to_bp"],
    )
    return TransferResult(UUID(stored["id"]), plan, source, destination)
