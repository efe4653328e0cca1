"""Merging sub-accounts: requests, approval (one transaction, irreversible), rejection, and the
agency's list of requests. Owners and agency admins only (ADMINISTER_SUB_ACCOUNTS)."""

from __future__ import annotations

import uuid
from datetime import date
from uuid import UUID

from domain import lines as line_rules
from domain import merge as rules
from domain.agency import SubAccount, SubAccountStatus
from domain.errors import DomainError, ErrorCode
from domain.events import access_changed, usage_event
from domain.ledger import LedgerKind
from domain.merge import MergeRequest, MergeStatus
from domain.money import Tier
from domain.paging import Page
from domain.policy import Action, Target, Viewer, can, require
from domain.transfer import move_everything
from persistence import agencies, ledger, lines, live, merges
from persistence.errors import UniqueViolation
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.ids import decode, not_found
from resolvers.paging import page_size
from resolvers.sub_account import lock_sub_accounts
from resolvers.viewer import today


async def _administer(ctx: RequestContext) -> Viewer:
    viewer = await ctx.viewer()
    require(viewer, Action.ADMINISTER_SUB_ACCOUNTS, Target(viewer.agency_id))
    return viewer


async def request_merge(
    ctx: RequestContext, source_id: str, target_id: str, note: str | None
) -> MergeRequest:
    viewer = await _administer(ctx)
    actor = await ctx.actor()
    note = rules.check_note(note)
    now = ctx.services.clock()

    async def ask(uow: UnitOfWork) -> MergeRequest:
        # Locked, so a removal or suspension of either waits or is seen.
        source, target = await lock_sub_accounts(
            uow, viewer, (source_id, "sourceId"), (target_id, "targetId")
        )
        made, note_line = rules.request(
            uuid.uuid4(), source, target, note, viewer.user_id, actor.email or "", now
        )
        if await merges.pending_for_source(uow.conn, source.id):
            raise rules.already_pending()
        await merges.add_request(uow.conn, made)
        uow.audit(actor, note_line)
        return made

    try:
        return await ctx.services.transact(ask)
    except UniqueViolation:
        # A concurrent request for the same source committed between our check and insert.
        raise rules.already_pending() from None


async def _request(uow: UnitOfWork, viewer: Viewer, global_id: str) -> MergeRequest:
    found = await merges.request_by_id(
        uow.conn, viewer.agency_id, decode(global_id, "MergeRequest", "id")
    )
    if found is None:
        raise not_found("id", "merge request")
    return found


async def reject_merge(ctx: RequestContext, global_id: str) -> MergeRequest:
    viewer = await _administer(ctx)
    actor = await ctx.actor()
    now = ctx.services.clock()

    async def refuse(uow: UnitOfWork) -> MergeRequest:
        merge = await _request(uow, viewer, global_id)
        source, target = await lock_sub_accounts(
            uow, viewer, (merge.source_id, "id"), (merge.target_id, "id")
        )
        merge = await _request(uow, viewer, global_id)  # as of after the locks
        rejected, note = rules.reject(merge, source, target, viewer.user_id, actor.email or "", now)
        if not await merges.decide(uow.conn, rejected):
            raise _decided_meanwhile()
        uow.audit(actor, note)
        return rejected

    return await ctx.services.transact(refuse)


def _decided_meanwhile() -> DomainError:
    return DomainError(
        ErrorCode.MERGE_NOT_PENDING, "This merge request was decided already.", ("id",)
    )


