"""Live monitoring: usage, banners and agency totals, streamed from the broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from domain.agency import Agency, SubAccount
from domain.billing_cycle import period_started_at
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


async def _target(ctx: RequestContext, global_id: str, field: str) -> SubAccount:
    viewer = await ctx.viewer()
    sub_account = await ctx.loaders.sub_account_by_id.load(decode(global_id, "SubAccount", field))
    if sub_account is None or not may_read(viewer, sub_account):
        raise not_found(field, "sub-account")
    return sub_account


async def _usage_figures(
    ctx: RequestContext, sequence: int, key: UUID, zone: str
) -> tuple[SubAccount | None, list[Balance], int]:
    """The sub-account, its balances and this period's spending, read once per event."""

    async def build() -> tuple[SubAccount | None, list[Balance], int]:
        async with ctx.services.database.read() as conn:
            [sub_account] = await sub_accounts_by_id(conn, [key])
            if sub_account is None:
                return None, [], 0
            [balances] = await balances_by_sub_account(conn, [key])
            start = period_started_at(
                sub_account.subscription_start_date, ctx.services.clock(), zone
            )
            spent = await figures.spent_since(conn, key, start)
        return sub_account, balances, spent

    return await ctx.services.live.get(("usage", sequence), build)


async def usage_updated(
    ctx: RequestContext, sub_account_id: str | None, after: str | None
) -> AsyncIterator[UsageSnapshot]:
    """Every call, transfer or purchase touching a watched sub-account, with fresh figures.

    The figures are read once per event in each process and shared by every subscriber
    there; each subscriber's own permission is checked against them.
    """
    after_sequence = parse_sequence(after)
    only = (await _target(ctx, sub_account_id, "subAccountId")).id if sub_account_id else None
    only_key = str(only) if only is not None else None

    def check(viewer: Viewer) -> None:
        if only is None:
            require(viewer, Action.VIEW_AGENCY, Target(viewer.agency_id))

    def wanted(message: dict[str, Any]) -> bool:
        return message["kind"] in USAGE_KINDS and (
            only_key is None or message["payload"]["sub_account_id"] == only_key
        )

    messages = authorized_messages(
        ctx, lambda v: [agency_topic(v.agency_id)], check, after_sequence, wanted
    )
    async for message in messages:
        key = UUID(message["payload"]["sub_account_id"])
        zone = (await ctx.require_session()).agency.time_zone  # the topic's agency
        sub_account, balances, spent = await _usage_figures(ctx, message["sequence"], key, zone)
        viewer = await ctx.viewer()
        if sub_account is None or not can(
            viewer, Action.VIEW_SUB_ACCOUNT, sub_account_target(sub_account)
        ):
            continue  # not the viewer's to see
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


async def _agency_figures(ctx: RequestContext, sequence: int, agency: Agency) -> tuple[int, int]:
    """Seconds used this plan period and active sub-accounts, read once per event."""

    async def build() -> tuple[int, int]:
        start = period_started_at(agency.plan_started_on, ctx.services.clock(), agency.time_zone)
        async with ctx.services.database.read() as conn:
            seconds = await figures.agency_seconds_since(conn, agency.id, start)
            return seconds, await figures.active_sub_accounts(conn, agency.id)

    return await ctx.services.live.get(("totals", sequence), build)


async def agency_totals_updated(ctx: RequestContext) -> AsyncIterator[AgencyTotals]:
    def check(viewer: Viewer) -> None:
        require(viewer, Action.VIEW_AGENCY_DETAILS, Target(viewer.agency_id))

    def wanted(message: dict[str, Any]) -> bool:
        return bool(message["kind"] == "AGENCY_TOTALS_UPDATED")

    messages = authorized_messages(ctx, lambda v: [agency_topic(v.agency_id)], check, wanted=wanted)
    async for message in messages:
        agency = (await ctx.require_session()).agency
        seconds, active = await _agency_figures(ctx, message["sequence"], agency)
        yield AgencyTotals(message["sequence"], seconds, active)
