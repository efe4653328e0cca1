"""The Account Manager: creating, editing, suspending, restoring and removing sub-accounts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from uuid import UUID

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from domain import sub_account as rules
from domain.agency import BalanceSource, SubAccount, SubAccountKind, SubAccountStatus
from domain.errors import DomainError, ErrorCode
from domain.events import BANNER_CHANGED, Event, sub_account_topic, usage_event
from domain.identity import check_name, normalize_email
from domain.ledger import Balance, LedgerKind
from domain.money import Tier
from domain.policy import POLICY, Action, Scope, Target, Viewer, require
from domain.pricing import markup_bp
from domain.transfer import plan_conversion
from persistence import activities, agencies, idempotency, ledger, live
from persistence.queries import sub_accounts as lists
from persistence.queries.paging import Page
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.ids import decode, not_found
from resolvers.paging import MAX_SUB_ACCOUNT_PAGE_SIZE, page_size

MAX_AUTO_ALLOCATION_MINUTES = 1_000_000


async def _administer(ctx: RequestContext) -> Viewer:
    viewer = await ctx.viewer()
    require(viewer, Action.ADMINISTER_SUB_ACCOUNTS, Target(viewer.agency_id))
    return viewer


async def lock_sub_accounts(
    uow: UnitOfWork, viewer: Viewer, *named: tuple[str | UUID, str]
) -> list[SubAccount]:
    """Sub-accounts by (global id or key, field), row-locked in id order so concurrent changes
    never deadlock; another agency's read exactly like a missing one."""
    keys = [k if isinstance(k, UUID) else decode(k, "SubAccount", field) for k, field in named]
    found = await agencies.sub_accounts_for_update(uow.conn, viewer.agency_id, sorted(set(keys)))
    for key, (_, field) in zip(keys, named, strict=True):
        if key not in found:
            raise not_found(field, "sub-account")
    return [found[k] for k in keys]


def banner_event(sub_account: SubAccount) -> Event:
    banner = rules.banner_of(sub_account)
    return Event(
        sub_account_topic(sub_account.id),
        BANNER_CHANGED,
        {
            "sub_account_id": str(sub_account.id),
            "active": banner.active,
            "message": banner.message,
            "note": banner.note,
            "since": banner.since.isoformat() if banner.since else None,
        },
    )


async def create_sub_account(
    ctx: RequestContext,
    name: str,
    login_email: str,
    start: date | None,
    markup_percent: Decimal | None,
) -> SubAccount:
    viewer = await _administer(ctx)
    name = check_name(name, "name")
    email = normalize_email(login_email, "loginEmail")
    markup = markup_bp(markup_percent) if markup_percent is not None else 0
    now = ctx.services.clock()

    async def create(uow: UnitOfWork) -> SubAccount:
        agency = await agencies.agency_for_update(uow.conn, viewer.agency_id)
        assert agency is not None
        rules.check_cap(agency, await agencies.live_secondaries(uow.conn, agency.id))
        if await agencies.email_in_use(uow.conn, email):
            raise DomainError(
                ErrorCode.EMAIL_TAKEN, "That email is already in use.", ("loginEmail",)
            )
        return await agencies.add_sub_account(
            uow.conn,
            agency.id,
            SubAccountKind.SECONDARY,
            name,
            email,
            start or now.date(),
            0,
            now,
            markup,
        )

    try:
        return await ctx.services.transact(create)
    except IntegrityError:
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
    values: dict[str, object] = {}
    if name is not None:
        values["name"] = check_name(name, "name")
    if login_email is not None:
        values["login_email"] = normalize_email(login_email, "loginEmail")
    if markup_percent is not None:
        bp = markup_bp(markup_percent)
        values.update(markup_basic_bp=bp, markup_premium_bp=bp)
    for tier, percent in (tier_markups or {}).items():
        if percent is not None:
            field = f"{tier.value.lower()}MarkupPercent"
            values[f"markup_{tier.value.lower()}_bp"] = markup_bp(percent, field)

    async def update(uow: UnitOfWork) -> SubAccount:
        [sub_account] = await lock_sub_accounts(uow, viewer, (global_id, "id"))
        rules.check_changeable(sub_account)
        if sub_account.is_primary and {"markup_basic_bp", "markup_premium_bp"} & set(values):
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                "The primary pays base cost: it has no markup.",
                ("markupPercent",),
            )
        email = values.get("login_email")
        if email not in (None, sub_account.login_email) and await agencies.email_in_use(
            uow.conn, str(email)
        ):
            raise DomainError(
                ErrorCode.EMAIL_TAKEN, "That email is already in use.", ("loginEmail",)
            )
        if values:
            await agencies.update_sub_account(uow.conn, sub_account.id, **values)
        return replace(sub_account, **values)  # type: ignore[arg-type]

    try:
        return await ctx.services.transact(update)
    except IntegrityError:
        raise DomainError(
            ErrorCode.EMAIL_TAKEN, "That email is already in use.", ("loginEmail",)
        ) from None


