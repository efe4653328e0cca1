"""The billing summary: groups per sub-account and the pool, their line charges, usage
charges, discounts and credits; and the mutation that adds a discount or a credit."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import strawberry

from domain import agency as entities
from domain import billing as billing_entities
from resolvers import billing as use_cases
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.dates import DateRangeInput
from schema.errors import UserError, with_user_errors
from schema.lines import PhoneLine
from schema.money import Money
from schema.node import Node
from schema.sub_account import SubAccount

AdjustmentKind = strawberry.enum(billing_entities.AdjustmentKind, name="AdjustmentKind")
Info = strawberry.Info[RequestContext, None]


@strawberry.type(name="BillingAdjustment")
class BillingAdjustment(Node):
    id: strawberry.ID
    kind: AdjustmentKind
    amount: Money
    note: str
    day: date = strawberry.field(name="date")

    @classmethod
    def from_domain(cls, adjustment: billing_entities.BillingAdjustment) -> BillingAdjustment:
        return cls(
            id=strawberry.ID(to_global_id("BillingAdjustment", adjustment.id)),
            kind=adjustment.kind,
            amount=Money.of_micros(adjustment.amount_micros),
            note=adjustment.note,
            day=adjustment.date,
        )


@strawberry.type
class BillingLineCharge:
    line: PhoneLine
    days_held: int = strawberry.field(
        description="Days in the range that the line was held by this group."
    )
    charge: Money


@strawberry.type(
    description="One sub-account's share of a billing range, or the Available pool's "
    "(subAccount null)."
)
class BillingGroup:
    group: strawberry.Private[billing_entities.BillingGroup]
    account: strawberry.Private[entities.SubAccount | None]

    @strawberry.field
    def sub_account(self) -> SubAccount | None:
        return None if self.account is None else SubAccount.from_domain(self.account)

    @strawberry.field
    def line_quantity(self) -> int:
        return self.group.line_quantity

    @strawberry.field
    def line_charges(self) -> Money:
        return Money.of_micros(self.group.line_charges_micros)

    @strawberry.field
    def lines(self) -> list[BillingLineCharge]:
        return [
            BillingLineCharge(
                line=PhoneLine.from_domain(c.line),
                days_held=c.days_held,
                charge=Money.of_micros(c.charge_micros),
            )
            for c in self.group.lines
        ]

    @strawberry.field(description="Base cost of the minutes this group's calls consumed.")
    def usage_charges(self) -> Money:
        return Money.of_micros(self.group.usage_micros)

    @strawberry.field
    def discounts(self) -> Money:
        return Money.of_micros(self.group.discounts_micros)

    @strawberry.field
    def credits(self) -> Money:
        return Money.of_micros(self.group.credits_micros)

    @strawberry.field
    def total(self) -> Money:
        return Money.of_micros(self.group.total_micros)


@strawberry.type
class BillingSummary:
    result: strawberry.Private[use_cases.Summary]

    @strawberry.field(name="from")
    def from_(self) -> date:
        return self.result.summary.first

    @strawberry.field
    def to(self) -> date:
        return self.result.summary.last

    @strawberry.field
    def groups(self) -> list[BillingGroup]:
        accounts = self.result.sub_accounts
        return [
            BillingGroup(
                group=g, account=None if g.sub_account_id is None else accounts[g.sub_account_id]
            )
            for g in self.result.summary.groups
        ]

    @strawberry.field
    def total(self) -> Money:
        return Money.of_micros(self.result.summary.total_micros)

    @strawberry.field(description="The same figures as CSV, one row per group, for spreadsheets.")
    def csv(self) -> str:
        return self.result.csv()


async def billing_summary(
    info: Info, agency: entities.Agency, range: DateRangeInput
) -> BillingSummary:
    return BillingSummary(
        result=await use_cases.billing_summary(info.context, agency, range.from_, range.to)
    )


@strawberry.input
class AddBillingAdjustmentInput:
    sub_account_id: strawberry.ID
    kind: AdjustmentKind
    amount: Decimal = strawberry.field(description="USD, more than zero.")
    note: str
    day: date = strawberry.field(
        name="date", description="Agency-local day: the summaries of ranges holding it count it."
    )


@strawberry.type
class BillingAdjustmentPayload:
    adjustment: BillingAdjustment | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class BillingMutations:
    @strawberry.mutation(
        description="A discount or a credit for a sub-account on a day (owners and agency "
        "admins); the billing summary of a range holding that day subtracts it."
    )
    @with_user_errors(BillingAdjustmentPayload)
    async def add_billing_adjustment(
        self, info: Info, input: AddBillingAdjustmentInput
    ) -> BillingAdjustmentPayload:
        added = await use_cases.add_billing_adjustment(
            info.context, input.sub_account_id, input.kind, input.amount, input.note, input.day
        )
        return BillingAdjustmentPayload(adjustment=BillingAdjustment.from_domain(added))