async def approve_merge(ctx: RequestContext, global_id: str) -> MergeRequest:
    """In one transaction: the source's balances (converted by value), credits, lines,
    activities and grants to the target; the source MERGED, its history the target's.

    Locks follow docs/ARCHITECTURE.md: both sub-accounts (id order), their balances
    ((sub-account, tier) order), the source's lines (id order), then the guarded update of
    the request."""
    viewer = await _administer(ctx)
    actor = await ctx.actor()
    zone = (await ctx.require_session()).agency.time_zone
    now = ctx.services.clock()
    day = today(ctx, zone)
    prices = ctx.services.prices

    async def merge_now(uow: UnitOfWork) -> MergeRequest:
        merge = await _request(uow, viewer, global_id)
        source, target = await lock_sub_accounts(
            uow, viewer, (merge.source_id, "id"), (merge.target_id, "id")
        )
        # Read again under the locks: a concurrent decision has committed or waits for us.
        merge = await _request(uow, viewer, global_id)
        held = await ledger.balances_for_update(uow.conn, [source.id, target.id])
        source_seconds = {tier: held.get((source.id, tier), 0) for tier in Tier}
        source_lines = await lines.lines_of_for_update(uow.conn, source.id)
        approval = rules.approve(
            merge,
            source,
            target,
            viewer.user_id,
            actor.email or "",
            now,
            source_seconds,
            len(source_lines),
        )
        moves = move_everything(
            viewer.agency_id,
            source,
            target,
            source_seconds,
            prices,
            f"merge:{merge.id}",
            (LedgerKind.MERGE_OUT, LedgerKind.MERGE_IN),
        )
        if moves:
            await ledger.apply(uow.conn, moves, now)
        await _hand_over_lines(uow, source_lines, source, target, day)
        await merges.move_activities(uow.conn, source.id, target.id)
        for user_id in await merges.move_grants(uow.conn, source.id, target.id):
            uow.publish(access_changed(user_id))
        await agencies.stop_auto_allocation(uow.conn, source.id, now)
        await agencies.save_sub_account(uow.conn, approval.target)
        await agencies.save_sub_account(uow.conn, approval.source)
        await merges.roll_history(uow.conn, source.id, target.id, now)
        if not await merges.decide(uow.conn, approval.request):
            raise _decided_meanwhile()
        snapshots = await live.usage_snapshots(
            uow.conn, [approval.source, approval.target], zone, now
        )
        for snapshot in snapshots:
            uow.publish(usage_event(snapshot))
        uow.audit(actor, approval.note)
        return approval.request

    return await ctx.services.transact(merge_now)


async def _hand_over_lines(
    uow: UnitOfWork,
    held: list[line_rules.PhoneLine],
    source: SubAccount,
    target: SubAccount,
    day: date,
) -> None:
    """Each line moves as `assignLine` would move it on the approval day: the source's
    holding closed then, the target's opened then (billing follows from that day)."""
    if not held:
        return
    holdings = await lines.open_holdings(uow.conn, [line.id for line in held])
    for line, holding in zip(held, holdings, strict=True):
        move = line_rules.assign(line, holding, source, target, day)
        if move is not None:
            await lines.save_move(uow.conn, move.line, move.closed, move.opened)


async def requests_page(
    ctx: RequestContext,
    agency_id: UUID,
    status: MergeStatus | None,
    first: int | None,
    after: str | None,
) -> tuple[Page[MergeRequest], int]:
    viewer = await ctx.viewer()
    require(viewer, Action.ADMINISTER_SUB_ACCOUNTS, Target(agency_id))
    async with ctx.services.database.read() as conn:
        return await merges.requests_page(conn, agency_id, status, page_size(first), after)


async def merge_request_node(ctx: RequestContext, key: UUID) -> MergeRequest | None:
    """A request by its id, for those who may read the agency's requests; else None."""
    viewer = await ctx.viewer()
    async with ctx.services.database.read() as conn:
        found = await merges.request_by_id(conn, viewer.agency_id, key)
    if found is None or not _may_read_requests(viewer):
        return None
    return found


def _may_read_requests(viewer: Viewer) -> bool:
    return can(viewer, Action.ADMINISTER_SUB_ACCOUNTS, Target(viewer.agency_id))


async def merged_into(ctx: RequestContext, sub_account: SubAccount) -> SubAccount | None:
    """The account a MERGED one merged into (None for the others)."""
    if sub_account.status is not SubAccountStatus.MERGED:
        return None
    target_id = await ctx.loaders.merged_into_by_sub_account.load(sub_account.id)
    return None if target_id is None else await ctx.loaders.sub_account_by_id.load(target_id)
