"""Live monitoring: usage, banners and agency totals, streamed from the broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, time
from uuid import UUID

from domain.agency import SubAccount
from domain.billing_cycle import period_start
from domain.events import USAGE_KINDS, agency_topic, sub_account_topic
from domain.ledger import Balance
from domain.policy import Action, Target, Viewer, can, require
from persistence.queries import monitoring as figures
from persistence.queries.loaders import balances_by_sub_account, sub_accounts_by_id
from resolvers.context import RequestContext
from resolvers.ids import decode, not_found
from resolvers.live import authorized_messages, parse_sequence
from resolvers.viewer import may_read, sub_account_target


@dataclass(frozen=True)
class UsageSnapshot:
    sequence: int
    sub_account: SubAccount
    balances: list[Balance]
    spent_this_period_micros: int


@dataclass(frozen=True)
class BannerSnapshot:
    sequence: int
    sub_account_id: UUID
    payload: dict[str, object]


@dataclass(frozen=True)
class AgencyTotals:
    sequence: int
    seconds_this_period: int
    active_sub_accounts: int


def _start_of(day: object) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)  # type: ignore[arg-type]


async def _target(ctx: RequestContext, global_id: str, field: str) -> SubAccount:
    viewer = await ctx.viewer()
    sub_account = await ctx.loaders.sub_account_by_id.load(decode(global_id, "SubAccount", field))
    if sub_account is None or not may_read(viewer, sub_account):
        raise not_found(field, "sub-account")
    return sub_account


async def usage_updated(
    ctx: RequestContext, sub_account_id: str | None, after: str | None
) -> AsyncIterator[UsageSnapshot]:
    """Every call, transfer or purchase touching a watched sub-account, with fresh figures."""
    after_sequence = parse_sequence(after)
    only = (await _target(ctx, sub_account_id, "subAccountId")).id if sub_account_id else None

    def check(viewer: Viewer) -> None:
        if only is None:
            require(viewer, Action.VIEW_AGENCY, Target(viewer.agency_id))

    messages = authorized_messages(
        ctx, lambda v: [agency_topic(v.agency_id)], check, after_sequence
    )
    async for message in messages:
        if message["kind"] not in USAGE_KINDS:
            continue
        key = UUID(message["payload"]["sub_account_id"])
        if only is not None and key != only:
            continue
        viewer = await ctx.viewer()
        async with ctx.services.database.read() as conn:
            [sub_account] = await sub_accounts_by_id(conn, [key])
            if sub_account is None or not can(
                viewer, Action.VIEW_SUB_ACCOUNT, sub_account_target(sub_account)
            ):
                continue  # not the viewer's to see
            [balances] = await balances_by_sub_account(conn, [key])
            start = period_start(sub_account.subscription_start_date, ctx.services.clock().date())
            spent = await figures.spent_since(conn, key, _start_of(start))
        yield UsageSnapshot(message["sequence"], sub_account, balances, spent)


async def banner_changed(
    ctx: RequestContext, sub_account_id: str, after: str | None
) -> AsyncIterator[BannerSnapshot]:
    after_sequence = parse_sequence(after)
    target = await _target(ctx, sub_account_id, "subAccountId")

    def check(viewer: Viewer) -> None:
        require(viewer, Action.VIEW_SUB_ACCOUNT, sub_account_target(target))

    messages = authorized_messages(
        ctx, lambda v: [sub_account_topic(target.id)], check, after_sequence
    )
    async for message in messages:
        if message["kind"] == "BANNER_CHANGED":
            yield BannerSnapshot(message["sequence"], target.id, message["payload"])


async def agency_totals_updated(ctx: RequestContext) -> AsyncIterator[AgencyTotals]:
    def check(viewer: Viewer) -> None:
        require(viewer, Action.VIEW_AGENCY_DETAILS, Target(viewer.agency_id))

    messages = authorized_messages(ctx, lambda v: [agency_topic(v.agency_id)], check)
    async for message in messages:
        if message["kind"] != "AGENCY_TOTALS_UPDATED":
            continue
        session = await ctx.require_session()
        today = ctx.services.clock().date()
        start = period_start(session.agency.plan_started_on, today)
        async with ctx.services.database.read() as conn:
            seconds = await figures.agency_seconds_since(conn, session.agency.id, _start_of(start))
            active = await figures.active_sub_accounts(conn, session.agency.id)
        yield AgencyTotals(message["sequence"], seconds, active)
