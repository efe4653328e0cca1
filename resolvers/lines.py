"""Phone lines: adding them to the Available pool, assigning, moving and releasing them, and
reading the pool and a sub-account's lines. Every move closes one holding and opens the next
in the move's transaction, in agency-local days."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from uuid import UUID

from domain import lines as rules
from domain.agency import Agency, SubAccount
from domain.errors import DomainError, ErrorCode
from domain.lines import PhoneLine
from domain.paging import Page
from domain.policy import Action, Target, Viewer, can, require
from persistence import lines as store
from persistence.errors import UniqueViolation
from persistence.queries import lines as lists
from persistence.queries.loaders import sub_accounts_by_id
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.ids import decode, not_found
from resolvers.paging import page_size
from resolvers.sub_account import lock_sub_accounts
from resolvers.viewer import may_read, sub_account_target, today


async def _manager(ctx: RequestContext) -> Viewer:
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_LINES, Target(viewer.agency_id))
    return viewer


async def _local_today(ctx: RequestContext) -> date:
    """Holdings are agency-local days: a move at 23:30 in New York is that day's."""
    return today(ctx, (await ctx.require_session()).agency.time_zone)


def _taken(number: str, index: int) -> DomainError:
    return DomainError(
        ErrorCode.LINE_NUMBER_TAKEN,
        f"{number} is already a line of this agency.",
        ("numbers", str(index)),
    )


async def add_lines(
    ctx: RequestContext, raw_numbers: Sequence[str], monthly_price: Decimal
) -> list[PhoneLine]:
    """All or nothing: every number valid and free, or no line is added."""
    viewer = await _manager(ctx)
    actor = await ctx.actor()
    price = rules.check_monthly_price(monthly_price)
    numbers = rules.check_new_numbers(raw_numbers)
    day = await _local_today(ctx)
    now = ctx.services.clock()

    async def add(uow: UnitOfWork) -> list[PhoneLine]:
        taken = await store.taken_numbers(uow.conn, viewer.agency_id, numbers)
        rules.check_new_numbers(numbers, taken)  # the first taken one, with its index
        ids = [uuid.uuid4() for _ in numbers]
        added = rules.new_lines(ids, viewer.agency_id, numbers, price, now)
        await store.add_lines(uow.conn, added, rules.first_holdings(added, day))
        uow.audit(actor, rules.lines_added(added))
        return added

    try:
        return await ctx.services.transact(add)
    except UniqueViolation:
        # A concurrent addLines took one of these numbers between our check and our insert.
        async with ctx.services.database.read() as conn:
            taken = await store.taken_numbers(conn, viewer.agency_id, numbers)
        index = next((i for i, n in enumerate(numbers) if n in taken), 0)
        raise _taken(numbers[index], index) from None


async def _holder(uow: UnitOfWork, line: PhoneLine) -> SubAccount | None:
    """The locked line's holder as it is now (None: the pool). Not locked itself: a removal
    or merge of it takes the line's lock after its own, so it waits for this move and then
    no longer finds the line; a suspension that commits meanwhile reads no lines, so the move
    counts as made before it."""
    if line.sub_account_id is None:
        return None
    [holder] = await sub_accounts_by_id(uow.conn, [line.sub_account_id])
    assert holder is not None, "a line's holder is never deleted"
    return holder


async def assign_line(
    ctx: RequestContext, line_global_id: str, sub_account_global_id: str | None
) -> PhoneLine:
    """To a sub-account, from the pool or another one; or back to the pool (None).

    Locks in the global order (docs/ARCHITECTURE.md): the target sub-account, then the line.
    Two assignments of one line queue on the line's row, so each closes the holding the
    other opened and the history stays one chain."""
    viewer = await _manager(ctx)
    actor = await ctx.actor()
    line_id = decode(line_global_id, "PhoneLine", "lineId")
    target_id = (
        None
        if sub_account_global_id is None
        else decode(sub_account_global_id, "SubAccount", "subAccountId")
    )
    day = await _local_today(ctx)

    async def move(uow: UnitOfWork) -> PhoneLine:
        target = None
        if target_id is not None:
            [target] = await lock_sub_accounts(uow, viewer, (target_id, "subAccountId"))
        line = await store.line_for_update(uow.conn, viewer.agency_id, line_id)
        if line is None:
            raise not_found("lineId", "line")
        [holding] = await store.open_holdings(uow.conn, [line.id])
        moved = rules.assign(line, holding, await _holder(uow, line), target, day)
        if moved is None:
            uow.nothing_changed()  # there already
            return line
        await store.save_move(uow.conn, moved.line, moved.closed, moved.opened)
        uow.audit(actor, moved.note)
        return moved.line

    return await ctx.services.transact(move)


async def release_line(ctx: RequestContext, line_global_id: str) -> UUID:
    """Deleted for good; its holdings stay for past billing."""
    viewer = await _manager(ctx)
    actor = await ctx.actor()
    line_id = decode(line_global_id, "PhoneLine", "lineId")
    day = await _local_today(ctx)
    now = ctx.services.clock()

    async def release(uow: UnitOfWork) -> UUID:
        line = await store.line_for_update(uow.conn, viewer.agency_id, line_id)
        if line is None:
            raise not_found("lineId", "line")
        [holding] = await store.open_holdings(uow.conn, [line.id])
        closed, note = rules.release(line, holding, await _holder(uow, line), day)
        await store.release(uow.conn, line.agency_id, [closed], now)
        uow.audit(actor, note)
        return line.id

    return await ctx.services.transact(release)


async def available_lines_page(
    ctx: RequestContext, agency: Agency, first: int | None, after: str | None
) -> tuple[Page[PhoneLine], int]:
    """The pool is the agency's: whoever sees its details (agency roles) sees it."""
    viewer = await ctx.viewer()
    require(viewer, Action.VIEW_AGENCY_DETAILS, Target(agency.id))
    async with ctx.services.database.read() as conn:
        return await lists.lines_page(conn, agency.id, None, page_size(first), after)


async def lines_page(
    ctx: RequestContext, sub_account: SubAccount, first: int | None, after: str | None
) -> tuple[Page[PhoneLine], int]:
    viewer = await ctx.viewer()
    require(viewer, Action.VIEW_SUB_ACCOUNT, sub_account_target(sub_account))
    async with ctx.services.database.read() as conn:
        return await lists.lines_page(
            conn, sub_account.agency_id, sub_account.id, page_size(first), after
        )


async def line_count(ctx: RequestContext, sub_account: SubAccount) -> int:
    viewer = await ctx.viewer()
    require(viewer, Action.VIEW_SUB_ACCOUNT, sub_account_target(sub_account))
    return await ctx.loaders.line_count_by_sub_account.load(sub_account.id)


async def may_see(ctx: RequestContext, line: PhoneLine) -> bool:
    """A pool line: whoever sees the agency's details; a held one: whoever reads its holder."""
    viewer = await ctx.viewer()
    if line.agency_id != viewer.agency_id:
        return False
    if line.sub_account_id is None:
        return can(viewer, Action.VIEW_AGENCY_DETAILS, Target(line.agency_id))
    holder = await ctx.loaders.sub_account_by_id.load(line.sub_account_id)
    return holder is not None and may_read(viewer, holder)


async def line_node(ctx: RequestContext, key: UUID) -> PhoneLine | None:
    async with ctx.services.database.read() as conn:
        line = await store.line_by_id(conn, key)
    return line if line is not None and await may_see(ctx, line) else None
