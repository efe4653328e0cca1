"""Subscriptions for live screens: usage, banners and agency totals. Every event carries a
`sequence`; pass the last one seen as `afterSequence` to resume without losing any.

An event's GraphQL object is built once per process and shared by every subscriber there
(`shared_event`); `schema.sharing` then executes a selection once per event for subscribers
with the same query, variables and access.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

import strawberry

from domain.money import seconds_to_minutes
from resolvers import monitoring
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from resolvers.live import Message
from schema.money import Money
from schema.sharing import SharedResults
from schema.sub_account import Banner, MinuteBalance, SubAccount, TierEnum, wallet_of
from schema.usage import CallDirection, CallStatus

Info = strawberry.Info[RequestContext, None]
T = TypeVar("T")


@strawberry.type(description="The latest-starting call of the change that raised an event.")
class LiveCall:
    external_id: str
    started_at: datetime
    duration_seconds: int
    tier: TierEnum
    direction: CallDirection
    status: CallStatus
    overage_seconds: int = strawberry.field(
        description="Seconds of this call the balance could not cover."
    )


@strawberry.type(
    description="A sub-account's figures right after a change to them (a call, a transfer, "
    "a removal), as of that change's commit."
)
class UsageEvent(SharedResults):
    sequence: str
    sub_account: SubAccount
    balances: list[MinuteBalance]
    wallet_balance: Money
    spent_this_period: Money
    minutes_this_period: Decimal = strawberry.field(
        description="Minutes the sub-account's calls used in its current billing period."
    )
    last_call: LiveCall | None = strawberry.field(
        description="Null when the change was not a recorded call (a transfer, a removal)."
    )


@strawberry.type
class BannerEvent:
    sequence: str
    sub_account_id: strawberry.ID
    banner: Banner


@strawberry.type
class AgencyTotalsEvent(SharedResults):
    sequence: str
    total_minutes_used_this_period: Decimal
    active_sub_accounts: int


def _usage_event(info: Info, message: Message) -> UsageEvent:
    snapshot = monitoring.usage_of(message)
    assert snapshot is not None
    balances = list(snapshot.balances)
    call = snapshot.last_call
    return UsageEvent(
        sequence=str(message.sequence),
        sub_account=SubAccount.from_domain(snapshot.sub_account, held=snapshot.balances),
        balances=[MinuteBalance.from_domain(b) for b in balances],
        wallet_balance=wallet_of(info, snapshot.sub_account, balances),
        spent_this_period=Money.of_micros(snapshot.spent_this_period_micros),
        minutes_this_period=seconds_to_minutes(snapshot.seconds_this_period),
        last_call=None
        if call is None
        else LiveCall(
            external_id=call.external_id,
            started_at=call.started_at,
            duration_seconds=call.duration_seconds,
            tier=call.tier,
            direction=call.direction,
            status=call.status,
            overage_seconds=call.overage_seconds,
        ),
    )


def _totals_event(info: Info, message: Message) -> AgencyTotalsEvent:
    totals = monitoring.totals_of(message)
    assert totals is not None
    return AgencyTotalsEvent(
        sequence=str(message.sequence),
        total_minutes_used_this_period=seconds_to_minutes(totals.seconds_this_period),
        active_sub_accounts=totals.active_sub_accounts,
    )


def shared_event(info: Info, message: Message, make: Callable[[Info, Message], T]) -> T:
    """The message's GraphQL object, built by the first local subscriber, then shared."""
    found: T | None = message.memo.get(make)
    if found is None:
        found = message.memo[make] = make(info, message)
    return found


@strawberry.type
class MonitoringSubscriptions:
    @strawberry.subscription(
        description="Balances, wallet and spending of one sub-account, or "
        "of every sub-account the viewer may see, on every change."
    )
    async def usage_updated(
        self,
        info: Info,
        sub_account_id: strawberry.ID | None = None,
        after_sequence: str | None = None,
    ) -> AsyncGenerator[UsageEvent, None]:
        async for message in monitoring.usage_updated(info.context, sub_account_id, after_sequence):
            yield shared_event(info, message, _usage_event)

    @strawberry.subscription(description="The banner of a sub-account: suspend, restore, note.")
    async def banner_changed(
        self, info: Info, sub_account_id: strawberry.ID, after_sequence: str | None = None
    ) -> AsyncGenerator[BannerEvent, None]:
        async for sequence, changed in monitoring.banner_changed(
            info.context, sub_account_id, after_sequence
        ):
            yield BannerEvent(
                sequence=str(sequence),
                sub_account_id=strawberry.ID(to_global_id("SubAccount", changed.sub_account_id)),
                banner=Banner.from_domain(changed.banner),
            )

    @strawberry.subscription(description="Agency-wide figures for monitoring screens.")
    async def agency_totals_updated(self, info: Info) -> AsyncGenerator[AgencyTotalsEvent, None]:
        async for message in monitoring.agency_totals_updated(info.context):
            yield shared_event(info, message, _totals_event)
