"""Sub-accounts: balances, prices, wallet, banner, activities, and the Account Manager's
mutations (create, update, suspend, restore, billing source, auto allocation, KP credits,
removal)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from domain import agency as entities
from domain import auto_allocation
from domain import sub_account as rules
from domain.auto_allocation import AutoAllocation as AllocationEntity
from domain.ledger import Balance
from domain.money import Tier, seconds_to_minutes
from domain.pricing import bp_to_percent, client_price_micros, wallet_micros
from domain.sub_account import ActivityKind
from resolvers import activity as activity_use_cases
from resolvers import sub_account as use_cases
from resolvers import viewer as reads
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.activity import AutomationConnection, CampaignConnection, InboundAgentConnection
from schema.activity import connection as activity_connection
from schema.dates import DateRangeInput
from schema.errors import UserError, with_user_errors
from schema.money import Money
from schema.node import Node
from schema.paging import PageInfo, page_info, selected_at

if TYPE_CHECKING:
    from schema.calls import CallConnection
    from schema.lines import PhoneLineConnection
    from schema.messaging import MessagingStats
    from schema.payments import PaymentCard, Purchase, PurchaseConnection
    from schema.report import SubAccountReport
    from schema.wallet import AutoRecharge, SpendingCap

TierEnum = strawberry.enum(Tier, name="Tier")
SubAccountKind = strawberry.enum(entities.SubAccountKind, name="SubAccountKind")
SubAccountStatus = strawberry.enum(entities.SubAccountStatus, name="SubAccountStatus")
BalanceSource = strawberry.enum(entities.BalanceSource, name="BalanceSource")
Info = strawberry.Info[RequestContext, None]


@strawberry.type
class MinuteBalance:
    tier: TierEnum
    seconds: int

    @strawberry.field(description="The balance in minutes, exact (seconds / 60).")
    def minutes(self) -> Decimal:
        return seconds_to_minutes(self.seconds)

    @classmethod
    def from_domain(cls, balance: Balance) -> MinuteBalance:
        return cls(tier=balance.tier, seconds=balance.seconds)


@strawberry.type
class Banner:
    active: bool
    message: str
    note: str | None
    since: datetime | None

    @classmethod
    def of(cls, sub_account: entities.SubAccount) -> Banner:
        return cls.from_domain(rules.banner_of(sub_account))

    @classmethod
    def from_domain(cls, banner: rules.Banner) -> Banner:
        return cls(
            active=banner.active, message=banner.message, note=banner.note, since=banner.since
        )


@strawberry.type(
    description="Monthly minutes bought at base cost for a secondary, charged to "
    "the primary's saved card."
)
class AutoAllocation:
    enabled: bool
    basic_minutes: int
    premium_minutes: int
    entity: strawberry.Private[auto_allocation.AutoAllocation]
    sub_account: strawberry.Private[entities.SubAccount]

    @strawberry.field(
        description="The first day of the next billing period not yet charged (a day the job "
        "has still to reach, if it is in the past); null when disabled or without minutes."
    )
    async def next_charge_date(self, info: Info) -> date | None:
        last = await info.context.loaders.last_auto_allocation_charge.load(self.sub_account.id)
        return auto_allocation.next_charge_date(
            self.sub_account.subscription_start_date,
            self.entity,
            None if last is None else last.period_start,
        )

    @strawberry.field(
        description="The latest monthly charge (its latest period's, its status, failure "
        "reason and attempts); null before the first."
    )
    async def last_charge(
        self, info: Info
    ) -> Annotated[Purchase, strawberry.lazy("schema.payments")] | None:
        from schema.payments import Purchase

        last = await info.context.loaders.last_auto_allocation_charge.load(self.sub_account.id)
        return None if last is None else Purchase.from_domain(last)


@strawberry.type(name="SubAccount")
class SubAccount(Node):
    id: strawberry.ID
    name: str
    kind: SubAccountKind
    status: SubAccountStatus
    login_email: str
    subscription_start_date: date
    balance_source: BalanceSource
    knowledge_pack_credits: int
    entity: strawberry.Private[entities.SubAccount]
    # What is known already, so that the field needs no read: balances (a live event's, as of
    # its commit, or loaded with a page of the list), the auto allocation and the agency's
    # today (loaded with a page). A field whose value is held answers it synchronously;
    # otherwise it returns a coroutine that graphql-core awaits. On a page of 500 nodes that
    # is the difference between plain values and 2,000 awaitables gathered in Tasks.
    held: strawberry.Private[tuple[Balance, ...] | None] = None
    held_allocation: strawberry.Private[AllocationEntity | None] = None
    held_today: strawberry.Private[date | None] = None

    @strawberry.field(description="The monthly anniversary of the subscription start date.")
    def next_billing_date(self, info: Info) -> date:
        if self.held_today is not None:
            return self.entity.next_billing_date(self.held_today)
        return reads.next_billing_date(info.context, self.entity)  # type: ignore[return-value]

    @strawberry.field(description="Minutes left per tier, in whole seconds.")
    def balances(self, info: Info) -> list[MinuteBalance]:
        if self.held is not None:
            return [MinuteBalance.from_domain(b) for b in self.held]
        return self._later_balances(info)  # type: ignore[return-value]

    async def _later_balances(self, info: Info) -> list[MinuteBalance]:
        found = await reads.balances(info.context, self.entity)
        return [MinuteBalance.from_domain(b) for b in found]

    @strawberry.field(description="The markup over base cost, in percent (0 for the primary).")
    def markup_percent(self, tier: TierEnum) -> Decimal:
        return bp_to_percent(self.entity.markup_bp(tier))

    @strawberry.field(description="Base cost x (1 + markup%), per minute.")
    def client_price_per_minute(self, info: Info, tier: TierEnum) -> Money:
        base = info.context.services.prices.base_per_minute(tier)
        return Money.of_micros(client_price_micros(base, self.entity.markup_bp(tier)))

    @strawberry.field(description="Remaining minutes valued at the client price.")
    def wallet_balance(self, info: Info) -> Money:
        if self.held is not None:
            return wallet_of(info, self.entity, list(self.held))
        return self._later_wallet(info)  # type: ignore[return-value]

    async def _later_wallet(self, info: Info) -> Money:
        return wallet_of(info, self.entity, await reads.balances(info.context, self.entity))

    @strawberry.field
    def banner(self) -> Banner:
        return Banner.of(self.entity)

    @strawberry.field
    def auto_allocation(self, info: Info) -> AutoAllocation:
        if self.held_allocation is not None:
            return self._allocation(self.held_allocation)
        return self._later_allocation(info)  # type: ignore[return-value]

    async def _later_allocation(self, info: Info) -> AutoAllocation:
        loader = info.context.loaders.auto_allocation_by_sub_account
        return self._allocation(await loader.load(self.entity.id))

    def _allocation(self, found: AllocationEntity) -> AutoAllocation:
        return AutoAllocation(
            enabled=found.enabled,
            basic_minutes=found.basic_minutes,
            premium_minutes=found.premium_minutes,
            entity=found,
            sub_account=self.entity,
        )

    @strawberry.field
    async def campaigns(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> CampaignConnection:
        return await self._activities(info, ActivityKind.CAMPAIGN, first, after)  # type: ignore[return-value]

    @strawberry.field
    async def inbound_agents(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> InboundAgentConnection:
        return await self._activities(info, ActivityKind.INBOUND_AGENT, first, after)  # type: ignore[return-value]

    @strawberry.field
    async def automations(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> AutomationConnection:
        return await self._activities(info, ActivityKind.AUTOMATION, first, after)  # type: ignore[return-value]

    async def _activities(
        self, info: Info, kind: ActivityKind, first: int | None, after: str | None
    ) -> object:
        page, total = await activity_use_cases.activities_page(
            info.context, self.entity, kind, first, after
        )
        return activity_connection(kind, page, total)

    @strawberry.field(
        description="Cards of whoever pays for this sub-account: its own for CUSTOMER-funded "
        "secondaries; the agency's (the primary's) otherwise."
    )
    async def payment_cards(
        self, info: Info
    ) -> list[Annotated[PaymentCard, strawberry.lazy("schema.payments")]]:
        from resolvers.payment_cards import cards_for
        from schema.payments import PaymentCard

        return [PaymentCard.from_domain(c) for c in await cards_for(info.context, self.entity)]

    @strawberry.field(description="Minutes bought for this sub-account, oldest first.")
    async def purchases(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Annotated[PurchaseConnection, strawberry.lazy("schema.payments")]:
        from schema.payments import purchases_connection

        return await purchases_connection(info, self, first, after)

    @strawberry.field(description="Its phone lines (unreleased), oldest first.")
    async def lines(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Annotated[PhoneLineConnection, strawberry.lazy("schema.lines")]:
        from schema.lines import lines_connection

        return await lines_connection(info, self.entity, first, after)

    @strawberry.field(description="The sub-account a MERGED one merged into; null otherwise.")
    async def merged_into(self, info: Info) -> SubAccount | None:
        from schema.merge import merged_into

        return await merged_into(info, self.entity)

    @strawberry.field(description="How many phone lines it holds (released ones not counted).")
    async def line_count(self, info: Info) -> int:
        from resolvers.lines import line_count

        return await line_count(info.context, self.entity)

    @strawberry.field(
        description="The calls of an inclusive date range, newest first, each with its cost: "
        "they add up to the report's spent for the same range."
    )
    async def calls(
        self, info: Info, range: DateRangeInput, first: int | None = None, after: str | None = None
    ) -> Annotated[CallConnection, strawberry.lazy("schema.calls")]:
        from schema.calls import calls_connection

        return await calls_connection(info, self.entity, range, first, after)

    @strawberry.field(description="Messaging figures over an inclusive date range.")
    async def messaging(
        self, info: Info, range: DateRangeInput
    ) -> Annotated[MessagingStats, strawberry.lazy("schema.messaging")]:
        from schema.messaging import messaging_stats

        return await messaging_stats(info, self.entity, range)

    @strawberry.field(description="Outbound messages allowed per billing period; null = no limit.")
    async def messaging_volume_limit(self, info: Info) -> int | None:
        from resolvers.messaging import volume_limit

        return await volume_limit(info.context, self.entity)

    @strawberry.field(description="The threshold auto-recharge (off until set).")
    async def auto_recharge(
        self, info: Info
    ) -> Annotated[AutoRecharge, strawberry.lazy("schema.wallet")]:
        from schema.wallet import auto_recharge_of

        return await auto_recharge_of(info, self.entity)

    @strawberry.field(description="The monthly spending cap; null when none is set.")
    async def spending_cap(
        self, info: Info
    ) -> Annotated[SpendingCap, strawberry.lazy("schema.wallet")] | None:
        from schema.wallet import spending_cap_of

        return await spending_cap_of(info, self.entity)

    @strawberry.field(description="Usage, spending and health over an inclusive date range.")
    async def report(
        self, info: Info, range: DateRangeInput
    ) -> Annotated[SubAccountReport, strawberry.lazy("schema.report")]:
        from schema.report import sub_account_report

        return await sub_account_report(info, self.entity, range)

    @classmethod
    def from_domain(
        cls, sub_account: entities.SubAccount, held: tuple[Balance, ...] | None = None
    ) -> SubAccount:
        return cls(
            id=strawberry.ID(to_global_id("SubAccount", sub_account.id)),
            name=sub_account.name,
            kind=sub_account.kind,
            status=sub_account.status,
            login_email=sub_account.login_email,
            subscription_start_date=sub_account.subscription_start_date,
            balance_source=sub_account.balance_source,
            knowledge_pack_credits=sub_account.knowledge_pack_credits,
            entity=sub_account,
            held=held,
        )


def wallet_of(info: Info, sub_account: entities.SubAccount, balances: list[Balance]) -> Money:
    prices = info.context.services.prices
    return Money.of_micros(
        wallet_micros(
            (b.seconds, prices.base_per_minute(b.tier), sub_account.markup_bp(b.tier))
            for b in balances
        )
    )


@strawberry.type
class SubAccountEdge:
    node: SubAccount
    cursor: str


@strawberry.type
class SubAccountConnection:
    edges: list[SubAccountEdge]
    page_info: PageInfo
    total_count: int


async def sub_accounts_connection(
    info: Info,
    agency: entities.Agency,
    first: int | None,
    after: str | None,
    status: entities.SubAccountStatus | None,
) -> SubAccountConnection:
    """A page of the agency's sub-accounts, with what its nodes are asked for loaded up front
    for the whole page (one statement each, as the nodes' DataLoaders would): the nodes then
    answer those fields synchronously."""
    ctx = info.context
    page, total = await use_cases.sub_accounts_page(ctx, agency.id, status, first, after)
    wanted = selected_at(info, "edges", "node")
    ids = [s.id for s in page.items]
    balances = allocations = None
    today = None
    if ids and wanted & {"balances", "walletBalance"}:
        balances = await ctx.loaders.balances_by_sub_account.load_many(ids)
    if ids and "autoAllocation" in wanted:
        allocations = await ctx.loaders.auto_allocation_by_sub_account.load_many(ids)
    if ids and "nextBillingDate" in wanted:
        today = await reads.agency_today(ctx, agency.id)

    def node(index: int, sub_account: entities.SubAccount) -> SubAccount:
        found = SubAccount.from_domain(
            sub_account, held=None if balances is None else tuple(balances[index])
        )
        found.held_allocation = None if allocations is None else allocations[index]
        found.held_today = today
        return found

    return SubAccountConnection(
        edges=[
            SubAccountEdge(node=node(i, s), cursor=c)
            for i, (s, c) in enumerate(zip(page.items, page.cursors, strict=True))
        ],
        page_info=page_info(page),
        total_count=total,
    )


@strawberry.type
class RemovalPreview:
    balances: list[MinuteBalance]
    knowledge_pack_credits: int
    line_count: int


@strawberry.input
class CreateSubAccountInput:
    name: str
    login_email: str
    subscription_start_date: date | None = strawberry.field(
        default=None, description="The billing cycle's anchor; today when omitted."
    )
    markup_percent: Decimal | None = strawberry.field(
        default=None, description="The markup on both tiers, in percent (two decimals)."
    )


@strawberry.input
class UpdateSubAccountInput:
    id: strawberry.ID
    name: str | None = None
    login_email: str | None = None
    markup_percent: Decimal | None = strawberry.field(
        default=None, description="Sets the markup of both tiers."
    )
    basic_markup_percent: Decimal | None = strawberry.field(
        default=None, description="Sets the BASIC markup alone (after markupPercent)."
    )
    premium_markup_percent: Decimal | None = strawberry.field(
        default=None, description="Sets the PREMIUM markup alone (after markupPercent)."
    )


@strawberry.type
class SubAccountPayload:
    sub_account: SubAccount | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SuspendSubAccountInput:
    id: strawberry.ID
    note: str | None = strawberry.field(
        default=None, description="Shown to the client on the banner; at most 150 characters."
    )


@strawberry.input
class RestoreSubAccountInput:
    id: strawberry.ID


@strawberry.input
class SetBalanceSourceInput:
    id: strawberry.ID
    source: BalanceSource


@strawberry.input
class SetAutoAllocationInput:
    sub_account_id: strawberry.ID
    enabled: bool
    basic_minutes: int
    premium_minutes: int


@strawberry.input
class TransferKnowledgePackCreditsInput:
    from_id: strawberry.ID
    to_id: strawberry.ID
    credits: int
    idempotency_key: str | None = None


@strawberry.type
class KnowledgePackTransferPayload:
    from_: SubAccount | None = strawberry.field(default=None, name="from")
    to: SubAccount | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


LineReleaseEnum = strawberry.enum(rules.LineRelease, name="LineRelease")


@strawberry.input
class RemoveSubAccountInput:
    id: strawberry.ID
    minutes_to_id: strawberry.ID
    lines: LineReleaseEnum | None = None


@strawberry.type
class RemoveSubAccountPayload:
    sub_account: SubAccount | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _payload(sub_account: entities.SubAccount) -> SubAccountPayload:
    return SubAccountPayload(sub_account=SubAccount.from_domain(sub_account))


@strawberry.type
class SubAccountQueries:
    @strawberry.field(
        description="What removing a sub-account would move: minutes, credits, lines."
    )
    async def removal_preview(self, info: Info, sub_account_id: strawberry.ID) -> RemovalPreview:
        preview = await use_cases.removal_preview(info.context, sub_account_id)
        return RemovalPreview(
            balances=[MinuteBalance.from_domain(b) for b in preview.balances],
            knowledge_pack_credits=preview.knowledge_pack_credits,
            line_count=preview.line_count,
        )


@strawberry.type
class SubAccountMutations:
    @strawberry.mutation(description="Add a client sub-account (within the plan's cap).")
    @with_user_errors(SubAccountPayload)
    async def create_sub_account(
        self, info: Info, input: CreateSubAccountInput
    ) -> SubAccountPayload:
        return _payload(
            await use_cases.create_sub_account(
                info.context,
                input.name,
                input.login_email,
                input.subscription_start_date,
                input.markup_percent,
            )
        )

    @strawberry.mutation(description="Rename, change the login email or the markup.")
    @with_user_errors(SubAccountPayload)
    async def update_sub_account(
        self, info: Info, input: UpdateSubAccountInput
    ) -> SubAccountPayload:
        return _payload(
            await use_cases.update_sub_account(
                info.context,
                input.id,
                input.name,
                input.login_email,
                input.markup_percent,
                {
                    Tier.BASIC: input.basic_markup_percent,
                    Tier.PREMIUM: input.premium_markup_percent,
                },
            )
        )

    @strawberry.mutation(
        description="Pause a secondary: calls and changes are refused, "
        "active campaigns, agents and automations pause. Again: edits the note."
    )
    @with_user_errors(SubAccountPayload)
    async def suspend_sub_account(
        self, info: Info, input: SuspendSubAccountInput
    ) -> SubAccountPayload:
        return _payload(await use_cases.suspend(info.context, input.id, input.note))

    @strawberry.mutation(description="Lift a suspension; brings back exactly what it paused.")
    @with_user_errors(SubAccountPayload)
    async def restore_sub_account(
        self, info: Info, input: RestoreSubAccountInput
    ) -> SubAccountPayload:
        return _payload(await use_cases.restore(info.context, input.id))

    @strawberry.mutation(description="Whose balance pays for a secondary's usage.")
    @with_user_errors(SubAccountPayload)
    async def set_balance_source(
        self, info: Info, input: SetBalanceSourceInput
    ) -> SubAccountPayload:
        return _payload(await use_cases.set_balance_source(info.context, input.id, input.source))

    @strawberry.mutation(description="Monthly minutes bought for a secondary at base cost.")
    @with_user_errors(SubAccountPayload)
    async def set_auto_allocation(
        self, info: Info, input: SetAutoAllocationInput
    ) -> SubAccountPayload:
        return _payload(
            await use_cases.set_auto_allocation(
                info.context,
                input.sub_account_id,
                input.enabled,
                input.basic_minutes,
                input.premium_minutes,
            )
        )

    @strawberry.mutation(
        description="Move Knowledge Pack credits between the primary and a secondary."
    )
    @with_user_errors(KnowledgePackTransferPayload)
    async def transfer_knowledge_pack_credits(
        self, info: Info, input: TransferKnowledgePackCreditsInput
    ) -> KnowledgePackTransferPayload:
        source, destination = await use_cases.transfer_credits(
            info.context, input.from_id, input.to_id, input.credits, input.idempotency_key
        )
        return KnowledgePackTransferPayload(
            from_=SubAccount.from_domain(source), to=SubAccount.from_domain(destination)
        )

    @strawberry.mutation(
        description="Remove a secondary: minutes to the chosen account, KP "
        "credits to the primary, everything stopped. See removalPreview first."
    )
    @with_user_errors(RemoveSubAccountPayload)
    async def remove_sub_account(
        self, info: Info, input: RemoveSubAccountInput
    ) -> RemoveSubAccountPayload:
        removed = await use_cases.remove(
            info.context,
            input.id,
            input.minutes_to_id,
            lines_to_pool=input.lines is rules.LineRelease.TO_POOL,
        )
        return RemoveSubAccountPayload(sub_account=SubAccount.from_domain(removed))