async def set_balance_source(
    ctx: RequestContext, global_id: str, source: BalanceSource
) -> SubAccount:
    viewer = await _administer(ctx)

    async def change(uow: UnitOfWork) -> SubAccount:
        [sub_account] = await lock_sub_accounts(uow, viewer, (global_id, "id"))
        rules.check_changeable(sub_account)
        if sub_account.is_primary:
            raise DomainError(
                ErrorCode.INVALID_INPUT, "The primary always pays from its own balance.", ("id",)
            )
        await agencies.update_sub_account(uow.conn, sub_account.id, balance_source=source.value)
        return replace(sub_account, balance_source=source)

    return await ctx.services.transact(change)


async def set_auto_allocation(
    ctx: RequestContext, global_id: str, enabled: bool, basic_minutes: int, premium_minutes: int
) -> SubAccount:
    viewer = await _administer(ctx)
    for value, field in ((basic_minutes, "basicMinutes"), (premium_minutes, "premiumMinutes")):
        if not 0 <= value <= MAX_AUTO_ALLOCATION_MINUTES:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"Between 0 and {MAX_AUTO_ALLOCATION_MINUTES} minutes.",
                (field,),
            )
    now = ctx.services.clock()

    async def store(uow: UnitOfWork) -> SubAccount:
        [sub_account] = await lock_sub_accounts(uow, viewer, (global_id, "subAccountId"))
        rules.check_changeable(sub_account, "subAccountId")
        if sub_account.is_primary:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                "Auto allocation buys minutes for a secondary.",
                ("subAccountId",),
            )
        values = {
            "sub_account_id": sub_account.id,
            "enabled": enabled,
            "basic_minutes": basic_minutes,
            "premium_minutes": premium_minutes,
            "updated_at": now,
        }
        dialect = postgresql if not uow.is_sqlite else sqlite
        upsert = dialect.insert(lists.auto_allocation_t).values(**values)
        await uow.conn.execute(
            upsert.on_conflict_do_update(
                index_elements=["sub_account_id"],
                set_={k: v for k, v in values.items() if k != "sub_account_id"},
            )
        )
        return sub_account

    return await ctx.services.transact(store)


async def suspend(ctx: RequestContext, global_id: str, note: str | None) -> SubAccount:
    """Pauses exactly what is active; a second suspend only edits the note on the banner."""
    viewer = await _administer(ctx)
    note = rules.check_note(note)
    now = ctx.services.clock()

    async def pause(uow: UnitOfWork) -> SubAccount:
        [sub_account] = await lock_sub_accounts(uow, viewer, (global_id, "id"))
        if sub_account.status is SubAccountStatus.SUSPENDED:
            suspended = replace(sub_account, suspension_note=note)
            await agencies.update_sub_account(uow.conn, sub_account.id, suspension_note=note)
        else:
            rules.check_suspendable(sub_account)
            suspended = replace(
                sub_account,
                status=SubAccountStatus.SUSPENDED,
                suspended_at=now,
                suspension_note=note,
            )
            await agencies.update_sub_account(
                uow.conn,
                sub_account.id,
                status="SUSPENDED",
                suspended_at=now,
                suspension_note=note,
            )
            await activities.pause_for_suspension(uow.conn, sub_account.id)
        uow.publish(banner_event(suspended))
        return suspended

    return await ctx.services.transact(pause)


async def restore(ctx: RequestContext, global_id: str) -> SubAccount:
    viewer = await _administer(ctx)

    async def resume(uow: UnitOfWork) -> SubAccount:
        [sub_account] = await lock_sub_accounts(uow, viewer, (global_id, "id"))
        rules.check_restorable(sub_account)
        await agencies.update_sub_account(
            uow.conn, sub_account.id, status="ACTIVE", suspended_at=None, suspension_note=None
        )
        await activities.resume_after_suspension(uow.conn, sub_account.id)
        restored = replace(
            sub_account, status=SubAccountStatus.ACTIVE, suspended_at=None, suspension_note=None
        )
        uow.publish(banner_event(restored))
        return restored

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
    if sub_account.is_primary:
        raise DomainError(
            ErrorCode.PRIMARY_NOT_REMOVABLE,
            "The primary sub-account cannot be removed.",
            ("subAccountId",),
        )
    balances = await ctx.loaders.balances_by_sub_account.load(sub_account.id)
    return RemovalPreview(balances, sub_account.knowledge_pack_credits, line_count=0)


