"""Reports: per sub-account and per agency, over an inclusive date range in the agency's zone."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

import strawberry

from domain import reporting
from domain.agency import Agency as AgencyEntity
from domain.agency import SubAccount as SubAccountEntity
from domain.money import Tier, seconds_to_minutes
from domain.usage import CallStatus as CallStatusValue
from resolvers import lines as line_use_cases
from resolvers import reports
from resolvers import viewer as reads
from resolvers.context import RequestContext
from schema.dates import DateRangeInput
from schema.money import Money
from schema.paging import PageInfo
from schema.sub_account import MinuteBalance, SubAccount, wallet_of
from schema.usage import CallStatus

Granularity = strawberry.enum(reports.Granularity, name="Granularity")
HealthFlagKind = strawberry.enum(
    reporting.HealthFlagKind,
    name="HealthFlagKind",
    description="Account health: what a monitoring screen should raise about a sub-account.",
)
ClientSortField = strawberry.enum(reports.ClientSortField, name="ClientSortField")
Info = strawberry.Info[RequestContext, None]


@strawberry.enum
class SortDirection(StrEnum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.input
class ClientOrder:
    field: ClientSortField
    direction: SortDirection


@strawberry.type
class StatusCount:
    status: CallStatus
    count: int


@strawberry.type
class CallStats:
    total: int
    inbound: int
    outbound: int
    by_status: list[StatusCount]


@strawberry.type
class UsagePoint:
    start: datetime
    calls: int
    seconds: int
    spent: Money


@strawberry.type
class HealthFlag:
    kind: HealthFlagKind
    message: str
    runway_days: Decimal | None = strawberry.field(
        description="For LOW_BALANCE: days left at the recent burn rate."
    )


def _flags(flags: list[reporting.HealthFlag]) -> list[HealthFlag]:
    return [HealthFlag(kind=f.kind, message=f.message, runway_days=f.runway_days) for f in flags]


def _used(usage: reports.UsageTotals) -> list[MinuteBalance]:
    return [MinuteBalance(tier=t, seconds=usage.seconds_by_tier.get(t, 0)) for t in Tier]


@strawberry.type
class SubAccountReport:
    report: strawberry.Private[reports.SubAccountReport]

    @strawberry.field
    def calls(self) -> CallStats:
        usage = self.report.usage
        return CallStats(
            total=usage.calls,
            inbound=usage.inbound,
            outbound=usage.outbound,
            by_status=[
                StatusCount(status=s, count=usage.by_status.get(s, 0)) for s in CallStatusValue
            ],
        )

    @strawberry.field
    def minutes_used(self) -> list[MinuteBalance]:
        return _used(self.report.usage)

    @strawberry.field(description="Client-price value of the minutes used.")
    def spent(self) -> Money:
        return Money.of_micros(self.report.usage.spent_micros)

    @strawberry.field(description="Spent minus base cost of the minutes used.")
    def usage_margin(self) -> Money:
        return Money.of_micros(self.report.usage.spent_micros - self.report.usage.cost_micros)

    @strawberry.field(description="Now, not at the end of the range.")
    def wallet_balance(self, info: Info) -> Money:
        return wallet_of(info, self.report.sub_account, self.report.balances)

    @strawberry.field
    def next_billing_date(self, info: Info) -> date:
        today = reads.today(info.context, self.report.zone)
        return self.report.sub_account.next_billing_date(today)

    @strawberry.field
    async def series(self, info: Info, granularity: Granularity) -> list[UsagePoint]:
        points = await reports.series(info.context, self.report, granularity)
        return [
            UsagePoint(
                start=p.start,
                calls=p.calls,
                seconds=p.seconds,
                spent=Money.of_micros(p.spent_micros),
            )
            for p in points
        ]

    @strawberry.field
    def health(self) -> list[HealthFlag]:
        return _flags(self.report.health)

    @strawberry.field(description="Phone lines it holds now (released ones not counted).")
    async def line_count(self, info: Info) -> int:
        return await line_use_cases.line_count(info.context, self.report.sub_account)


@strawberry.type
class ClientRow:
    row: strawberry.Private[reports.ClientRow]

    @strawberry.field
    def sub_account(self) -> SubAccount:
        return SubAccount.from_domain(self.row.sub_account)

    @strawberry.field
    def minutes_used(self) -> Decimal:
        return seconds_to_minutes(self.row.usage.seconds)

    @strawberry.field
    def spent(self) -> Money:
        return Money.of_micros(self.row.usage.spent_micros)

    @strawberry.field
    def usage_margin(self) -> Money:
        return Money.of_micros(self.row.usage.spent_micros - self.row.usage.cost_micros)

    @strawberry.field
    def wallet_balance(self, info: Info) -> Money:
        return wallet_of(info, self.row.sub_account, self.row.balances)

    @strawberry.field
    def health(self) -> list[HealthFlag]:
        return _flags(self.row.health)


@strawberry.type
class ClientRowEdge:
    node: ClientRow
    cursor: str


@strawberry.type
class ClientRowConnection:
    edges: list[ClientRowEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class AgencyReport:
    report: strawberry.Private[reports.AgencyReport]

    @strawberry.field(description="Minutes used across all sub-accounts in the range.")
    def total_minutes_used(self) -> Decimal:
        return seconds_to_minutes(self.report.total_seconds)

    @strawberry.field
    def usage_margin(self) -> Money:
        return Money.of_micros(self.report.margin_micros)

    @strawberry.field(description="Profit of client purchases that succeeded in the range.")
    async def agency_profit(self, info: Info) -> Money:
        from resolvers.payouts import profit_in

        return Money.of_micros(await profit_in(info.context, self.report.agency, self.report.range))

    @strawberry.field(description="Earned and not yet paid out, now.")
    async def unpaid_earnings(self, info: Info) -> Money:
        from resolvers.payouts import earnings_of

        return Money.of_micros((await earnings_of(info.context, self.report.agency)).unpaid_micros)

    @strawberry.field
    def plan_renewal_date(self, info: Info) -> date:
        agency = self.report.agency
        return agency.plan_renewal_date(reads.today(info.context, agency.time_zone))

    @strawberry.field(description="One row per client; sortable; paged.")
    async def clients(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        order_by: ClientOrder | None = None,
    ) -> ClientRowConnection:
        field = order_by.field if order_by else reports.ClientSortField.NAME
        descending = bool(order_by and order_by.direction == SortDirection.DESC)
        page, has_next = await reports.clients_page(
            info.context, self.report, field, descending, first, after
        )
        return ClientRowConnection(
            edges=[ClientRowEdge(node=ClientRow(row=r), cursor=c) for r, c in page],
            page_info=PageInfo(has_next_page=has_next, end_cursor=page[-1][1] if page else None),
            total_count=len(self.report.rows),
        )


async def sub_account_report(
    info: Info, sub_account: SubAccountEntity, range: DateRangeInput
) -> SubAccountReport:
    return SubAccountReport(
        report=await reports.sub_account_report(info.context, sub_account, range.from_, range.to)
    )


async def agency_report(info: Info, agency: AgencyEntity, range: DateRangeInput) -> AgencyReport:
    return AgencyReport(
        report=await reports.agency_report(info.context, agency, range.from_, range.to)
    )
