"""Campaigns, inbound agents and automations: created and switched inside a sub-account."""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID

from domain.activity import Activity
from domain.agency import SubAccount
from domain.audit import AuditKind, AuditNote, Subject
from domain.identity import check_name
from domain.paging import Page
from domain.policy import Action, require
from domain.sub_account import ActivityKind, ActivityStatus, check_changeable
from persistence import activities
from persistence.queries import activities as lists
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.global_id import from_global_id
from resolvers.ids import decode, not_found
from resolvers.paging import page_size
from resolvers.viewer import sub_account_target

TYPE_NAMES = {
    ActivityKind.CAMPAIGN: "Campaign",
    ActivityKind.INBOUND_AGENT: "InboundAgent",
    ActivityKind.AUTOMATION: "Automation",
}


def _described(kind: ActivityKind) -> str:
    return kind.value.lower().replace("_", " ")  # "inbound agent"


async def _workable(ctx: RequestContext, sub_account_id: UUID, field: str) -> SubAccount:
    viewer = await ctx.viewer()
    sub_account = await ctx.loaders.sub_account_by_id.load(sub_account_id)
    if sub_account is None or sub_account.agency_id != viewer.agency_id:
        raise not_found(field, "sub-account")
    require(viewer, Action.WORK_IN_SUB_ACCOUNT, sub_account_target(sub_account))
    check_changeable(sub_account, field)
    return sub_account


async def create_activity(
    ctx: RequestContext,
    sub_account_id: str,
    kind: ActivityKind,
    name: str,
    status: ActivityStatus | None,
) -> Activity:
    sub_account = await _workable(
        ctx, decode(sub_account_id, "SubAccount", "subAccountId"), "subAccountId"
    )
    name = check_name(name, "name")
    now = ctx.services.clock()
    actor = await ctx.actor()

    async def add(uow: UnitOfWork) -> Activity:
        activity = await activities.add_activity(
            uow.conn,
            sub_account.agency_id,
            sub_account.id,
            kind,
            name,
            status or ActivityStatus.ACTIVE,
            now,
        )
        summary = f"created the {_described(kind)} {name} in {sub_account.name}"
        uow.audit(
            actor,
            AuditNote(AuditKind.ACTIVITY_CREATED, summary, Subject(TYPE_NAMES[kind], activity.id)),
        )
        return activity

    return await ctx.services.transact(add)


def _decode_activity(global_id: str) -> tuple[str, UUID]:
    decoded = from_global_id(global_id)
    if decoded is None or decoded[0] not in TYPE_NAMES.values():
        raise not_found("id", "activity")
    return decoded


async def set_activity_status(
    ctx: RequestContext, global_id: str, status: ActivityStatus
) -> Activity:
    type_name, activity_id = _decode_activity(global_id)
    viewer = await ctx.viewer()
    async with ctx.services.database.read() as conn:
        activity = await activities.activity_by_id(conn, activity_id)
    if (
        activity is None
        or activity.agency_id != viewer.agency_id
        or TYPE_NAMES[activity.kind] != type_name
    ):
        raise not_found("id", "activity")
    sub_account = await _workable(ctx, activity.sub_account_id, "id")
    actor = await ctx.actor()

    async def switch(uow: UnitOfWork) -> None:
        await activities.set_status(uow.conn, activity.id, status)
        what = f"the {_described(activity.kind)} {activity.name} in {sub_account.name}"
        summary = f"set {what} to {status.value}"
        uow.audit(
            actor,
            AuditNote(
                AuditKind.ACTIVITY_STATUS_CHANGED,
                summary,
                Subject(TYPE_NAMES[activity.kind], activity.id),
            ),
        )

    await ctx.services.transact(switch)
    return replace(activity, status=status)


async def activities_page(
    ctx: RequestContext,
    sub_account: SubAccount,
    kind: ActivityKind,
    first: int | None,
    after: str | None,
) -> tuple[Page[Activity], int]:
    viewer = await ctx.viewer()
    require(viewer, Action.VIEW_SUB_ACCOUNT, sub_account_target(sub_account))
    async with ctx.services.database.read() as conn:
        return await lists.activities_page(conn, sub_account.id, kind, page_size(first), after)
