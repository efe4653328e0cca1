"""The Account Manager: creating, editing, suspending, restoring and removing sub-accounts."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

from domain import auto_allocation
from domain import lines as line_rules
from domain import sub_account as rules
from domain.agency import BalanceSource, SubAccount, SubAccountKind, SubAccountStatus
from domain.audit import Actor, AuditKind, AuditNote
from domain.errors import DomainError, ErrorCode
from domain.events import Changed, usage_event
from domain.identity import check_name, normalize_email
from domain.ledger import Balance, LedgerKind
from domain.money import Tier
from domain.paging import Page
from domain.policy import POLICY, Action, Scope, Target, Viewer, require
from domain.pricing import markup_bp
from domain.transfer import move_everything
from persistence import activities, agencies, idempotency, ledger, lines, live
from persistence.errors import UniqueViolation
from persistence.queries import sub_accounts as lists
from persistence.unit_of_work import UnitOfWork
from resolvers import webhooks
from resolvers.context import RequestContext
from resolvers.ids import decode, not_found
from resolvers.paging import MAX_SUB_ACCOUNT_PAGE_SIZE, page_size
from resolvers.viewer import today


async def _administer(ctx: RequestContext) -> Viewer:
    viewer = await ctx.viewer()
    require(viewer, Action.ADMINISTER_SUB_ACCOUNTS, Target(viewer.agency_id))
    return viewer


async def lock_sub_accounts(
    uow: UnitOfWork, viewer: Viewer, *named: tuple[str | UUID, str], share: bool = False
) -> list[SubAccount]:
    """Sub-accounts by (global id or key, field), row-locked in id order so concurrent changes
    never deadlock; another agency's read exactly like a missing one. `share`: for a change
    that leaves the rows themselves alone (`agencies.sub_accounts_for_update`)."""
    keys = [k if isinstance(k, UUID) else decode(k, "SubAccount", field) for k, field in named]
    found = await agencies.sub_accounts_for_update(
        uow.conn, viewer.agency_id, sorted(set(keys)), share=share
    )
    for key, (_, field) in zip(keys, named, strict=True):
        if key not in found:
            raise not_found(field, "sub-account")
    return [found[k] for k in keys]


def _saved(uow: UnitOfWork, actor: Actor, changed: Changed[SubAccount]) -> SubAccount:
    """Hand a transition's events and audit line to the unit of work; its state is saved by
    the caller (`agencies.save_sub_account`)."""
    uow.record(changed.events)
    uow.audit(actor, changed.note)
    return changed.state


async def create_sub_account(
    ctx: RequestContext,
    name: str,
    login_email: str,
    start: date | None,
    markup_percent: Decimal | None,
) -> SubAccount:
    viewer = await _administer(ctx)
    actor = await ctx.actor()
    name = check_name(name, "name")
    email = normalize_email(login_email, "loginEmail")
    markup = markup_bp(markup_percent) if markup_percent is not None else 0
    now = ctx.services.clock()
    local_today = today(ctx, (await ctx.require_session()).agency.time_zone)

    async def create(uow: UnitOfWork) -> SubAccount:
        agency = await agencies.agency_for_update(uow.conn, viewer.agency_id)
        assert agency is not None
        rules.check_cap(agency, await agencies.live_secondaries(uow.conn, agency.id))
        await _check_email_free(uow, email)
        created = await agencies.add_sub_account(
            uow.conn,
            agency.id,
            SubAccountKind.SECONDARY,
            name,
            email,
            start or local_today,  # the anchor is a date in the agency's zone
            0,
            now,
            markup,
        )
        uow.audit(
            actor,
            AuditNote(
                AuditKind.SUBACCOUNT_CREATED,
                f"created the sub-account {name} (login {email})",
                rules.subject(created),
            ),
        )
        return created

    return await _email_unique(ctx.services.transact(create))


async def _check_email_free(uow: UnitOfWork, email: str) -> None:
    if await agencies.email_in_use(uow.conn, email):
        raise DomainError(ErrorCode.EMAIL_TAKEN, "That email is already in use.", ("loginEmail",))


async def _email_unique(saving: Awaitable[SubAccount]) -> SubAccount:
    """A login email taken by a concurrent request shows as the unique index refusing it."""
    try:
        return await saving
    except UniqueViolation:
        raise DomainError(
            ErrorCode.EMAIL_TAKEN, "That email is already in use.", ("loginEmail",)
        ) from None


async def update_sub_account(
    ctx: RequestContext,
    global_id: str,
    name: str | None,
    login_email: str | None,
    markup_percent: Decimal | None,
    tier_markups: dict[Tier, Decimal | None] | None = None,
) -> SubAccount:
    """`markup_percent` sets both tiers; `tier_markups` then overrides one tier or both."""
    viewer = await _administer(ctx)
    actor = await ctx.actor()
    name = None if name is None else check_name(name, "name")
    email = None if login_email is None else normalize_email(login_email, "loginEmail")
    markups: dict[str, int] = {}
    if markup_percent is not None:
        bp = markup_bp(markup_percent)
        markups.update(markup_basic_bp=bp, markup_premium_bp=bp)
    for tier, percent in (tier_markups or {}).items():
        if percent is not None:
            field = f"{tier.value.lower()}MarkupPercent"
            markups[f"markup_{tier.value.lower()}_bp"] = markup_bp(percent, field)

    async def update(uow: UnitOfWork) -> SubAccount:
        [sub_account] = await lock_sub_accounts(uow, viewer, (global_id, "id"))
        changed = rules.edit(sub_account, name, email, markups)
        if changed.state == sub_account:
            uow.nothing_changed()  # saved as it was: nothing to log
            return sub_account
        if changed.state.login_email != sub_account.login_email:
            await _check_email_free(uow, changed.state.login_email)
        await agencies.save_sub_account(uow.conn, changed.state)
        return _saved(uow, actor, changed)

    return await _email_unique(ctx.services.transact(update))


async def set_balance_source(
    ctx: RequestContext, global_id: str, source: BalanceSource
) -> SubAccount:
    viewer = await _administer(ctx)
    actor = await ctx.actor()

    async def change(uow: UnitOfWork) -> SubAccount:
        [sub_account] = await lock_sub_accounts(uow, viewer, (global_id, "id"))
        changed = rules.set_balance_source(sub_account, source)
        await agencies.save_sub_account(uow.conn, changed.state)
        return _saved(uow, actor, changed)

    return await ctx.services.transact(change)


async def set_auto_allocation(
    ctx: RequestContext, global_id: str, enabled: bool, basic_minutes: int, premium_minutes: int
) -> SubAccount:
    viewer = await _administer(ctx)
    actor = await ctx.actor()
    agency = await ctx.loaders.agency_by_id.load(viewer.agency_id)
    assert agency is not None
    now = ctx.services.clock()

    async def store(uow: UnitOfWork) -> SubAccount:
        [sub_account] = await lock_sub_accounts(uow, viewer, (global_id, "subAccountId"))
        rules.check_auto_allocatable(sub_account)
        [current] = await lists.auto_allocations(uow.conn, [sub_account.id])
        allocation = auto_allocation.configure(
            current,
            enabled,
            basic_minutes,
            premium_minutes,
            today(ctx, agency.time_zone),
            ctx.services.prices,
        )
        await agencies.save_auto_allocation(uow.conn, sub_account.id, allocation, now)
        summary = (
            f"set the auto allocation of {sub_account.name} to {basic_minutes} BASIC and "
            f"{premium_minutes} PREMIUM minutes a month"
            if enabled
            else f"turned the auto allocation of {sub_account.name} off"
        )
        uow.audit(
            actor,
            AuditNote(AuditKind.AUTO_ALLOCATION_CHANGED, summary, rules.subject(sub_account)),
        )
        return sub_account

    return await ctx.services.transact(store)


async def suspend(ctx: RequestContext, global_id: str, note: str | None) -> SubAccount:
    """Pauses exactly what is active; a second suspend only edits the note on the banner."""
    viewer = await _administer(ctx)
    actor = await ctx.actor()
    note = rules.check_note(note)
    now = ctx.services.clock()

    async def pause(uow: UnitOfWork) -> SubAccount:
        [sub_account] = await lock_sub_accounts(uow, viewer, (global_id, "id"))
        changed = rules.suspend(sub_account, note, now)
        await agencies.save_sub_account(uow.conn, changed.state)
        if sub_account.status is not SubAccountStatus.SUSPENDED:
            await activities.pause_for_suspension(uow.conn, sub_account.id)
            uow.notify(webhooks.suspended(changed.state, note))
        return _saved(uow, actor, changed)

    return await ctx.services.transact(pause)


async def restore(ctx: RequestContext, global_id: str) -> SubAccount:
    viewer = await _administer(ctx)
    actor = await ctx.actor()

    async def resume(uow: UnitOfWork) -> SubAccount:
        [sub_account] = await lock_sub_accounts(uow, viewer, (global_id, "id"))
        changed = rules.restore(sub_account)
        await agencies.save_sub_account(uow.conn, changed.state)
        await activities.resume_after_suspension(uow.conn, sub_account.id)
        uow.notify(webhooks.restored(changed.state))
        return _saved(uow, actor, changed)

    return await ctx.services.transact(resume)


@dataclass(frozen=True)
class RemovalPreview:
    balances: list[Balance]
    knowledge_pack_credits: int
    line_count: int


async def removal_preview(ctx: RequestContext, global_id: str) -> RemovalPreview:
    viewer = await _administer(ctx)
    sub_account = await ctx.loaders.sub_account_by_id.load(decode(global_id, "SubAccount", "id"))
    if sub_account is None or sub_account.agency_id != viewer.agency_id:
        raise not_found("subAccountId", "sub-account")
    rules.check_previewable(sub_account)
    balances = await ctx.loaders.balances_by_sub_account.load(sub_account.id)
    line_count = await ctx.loaders.line_count_by_sub_account.load(sub_account.id)
    return RemovalPreview(balances, sub_account.knowledge_pack_credits, line_count)


async def release_lines(
    uow: UnitOfWork, sub_account: SubAccount, to_pool: bool, day: date, now: datetime
) -> int:
    """A removal's lines (the caller holds the sub-account's lock; the lines are locked after
    it, in id order): released, or moved to the pool, in the removal's transaction. Returns
    how many there were."""
    held = await lines.lines_of_for_update(uow.conn, sub_account.id)
    if not held:
        return 0
    holdings = await lines.open_holdings(uow.conn, [line.id for line in held])
    closed, opened = line_rules.released_with(holdings, to_pool, day)
    await lines.release(uow.conn, sub_account.agency_id, closed, now, opened)
    return len(held)


async def remove(
    ctx: RequestContext, global_id: str, minutes_to_id: str, lines_to_pool: bool
) -> SubAccount:
    """Minutes (value-converted) to the chosen account, KP credits to the primary, everything
    stopped, lines released, status REMOVED; kept for the retention period, then purged."""
    viewer = await _administer(ctx)
    actor = await ctx.actor()
    zone = (await ctx.require_session()).agency.time_zone
    now = ctx.services.clock()
    local_today = today(ctx, zone)
    primary = await ctx.loaders.primary_sub_account_by_agency.load(viewer.agency_id)
    assert primary is not None

    async def close(uow: UnitOfWork) -> SubAccount:
        target, destination, locked_primary = await lock_sub_accounts(
            uow,
            viewer,
            (global_id, "id"),
            (minutes_to_id, "minutesToId"),
            (primary.id, "id"),
        )
        # Both accounts' balances, locked in the global order before reading what to move:
        # a batch of calls may be debiting the target right now.
        held = await ledger.balances_for_update(uow.conn, [target.id, destination.id])
        changed = rules.remove(
            target, destination, {tier: held.get((target.id, tier), 0) for tier in Tier}, now
        )
        moves = move_everything(
            viewer.agency_id,
            target,
            destination,
            {tier: held.get((target.id, tier), 0) for tier in Tier},
            ctx.services.prices,
            f"removal:{target.id}",
            (LedgerKind.REMOVAL_OUT, LedgerKind.REMOVAL_IN),
        )
        if moves:
            await ledger.apply(uow.conn, moves, now)
        if target.knowledge_pack_credits:
            await agencies.save_sub_account(
                uow.conn,
                replace(
                    locked_primary,
                    knowledge_pack_credits=locked_primary.knowledge_pack_credits
                    + target.knowledge_pack_credits,
                ),
            )
        await activities.stop_all(uow.conn, target.id)
        released = await release_lines(uow, target, lines_to_pool, local_today, now)
        await agencies.stop_auto_allocation(uow.conn, target.id, now)
        await agencies.save_sub_account(uow.conn, changed.state)
        for snapshot in await live.usage_snapshots(uow.conn, [destination], zone, now):
            uow.publish(usage_event(snapshot))
        summary = changed.note.summary + line_rules.removal_text(released, lines_to_pool)
        return _saved(uow, actor, replace(changed, note=replace(changed.note, summary=summary)))

    return await ctx.services.transact(close)


async def transfer_credits(
    ctx: RequestContext, from_id: str, to_id: str, credits: int, idempotency_key: str | None
) -> tuple[SubAccount, SubAccount]:
    """Whole Knowledge Pack credits between the primary and a secondary, never below zero;
    idempotent on the key (a concurrent twin with the same key answers like a retry)."""
    viewer = await _administer(ctx)
    actor = await ctx.actor()
    now = ctx.services.clock()
    scope = f"kp:{viewer.agency_id}"
    fingerprint = idempotency.request_hash("kp", {"from": from_id, "to": to_id, "n": credits})

    async def move(uow: UnitOfWork) -> tuple[SubAccount, SubAccount]:
        source, destination = await lock_sub_accounts(
            uow, viewer, (from_id, "fromId"), (to_id, "toId")
        )
        # The stored answer is `{}`: a retry is told by the key being there, not by its answer.
        if (
            idempotency_key
            and await idempotency.recall(uow.conn, scope, idempotency_key, fingerprint) is not None
        ):
            uow.nothing_changed()  # a retry: moved once already
            return source, destination
        changed = rules.move_credits(source, destination, credits)
        for sub_account in changed.state:
            await agencies.save_sub_account(uow.conn, sub_account)
        if idempotency_key:
            await idempotency.remember(uow.conn, scope, idempotency_key, fingerprint, {}, now)
        uow.audit(actor, changed.note)
        return changed.state

    try:
        return await ctx.services.transact(move)
    except UniqueViolation:
        if not idempotency_key:
            raise
        # A concurrent twin with the same key committed first: this is its retry.
        return await ctx.services.transact(move)


async def sub_accounts_page(
    ctx: RequestContext,
    agency_id: UUID,
    status: SubAccountStatus | None,
    first: int | None,
    after: str | None,
) -> tuple[Page[SubAccount], int]:
    viewer = await ctx.viewer()
    require(viewer, Action.VIEW_AGENCY_DETAILS, Target(agency_id))
    if status in (SubAccountStatus.REMOVED, SubAccountStatus.MERGED):
        require(viewer, Action.ADMINISTER_SUB_ACCOUNTS, Target(agency_id))
    visible = await _visible(ctx, viewer)
    size = page_size(first, MAX_SUB_ACCOUNT_PAGE_SIZE)
    async with ctx.services.database.read() as conn:
        page = await lists.sub_accounts_page(conn, agency_id, status, visible, size, after)
        total = await lists.count_sub_accounts(conn, agency_id, status, visible)
    return page, total


async def _visible(ctx: RequestContext, viewer: Viewer) -> frozenset[UUID] | None:
    """None when the viewer sees every sub-account; else the primary and the granted ones."""
    if POLICY[viewer.role].get(Action.VIEW_SUB_ACCOUNT) is Scope.AGENCY:
        return None
    session = await ctx.require_session()
    own = {session.primary.id} if session.primary is not None else set()
    return frozenset(own | viewer.sub_account_ids)


async def slots(ctx: RequestContext, agency_id: UUID) -> tuple[int, int | None]:
    viewer = await ctx.viewer()
    require(viewer, Action.VIEW_AGENCY_DETAILS, Target(agency_id))
    session = await ctx.require_session()
    async with ctx.services.database.read() as conn:
        used = await agencies.live_secondaries(conn, agency_id)
    return used, rules.slots_available(session.agency, used)
