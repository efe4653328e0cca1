"""Subscriptions for live screens: usage, banners and agency totals. Every event carries a
`sequence`; pass the last one seen as `afterSequence` to resume without losing any."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from decimal import Decimal

import strawberry

from domain.money import seconds_to_minutes
from resolvers import monitoring
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.money import Money
from schema.sub_account import Banner, MinuteBalance, SubAccount, wallet_of

Info = strawberry.Info[RequestContext, None]


@strawberry.type
class UsageEvent:
    sequence: str
    sub_account: SubAccount
    balances: list[MinuteBalance]
    wallet_balance: Money
    spent_this_period: Money


@strawberry.type
class BannerEvent:
    sequence: str
    sub_account_id: strawberry.ID
    banner: Banner


@strawberry.type
class AgencyTotalsEvent:
    sequence: str
    total_minutes_used_this_period: Decimal
    active_sub_accounts: int


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
        async for snap in monitoring.usage_updated(info.context, sub_account_id, after_sequence):
            yield UsageEvent(
                sequence=str(snap.sequence),
                sub_account=SubAccount.from_domain(snap.sub_account),
                balances=[MinuteBalance.from_domain(b) for b in snap.balances],
                wallet_balance=wallet_of(info, snap.sub_account, snap.balances),
                spent_this_period=Money.of_micros(snap.spent_this_period_micros),
            )

    @strawberry.subscription(description="The banner of a sub-account: suspend, restore, note.")
    async def banner_changed(
        self, info: Info, sub_account_id: strawberry.ID, after_sequence: str | None = None
    ) -> AsyncGenerator[BannerEvent, None]:
        async for snap in monitoring.banner_changed(info.context, sub_account_id, after_sequence):
            payload = snap.payload
            since = payload.get("since")
            yield BannerEvent(
                sequence=str(snap.sequence),
                sub_account_id=strawberry.ID(to_global_id("SubAccount", snap.sub_account_id)),
                banner=Banner(
                    active=bool(payload["active"]),
                    message=str(payload["message"]),
                    note=payload.get("note"),  # type: ignore[arg-type]
                    since=datetime.fromisoformat(since) if isinstance(since, str) else None,
                ),
            )

    @strawberry.subscription(description="Agency-wide figures for monitoring screens.")
    async def agency_totals_updated(self, info: Info) -> AsyncGenerator[AgencyTotalsEvent, None]:
        async for totals in monitoring.agency_totals_updated(info.context):
            yield AgencyTotalsEvent(
                sequence=str(totals.sequence),
                total_minutes_used_this_period=seconds_to_minutes(totals.seconds_this_period),
                active_sub_accounts=totals.active_sub_accounts,
            )
