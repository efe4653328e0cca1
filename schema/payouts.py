"""The agency's earnings from its clients' purchases, and their payouts."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry

from domain import payouts as entities
from domain.agency import Agency as AgencyEntity
from resolvers import payouts as use_cases
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.errors import UserError, with_user_errors
from schema.money import Money
from schema.node import Node
from schema.paging import PageInfo, edges, page_info

Info = strawberry.Info[RequestContext, None]
PayoutStatus = strawberry.enum(entities.PayoutStatus, name="PayoutStatus")


@strawberry.type(
    name="Payout",
    description="Unpaid agency profit sent to the agency's Stripe Connect account (a Stripe "
    "Transfer).",
)
class Payout(Node):
    id: strawberry.ID
    amount: Money
    status: PayoutStatus
    stripe_transfer_id: str | None
    failure_reason: str | None
    created_at: datetime
    paid_at: datetime | None

    @classmethod
    def from_domain(cls, payout: entities.Payout) -> Payout:
        return cls(
            id=strawberry.ID(to_global_id("Payout", payout.id)),
            amount=Money.of_micros(payout.amount_micros),
            status=payout.status,
            stripe_transfer_id=payout.stripe_transfer_id,
            failure_reason=payout.failure_reason,
            created_at=payout.created_at,
            paid_at=payout.paid_at,
        )


@strawberry.type
class PayoutEdge:
    node: Payout
    cursor: str


@strawberry.type
class PayoutConnection:
    edges: list[PayoutEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class Earnings:
    total: Money = strawberry.field(description="Profit from succeeded client purchases, ever.")
    unpaid: Money = strawberry.field(description="Earned and not yet in a PAID or PENDING payout.")
    paid_out: Money
    payout_threshold: Money
    connected_account_id: str | None

    @classmethod
    def from_domain(cls, earnings: entities.Earnings) -> Earnings:
        return cls(
            total=Money.of_micros(earnings.total_micros),
            unpaid=Money.of_micros(earnings.unpaid_micros),
            paid_out=Money.of_micros(earnings.paid_out_micros),
            payout_threshold=Money.of_micros(earnings.threshold_micros),
            connected_account_id=earnings.connected_account_id,
        )


async def payouts_connection(
    info: Info, agency: AgencyEntity, first: int | None, after: str | None
) -> PayoutConnection:
    page, total = await use_cases.payouts_page(info.context, agency, first, after)
    return PayoutConnection(
        edges=edges(page, PayoutEdge, Payout.from_domain),
        page_info=page_info(page),
        total_count=total,
    )


@strawberry.input
class SetPayoutSettingsInput:
    connected_account_id: str | None = strawberry.field(
        default=strawberry.UNSET, description="acct_…; null clears it; omitted: unchanged."
    )
    payout_threshold: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description="USD; null: the $100 default; omitted: unchanged."
    )


@strawberry.type
class EarningsPayload:
    earnings: Earnings | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RequestPayoutInput:
    idempotency_key: str


@strawberry.type
class PayoutPayload:
    payout: Payout | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class PayoutMutations:
    @strawberry.mutation(description="Where and when the agency's earnings are paid out (owner).")
    @with_user_errors(EarningsPayload)
    async def set_payout_settings(
        self, info: Info, input: SetPayoutSettingsInput
    ) -> EarningsPayload:
        earnings = await use_cases.set_payout_settings(
            info.context, input.connected_account_id, input.payout_threshold
        )
        return EarningsPayload(earnings=Earnings.from_domain(earnings))

    @strawberry.mutation(description="Pay out every unpaid earning now, threshold or not (owner).")
    @with_user_errors(PayoutPayload)
    async def request_payout(self, info: Info, input: RequestPayoutInput) -> PayoutPayload:
        payout = await use_cases.request_payout(info.context, input.idempotency_key)
        return PayoutPayload(payout=Payout.from_domain(payout))
