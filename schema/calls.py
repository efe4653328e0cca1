"""The per-call list: `SubAccount.calls(range)`, each call with what it cost."""

from __future__ import annotations

from datetime import datetime

import strawberry

from domain import agency as entities
from domain.usage import RecordedCall
from resolvers import calls as use_cases
from resolvers.context import RequestContext
from schema.dates import DateRangeInput
from schema.money import Money
from schema.paging import PageInfo, edges, page_info
from schema.sub_account import SubAccount, TierEnum
from schema.usage import CallChannel, CallDirection, CallStatus

Info = strawberry.Info[RequestContext, None]


@strawberry.type(description="One call as it was billed.")
class Call:
    external_id: str
    started_at: datetime
    duration_seconds: int
    direction: CallDirection
    channel: CallChannel
    status: CallStatus
    tier: TierEnum
    overage_seconds: int = strawberry.field(
        description="Seconds that went over the funding balance."
    )
    cost: Money = strawberry.field(
        description="At this sub-account's client price; the calls of a range sum exactly to "
        "the report's spent."
    )
    base_cost: Money
    entity: strawberry.Private[RecordedCall]

    @strawberry.field(
        description="The sub-account whose balance paid (the primary under AGENCY billing)."
    )
    async def funded_by(self, info: Info) -> SubAccount:
        found = await info.context.loaders.sub_account_by_id.load(self.entity.funded_by)
        assert found is not None, "a funding sub-account is never deleted"
        return SubAccount.from_domain(found)

    @classmethod
    def from_domain(cls, call: RecordedCall) -> Call:
        return cls(
            external_id=call.external_id,
            started_at=call.started_at,
            duration_seconds=call.duration_seconds,
            direction=call.direction,
            channel=call.channel,
            status=call.status,
            tier=call.tier,
            overage_seconds=call.overage_seconds,
            cost=Money.of_micros(call.spent_micros),
            base_cost=Money.of_micros(call.cost_micros),
            entity=call,
        )


@strawberry.type
class CallEdge:
    node: Call
    cursor: str


@strawberry.type
class CallConnection:
    edges: list[CallEdge]
    page_info: PageInfo
    total_count: int


async def calls_connection(
    info: Info,
    sub_account: entities.SubAccount,
    range: DateRangeInput,
    first: int | None,
    after: str | None,
) -> CallConnection:
    page, total = await use_cases.calls_page(
        info.context, sub_account, range.from_, range.to, first, after
    )
    return CallConnection(
        edges=edges(page, CallEdge, Call.from_domain),
        page_info=page_info(page),
        total_count=total,
    )
