"""Sub-accounts and their minute balances."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import strawberry

from domain import agency as entities
from domain.ledger import Balance
from domain.money import Tier, seconds_to_minutes
from resolvers import viewer as reads
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.node import Node

TierEnum = strawberry.enum(Tier, name="Tier")
SubAccountKind = strawberry.enum(entities.SubAccountKind, name="SubAccountKind")
SubAccountStatus = strawberry.enum(entities.SubAccountStatus, name="SubAccountStatus")
BalanceSource = strawberry.enum(entities.BalanceSource, name="BalanceSource")


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

    @strawberry.field(description="The monthly anniversary of the subscription start date.")
    def next_billing_date(self, info: strawberry.Info[RequestContext, None]) -> date:
        return self.entity.next_billing_date(reads.today(info.context))

    @strawberry.field(description="Minutes left per tier, in whole seconds.")
    async def balances(self, info: strawberry.Info[RequestContext, None]) -> list[MinuteBalance]:
        found = await reads.balances(info.context, self.entity)
        return [MinuteBalance.from_domain(b) for b in found]

    @classmethod
    def from_domain(cls, sub_account: entities.SubAccount) -> SubAccount:
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
        )
