"""Moving minutes: preview and transfer."""

from __future__ import annotations

from decimal import Decimal

import strawberry

from domain.transfer import TransferPlan
from resolvers import transfer as use_cases
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.errors import UserError, with_user_errors
from schema.money import Money
from schema.node import Node
from schema.sub_account import SubAccount, TierEnum

Info = strawberry.Info[RequestContext, None]


@strawberry.input
class TransferMinutesInput:
    from_id: strawberry.ID
    to_id: strawberry.ID
    tier: TierEnum
    minutes: Decimal = strawberry.field(description="Whole seconds' worth (1/60 minute steps).")
    idempotency_key: str | None = strawberry.field(
        default=None, description="A retry with the same key moves nothing twice."
    )


@strawberry.type
class TransferPreview:
    tier: TierEnum
    sent_seconds: int
    received_seconds: int
    from_price_per_minute: Money
    to_price_per_minute: Money

    @classmethod
    def of(cls, plan: TransferPlan) -> TransferPreview:
        return cls(
            tier=plan.tier,
            sent_seconds=plan.sent_seconds,
            received_seconds=plan.received_seconds,
            from_price_per_minute=Money.of_exact(plan.from_price),
            to_price_per_minute=Money.of_exact(plan.to_price),
        )


@strawberry.type(name="Transfer")
class Transfer(Node):
    id: strawberry.ID
    tier: TierEnum
    sent_seconds: int
    received_seconds: int
    from_: SubAccount = strawberry.field(name="from")
    to: SubAccount
    from_price_per_minute: Money
    to_price_per_minute: Money


@strawberry.type
class TransferMinutesPayload:
    transfer: Transfer | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class TransferQueries:
    @strawberry.field(description="The figures of a transfer, without moving anything.")
    async def preview_transfer(self, info: Info, input: TransferMinutesInput) -> TransferPreview:
        plan = await use_cases.preview_transfer(
            info.context, input.from_id, input.to_id, input.tier, input.minutes
        )
        return TransferPreview.of(plan)


@strawberry.type
class TransferMutations:
    @strawberry.mutation(
        description="Move minutes between two sub-accounts of the agency; the "
        "value moves, rounded down to a second at the destination's price."
    )
    @with_user_errors(TransferMinutesPayload)
    async def transfer_minutes(
        self, info: Info, input: TransferMinutesInput
    ) -> TransferMinutesPayload:
        result = await use_cases.transfer_minutes(
            info.context,
            input.from_id,
            input.to_id,
            input.tier,
            input.minutes,
            input.idempotency_key,
        )
        plan = result.plan
        return TransferMinutesPayload(
            transfer=Transfer(
                id=strawberry.ID(to_global_id("Transfer", result.id)),
                tier=plan.tier,
                sent_seconds=plan.sent_seconds,
                received_seconds=plan.received_seconds,
                from_=SubAccount.from_domain(result.source),
                to=SubAccount.from_domain(result.destination),
                from_price_per_minute=Money.of_exact(plan.from_price),
                to_price_per_minute=Money.of_exact(plan.to_price),
            )
        )
