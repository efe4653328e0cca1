"""Payments: saved cards and purchases of minutes."""

from __future__ import annotations

from datetime import datetime

import strawberry

from domain import payments as entities
from resolvers import payment_cards as card_use_cases
from resolvers import purchases as purchase_use_cases
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.errors import UserError, with_user_errors
from schema.money import Money
from schema.node import Node
from schema.paging import PageInfo, edges, page_info
from schema.sub_account import SubAccount, TierEnum

Info = strawberry.Info[RequestContext, None]
PaymentStatus = strawberry.enum(entities.PaymentStatus, name="PaymentStatus")
PurchaseKind = strawberry.enum(entities.PurchaseKind, name="PurchaseKind")


@strawberry.type(
    name="PaymentCard",
    description="A card saved with Stripe (a PaymentMethod attached to the payer's Stripe "
    "Customer).",
)
class PaymentCard(Node):
    id: strawberry.ID
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    is_default: bool

    @classmethod
    def from_domain(cls, card: entities.PaymentCard) -> PaymentCard:
        return cls(
            id=strawberry.ID(to_global_id("PaymentCard", card.id)),
            brand=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            is_default=card.is_default,
        )


@strawberry.type(
    name="Purchase",
    description="Minutes bought with a card: a client's purchase at its client price, or a "
    "monthly auto allocation at base cost charged to the primary's card.",
)
class Purchase(Node):
    id: strawberry.ID
    kind: PurchaseKind
    tier: TierEnum
    seconds: int
    amount: Money
    agency_profit: Money = strawberry.field(
        description="Minutes x (client price - base cost); zero for auto allocations and for "
        "the primary."
    )
    status: PaymentStatus
    failure_reason: str | None
    attempts: int
    created_at: datetime
    completed_at: datetime | None
    entity: strawberry.Private[entities.Purchase]

    @strawberry.field
    async def sub_account(self, info: Info) -> SubAccount:
        found = await info.context.loaders.sub_account_by_id.load(self.entity.sub_account_id)
        assert found is not None
        return SubAccount.from_domain(found)

    @classmethod
    def from_domain(cls, purchase: entities.Purchase) -> Purchase:
        return cls(
            id=strawberry.ID(to_global_id("Purchase", purchase.id)),
            kind=purchase.kind,
            tier=purchase.tier,
            seconds=purchase.seconds,
            amount=Money.of_micros(purchase.amount_micros),
            agency_profit=Money.of_micros(purchase.profit_micros),
            status=purchase.status,
            failure_reason=purchase.failure_reason,
            attempts=purchase.attempts,
            created_at=purchase.created_at,
            completed_at=purchase.completed_at,
            entity=purchase,
        )


@strawberry.type
class PurchaseEdge:
    node: Purchase
    cursor: str


@strawberry.type
class PurchaseConnection:
    edges: list[PurchaseEdge]
    page_info: PageInfo
    total_count: int


async def purchases_connection(
    info: Info, sub_account: SubAccount, first: int | None, after: str | None
) -> PurchaseConnection:
    page, total = await purchase_use_cases.purchases_page(
        info.context, sub_account.entity.id, first, after
    )
    return PurchaseConnection(
        edges=edges(page, PurchaseEdge, Purchase.from_domain),
        page_info=page_info(page),
        total_count=total,
    )


@strawberry.input
class BuyMinutesInput:
    sub_account_id: strawberry.ID
    tier: TierEnum
    minutes: int
    card_id: strawberry.ID | None = strawberry.field(
        default=None, description="Defaults to the payer's default card."
    )
    idempotency_key: str


@strawberry.type
class BuyMinutesPayload:
    purchase: Purchase | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class AddPaymentCardInput:
    sub_account_id: strawberry.ID
    payment_method_id: str = strawberry.field(
        description="A Stripe PaymentMethod id (pm_...) created by Stripe.js in the browser; "
        "card numbers never reach this API."
    )
    make_default: bool | None = None


@strawberry.type
class PaymentCardPayload:
    card: PaymentCard | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class PaymentCardIdInput:
    id: strawberry.ID


@strawberry.type
class RemovePaymentCardPayload:
    removed_card_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class PaymentMutations:
    @strawberry.mutation(
        description="Buy whole minutes at the sub-account's client price with a saved card; "
        "a retry with the same idempotencyKey charges nothing twice."
    )
    @with_user_errors(BuyMinutesPayload)
    async def buy_minutes(self, info: Info, input: BuyMinutesInput) -> BuyMinutesPayload:
        purchase = await purchase_use_cases.buy_minutes(
            info.context,
            input.sub_account_id,
            input.tier,
            input.minutes,
            input.card_id,
            input.idempotency_key,
        )
        declined = entities.declined_error(purchase)
        return BuyMinutesPayload(
            purchase=Purchase.from_domain(purchase),
            user_errors=[] if declined is None else [UserError.from_domain(declined)],
        )

    @strawberry.mutation(
        description="Save a card (a PaymentMethod from Stripe.js) for whoever pays for the "
        "sub-account; the first one is the default."
    )
    @with_user_errors(PaymentCardPayload)
    async def add_payment_card(self, info: Info, input: AddPaymentCardInput) -> PaymentCardPayload:
        card = await card_use_cases.add_payment_card(
            info.context,
            input.sub_account_id,
            input.payment_method_id,
            bool(input.make_default),
        )
        return PaymentCardPayload(card=PaymentCard.from_domain(card))

    @strawberry.mutation(description="Make this card its payer's default.")
    @with_user_errors(PaymentCardPayload)
    async def set_default_payment_card(
        self, info: Info, input: PaymentCardIdInput
    ) -> PaymentCardPayload:
        card = await card_use_cases.set_default_payment_card(info.context, input.id)
        return PaymentCardPayload(card=PaymentCard.from_domain(card))

    @strawberry.mutation(
        description="Detach a card; removing the default makes the newest other card default."
    )
    @with_user_errors(RemovePaymentCardPayload)
    async def remove_payment_card(
        self, info: Info, input: PaymentCardIdInput
    ) -> RemovePaymentCardPayload:
        removed = await card_use_cases.remove_payment_card(info.context, input.id)
        return RemovePaymentCardPayload(
            removed_card_id=strawberry.ID(to_global_id("PaymentCard", removed))
        )