async def release_lines(uow: UnitOfWork, sub_account: SubAccount, to_pool: bool) -> int:
    """Phone lines arrive with the partner-portal issue; until then a sub-account has none."""
    return 0


async def remove(
    ctx: RequestContext, global_id: str, minutes_to_id: str, lines_to_pool: bool
) -> SubAccount:
    """Minutes (value-converted) to the chosen account, KP credits to the primary, everything
    stopped, lines released, status REMOVED; kept for the retention period, then purged."""
    viewer = await _administer(ctx)
    now = ctx.services.clock()
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
        rules.check_removable(target, destination)
        # Both accounts' balances, locked in the global order before reading what to move:
        # a batch of calls may be debiting the target right now.
        held = await ledger.balances_for_update(uow.conn, [target.id, destination.id])
        reference = f"removal:{target.id}"
        moves = []
        for tier in Tier:
            if seconds := held.get((target.id, tier), 0):
                plan = plan_conversion(target, destination, tier, seconds, ctx.services.prices)
                moves += plan.movements(
                    viewer.agency_id,
                    target.id,
                    destination.id,
                    reference,
                    (LedgerKind.REMOVAL_OUT, LedgerKind.REMOVAL_IN),
                )
        if moves:
            await ledger.apply(uow.conn, moves, now)
        if target.knowledge_pack_credits:
            await agencies.update_sub_account(
                uow.conn,
                locked_primary.id,
                knowledge_pack_credits=locked_primary.knowledge_pack_credits
                + target.knowledge_pack_credits,
            )
        await activities.stop_all(uow.conn, target.id)
        await release_lines(uow, target, lines_to_pool)
        await uow.conn.execute(
            lists.auto_allocation_t.update()
            .where(lists.auto_allocation_t.c.sub_account_id == target.id)
            .values(enabled=False, updated_at=now)
        )
        await agencies.update_sub_account(
            uow.conn,
            target.id,
            status="REMOVED",
            removed_at=now,
            knowledge_pack_credits=0,
            suspended_at=None,
            suspension_note=None,
        )
        removed = replace(
            target,
            status=SubAccountStatus.REMOVED,
            removed_at=now,
            knowledge_pack_credits=0,
            suspended_at=None,
            suspension_note=None,
        )
        zone = (await ctx.require_session()).agency.time_zone
        for snapshot in await live.usage_snapshots(uow.conn, [destination], zone, now):
            uow.publish(usage_event(snapshot))
        uow.publish(banner_event(removed))
        return removed

    return await ctx.services.transact(close)


async def transfer_credits(
    ctx: RequestContext, from_id: str, to_id: str, credits: int, idempotency_key: str | None
) -> tuple[SubAccount, SubAccount]:
    """Whole Knowledge Pack credits between the primary and a secondary, never below zero."""
    viewer = await _administer(ctx)
    if credits <= 0:
        raise DomainError(ErrorCode.INVALID_INPUT, "Move at least one credit.", ("credits",))
    now = ctx.services.clock()
    scope = f"kp:{viewer.agency_id}"
    fingerprint = idempotency.request_hash("kp", {"from": from_id, "to": to_id, "n": credits})

    async def move(uow: UnitOfWork) -> tuple[SubAccount, SubAccount]:
        source, destination = await lock_sub_accounts(
            uow, viewer, (from_id, "fromId"), (to_id, "toId")
        )
        if idempotency_key and await idempotency.recall(
            uow.conn, scope, idempotency_key, fingerprint
        ):
            return source, destination  # a retry: moved once already
        if source.id == destination.id:
            raise DomainError(
                ErrorCode.SAME_SUBACCOUNT, "Choose two different sub-accounts.", ("toId",)
            )
        if not (source.is_primary or destination.is_primary):
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                "Credits move between the primary and a secondary.",
                ("toId",),
            )
        rules.check_changeable(source, "fromId")
        rules.check_changeable(destination, "toId")
        if source.knowledge_pack_credits < credits:
            raise DomainError(
                ErrorCode.INSUFFICIENT_CREDITS,
                f"Only {source.knowledge_pack_credits} credits are left.",
                ("credits",),
            )
        await agencies.update_sub_account(
            uow.conn, source.id, knowledge_pack_credits=source.knowledge_pack_credits - credits
        )
        await agencies.update_sub_account(
            uow.conn,
            destination.id,
            knowledge_pack_credits=destination.knowledge_pack_credits + credits,
        )
        if idempotency_key:
            await idempotency.remember(uow.conn, scope, idempotency_key, fingerprint, {}, now)
        return (
            replace(source, knowledge_pack_credits=source.knowledge_pack_credits - credits),
            replace(
                destination, knowledge_pack_credits=destination.knowledge_pack_credits + credits
            ),
        )

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
