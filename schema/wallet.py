"""Wallet automation: the auto-recharge and the spending cap of a sub-account."""

from __future__ import annotations

from decimal import Decimal

import strawberry

from domain import auto_recharge as recharge_rules
from domain import spending_cap as cap_rules
from domain.agency import SubAccount as SubAccountEntity
from resolvers import auto_recharges, spending_caps
from resolvers import viewer as reads
from resolvers.context import RequestContext
from schema.errors import with_user_errors
from schema.money import Money
from schema.payments import Purchase
from schema.sub_account import SubAccountPayload, TierEnum, _payload

Info = strawberry.Info[RequestContext, None]


@strawberry.type(
    description="When a tier's balance falls below the threshold, buy the top-up at the "
    "payer's client price with the payer's default card."
)
class AutoRecharge:
    enabled: bool
    tier: TierEnum
    threshold_minutes: int
    top_up_minutes: int
    entity: strawberry.Private[recharge_rules.AutoRecharge]

    @strawberry.field(description="The last recharge charged (its status and failure reason).")
    async def last_charge(self, info: Info) -> Purchase | None:
        if self.entity.last_purchase_id is None:
            return None
        found = await info.context.loaders.purchase_by_id.load(self.entity.last_purchase_id)
        return None if found is None else Purchase.from_domain(found)

    @classmethod
    def from_domain(cls, setting: recharge_rules.AutoRecharge) -> AutoRecharge:
        return cls(
            enabled=setting.enabled,
            tier=setting.tier,
            threshold_minutes=setting.threshold_minutes,
            top_up_minutes=setting.top_up_minutes,
            entity=setting,
        )


@strawberry.type(
    description="A monthly spending cap per sub-account: reaching it pauses its active "
    "campaigns until the next billing period or a higher cap."
)
class SpendingCap:
    amount: Money
    spent_this_period: Money
    reached: bool


async def auto_recharge_of(info: Info, sub_account: SubAccountEntity) -> AutoRecharge:
    found = await info.context.loaders.auto_recharge_by_sub_account.load(sub_account.id)
    return AutoRecharge.from_domain(found)


async def spending_cap_of(info: Info, sub_account: SubAccountEntity) -> SpendingCap | None:
    cap = await info.context.loaders.spending_cap_by_sub_account.load(sub_account.id)
    if cap is None:
        return None
    spent = await reads.spent_this_period(info.context, sub_account)
    return SpendingCap(
        amount=Money.of_micros(cap),
        spent_this_period=Money.of_micros(spent),
        reached=sub_account.capped_at is not None or cap_rules.is_reached(cap, spent),
    )


@strawberry.input
class SetAutoRechargeInput:
    sub_account_id: strawberry.ID
    enabled: bool
    tier: TierEnum
    threshold_minutes: int
    top_up_minutes: int


@strawberry.input
class SetSpendingCapInput:
    sub_account_id: strawberry.ID
    amount: Decimal | None = strawberry.field(description="null removes the cap")


@strawberry.type
class WalletMutations:
    @strawberry.mutation(
        description="Buy minutes automatically when a tier's balance falls below a threshold."
    )
    @with_user_errors(SubAccountPayload)
    async def set_auto_recharge(self, info: Info, input: SetAutoRechargeInput) -> SubAccountPayload:
        return _payload(
            await auto_recharges.set_auto_recharge(
                info.context,
                input.sub_account_id,
                input.enabled,
                input.tier,
                input.threshold_minutes,
                input.top_up_minutes,
            )
        )

    @strawberry.mutation(description="A secondary's monthly spending cap; null removes it.")
    @with_user_errors(SubAccountPayload)
    async def set_spending_cap(self, info: Info, input: SetSpendingCapInput) -> SubAccountPayload:
        return _payload(
            await spending_caps.set_spending_cap(info.context, input.sub_account_id, input.amount)
        )
