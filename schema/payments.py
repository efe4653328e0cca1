"""Payments: saved cards and purchases of minutes."""

from __future__ import annotations

import strawberry

from domain import payments as entities
from resolvers import payment_cards as card_use_cases
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.errors import UserError, with_user_errors
from schema.node import Node

Info = strawberry.Info[RequestContext, None]


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
