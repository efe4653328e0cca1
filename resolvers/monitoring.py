"""Live monitoring: usage, banners and agency totals, streamed from the broker.

Each event carries the figures as of the commit that raised it (domain/live.py), so a stream
reads nothing from the database per event: it decodes them once per process (the message's
memo, shared by every local subscriber) and checks each subscriber's own permission.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from domain import events
from domain.agency import SubAccount
from domain.events import (
    USAGE_KINDS,
    BannerChanged,
    EventKind,
    Payload,
    agency_topic,
    sub_account_topic,
)
from domain.live import AgencyTotals, UsageSnapshot
from domain.policy import Action, Target, Viewer, can, require
from persistence.broker import Message
from resolvers.context import RequestContext
from resolvers.ids import decode, not_found
from resolvers.live import authorized_messages, parse_sequence
from resolvers.viewer import may_read, sub_account_target


def payload_of(message: Message) -> Payload | None:
    """The message's payload, decoded once per process for every local subscriber. None for
    an event this version cannot read (written before events carried their figures)."""
    if "payload" not in message.memo:
        message.memo["payload"] = events.decode(message.kind, message.payload)
    payload: Payload | None = message.memo["payload"]
    return payload


def usage_of(message: Message) -> UsageSnapshot | None:
    payload = payload_of(message)
    return payload if isinstance(payload, UsageSnapshot) else None


def totals_of(message: Message) -> AgencyTotals | None:
    payload = payload_of(message)
    return payload if isinstance(payload, AgencyTotals) else None


async def _target(ctx: RequestContext, global_id: str, field: str) -> SubAccount:
    viewer = await ctx.viewer()
    sub_account = await ctx.loaders.sub_account_by_id.load(decode(global_id, "SubAccount", field))
    if sub_account is None or not may_read(viewer, sub_account):
        raise not_found(field, "sub-account")
    return sub_account


async def usage_updated(
    ctx: RequestContext, sub_account_id: str | None, after: str | None
) -> AsyncIterator[Message]:
    """Every call, transfer or removal touching a watched sub-account (one, or every one the
    viewer may see), with the figures right after that change: see `usage_of`."""
    after_sequence = parse_sequence(after)
    only = (await _target(ctx, sub_account_id, "subAccountId")).id if sub_account_id else None

    def check(viewer: Viewer) -> None:
        if only is None:
            require(viewer, Action.VIEW_AGENCY, Target(viewer.agency_id))

    def wanted(message: Message) -> bool:
        return message.kind in USAGE_KINDS

    viewer = await ctx.viewer()
    topic = agency_topic(viewer.agency_id)
    messages = authorized_messages(
        ctx,
        lambda v: [topic],
        check,
        after_sequence,
        wanted,
        keys={topic: str(only)} if only is not None else None,
    )
    async for message in messages:
        snapshot = usage_of(message)
        if snapshot is None:
            continue
        viewer = await ctx.viewer()
        if can(viewer, Action.VIEW_SUB_ACCOUNT, sub_account_target(snapshot.sub_account)):
            yield message


async def banner_changed(
    ctx: RequestContext, sub_account_id: str, after: str | None
) -> AsyncIterator[tuple[int, BannerChanged]]:
    after_sequence = parse_sequence(after)
    target = await _target(ctx, sub_account_id, "subAccountId")

    def check(viewer: Viewer) -> None:
        require(viewer, Action.VIEW_SUB_ACCOUNT, sub_account_target(target))

    def wanted(message: Message) -> bool:
        return message.kind == EventKind.BANNER_CHANGED

    messages = authorized_messages(
        ctx, lambda v: [sub_account_topic(target.id)], check, after_sequence, wanted
    )
    async for message in messages:
        changed = payload_of(message)
        if isinstance(changed, BannerChanged):
            yield message.sequence, changed


async def agency_totals_updated(ctx: RequestContext) -> AsyncIterator[Message]:
    """The agency's minutes this plan period and active sub-accounts, as of each batch of
    calls: see `totals_of`."""

    def check(viewer: Viewer) -> None:
        require(viewer, Action.VIEW_AGENCY_DETAILS, Target(viewer.agency_id))

    def wanted(message: Message) -> bool:
        return message.kind == EventKind.AGENCY_TOTALS_UPDATED

    messages = authorized_messages(ctx, lambda v: [agency_topic(v.agency_id)], check, None, wanted)
    async for message in messages:
        if totals_of(message) is not None:
            yield message
