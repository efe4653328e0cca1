"""Saved cards: add (attach a PaymentMethod to the payer's Customer, made on first use), make
default, remove (detach), list. Stripe is called between transactions, never inside one."""

from __future__ import annotations

import uuid
from dataclasses import replace
from uuid import UUID

from domain import payments as rules
from domain.agency import SubAccount
from domain.errors import DomainError, ErrorCode
from domain.payments import PaymentCard
from domain.policy import Action, Viewer, can, require
from domain.sub_account import check_changeable
from persistence import auto_recharge
from persistence import payment_cards as cards
from persistence.errors import UniqueViolation
from persistence.stripe_gateway import CardRefused, StripeGateway, StripeUnavailable
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.ids import decode, not_found
from resolvers.sub_account import lock_sub_accounts
from resolvers.viewer import sub_account_target


def provider_error(error: StripeUnavailable) -> DomainError:
    return DomainError(
        ErrorCode.PAYMENT_PROVIDER_ERROR, f"Stripe could not be reached or refused: {error}"
    )


async def sub_account_and_payer(
    ctx: RequestContext, viewer: Viewer, global_id: str | UUID, field: str
) -> tuple[SubAccount, SubAccount]:
    """The sub-account and whoever pays for it, each one the viewer may make payments for
    (a client's own users cannot use the agency's cards); another agency's reads as absent."""
    key = global_id if isinstance(global_id, UUID) else decode(global_id, "SubAccount", field)
    sub_account = await ctx.loaders.sub_account_by_id.load(key)
    if sub_account is None or sub_account.agency_id != viewer.agency_id:
        raise not_found(field, "sub-account")
    primary = await ctx.loaders.primary_sub_account_by_agency.load(viewer.agency_id)
    assert primary is not None
    payer = rules.payer_of(sub_account, primary)
    for account in {sub_account.id: sub_account, payer.id: payer}.values():
        require(viewer, Action.MAKE_PAYMENTS, sub_account_target(account))
    return sub_account, payer


async def customer_of(ctx: RequestContext, stripe: StripeGateway, payer: SubAccount) -> str:
    """The payer's Stripe Customer, made the first time it is needed. Two requests making it
    at once send Stripe the same idempotency key, and the first one saved is kept."""
    async with ctx.services.database.read() as conn:
        found = await cards.customer_id(conn, payer.id)
    if found is not None:
        return found
    try:
        made = await stripe.create_customer(
            f"agencyhub-customer-{payer.id}",
            payer.name,
            {"sub_account_id": str(payer.id), "agency_id": str(payer.agency_id)},
        )
    except StripeUnavailable as error:
        raise provider_error(error) from error

    async def keep(uow: UnitOfWork) -> str:
        return await cards.keep_customer_id(uow.conn, payer.id, made)

    return await ctx.services.transact(keep, audited=False)  # the card it is for is audited


def _check_payment_method_id(payment_method_id: str) -> str:
    payment_method_id = payment_method_id.strip()
    if not payment_method_id.startswith("pm_") or len(payment_method_id) > 255:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "Send the id of a PaymentMethod made by Stripe.js (pm_…).",
            ("paymentMethodId",),
        )
    return payment_method_id


async def add_payment_card(
    ctx: RequestContext, sub_account_id: str, payment_method_id: str, make_default: bool
) -> PaymentCard:
    stripe = ctx.services.payments()
    viewer = await ctx.viewer()
    actor = await ctx.actor()
    payment_method_id = _check_payment_method_id(payment_method_id)
    sub_account, payer = await sub_account_and_payer(ctx, viewer, sub_account_id, "subAccountId")
    check_changeable(sub_account, "subAccountId")
    customer = await customer_of(ctx, stripe, payer)
    card_id = uuid.uuid4()
    try:
        details = await stripe.attach_card(
            f"agencyhub-attach-{card_id}", payment_method_id, customer
        )
    except CardRefused as refused:
        raise DomainError(
            ErrorCode.CARD_DECLINED,
            f"The card was declined: {refused.reason}",
            ("paymentMethodId",),
        ) from refused
    except StripeUnavailable as error:
        raise provider_error(error) from error
    now = ctx.services.clock()

    async def save(uow: UnitOfWork) -> PaymentCard:
        # Both rows locked (in id order): card changes of one payer go one at a time.
        locked, _ = await lock_sub_accounts(
            uow, viewer, (sub_account.id, "subAccountId"), (payer.id, "subAccountId")
        )
        check_changeable(locked, "subAccountId")
        first = not await cards.cards_of(uow.conn, payer.id)
        card = PaymentCard(
            id=card_id,
            agency_id=payer.agency_id,
            payer_id=payer.id,
            stripe_payment_method_id=payment_method_id,
            brand=details.brand,
            last4=details.last4,
            exp_month=details.exp_month,
            exp_year=details.exp_year,
            is_default=make_default or first,
            created_at=now,
        )
        await cards.add_card(uow.conn, card)
        uow.audit(actor, rules.card_added(card, payer))
        uow.wake(auto_recharge.JOB)  # a recharge waiting for another card may go now
        return card

    try:
        return await ctx.services.transact(save)
    except UniqueViolation:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "That card is saved already.", ("paymentMethodId",)
        ) from None


async def _card_and_payer(
    ctx: RequestContext, viewer: Viewer, global_id: str
) -> tuple[PaymentCard, SubAccount]:
    async with ctx.services.database.read() as conn:
        card = await cards.card_by_id(conn, decode(global_id, "PaymentCard", "id"))
    if card is None or card.agency_id != viewer.agency_id:
        raise not_found("id", "card")
    payer = await ctx.loaders.sub_account_by_id.load(card.payer_id)
    assert payer is not None
    require(viewer, Action.MAKE_PAYMENTS, sub_account_target(payer))
    check_changeable(payer)
    return card, payer


async def _locked_card(uow: UnitOfWork, viewer: Viewer, card: PaymentCard) -> SubAccount:
    """The payer, locked and still changeable; the card, still there."""
    [payer] = await lock_sub_accounts(uow, viewer, (card.payer_id, "id"))
    check_changeable(payer)
    if await cards.card_by_id(uow.conn, card.id) is None:
        raise not_found("id", "card")
    return payer


async def set_default_payment_card(ctx: RequestContext, global_id: str) -> PaymentCard:
    ctx.services.payments()
    viewer = await ctx.viewer()
    actor = await ctx.actor()
    card, _ = await _card_and_payer(ctx, viewer, global_id)

    async def make_default(uow: UnitOfWork) -> PaymentCard:
        payer = await _locked_card(uow, viewer, card)
        await cards.make_default(uow.conn, card)
        made = replace(card, is_default=True)
        uow.audit(actor, rules.default_card_set(made, payer))
        uow.wake(auto_recharge.JOB)  # a recharge waiting for another card may go now
        return made

    return await ctx.services.transact(make_default)


async def remove_payment_card(ctx: RequestContext, global_id: str) -> UUID:
    """Detached at Stripe first, then removed here; a removed default hands over to the newest
    other card."""
    stripe = ctx.services.payments()
    viewer = await ctx.viewer()
    actor = await ctx.actor()
    card, _ = await _card_and_payer(ctx, viewer, global_id)
    try:
        await stripe.detach_card(f"agencyhub-detach-{card.id}", card.stripe_payment_method_id)
    except StripeUnavailable as error:
        raise provider_error(error) from error

    async def remove(uow: UnitOfWork) -> UUID:
        payer = await _locked_card(uow, viewer, card)
        await cards.remove_card(uow.conn, card)
        uow.audit(actor, rules.card_removed(card, payer))
        uow.wake(auto_recharge.JOB)  # a recharge waiting for another card may go now
        return card.id

    return await ctx.services.transact(remove)


async def cards_for(ctx: RequestContext, sub_account: SubAccount) -> list[PaymentCard]:
    """The cards of whoever pays for `sub_account`; none for a viewer who may not see the
    payer (a client's users see no agency cards)."""
    viewer = await ctx.viewer()
    primary = await ctx.loaders.primary_sub_account_by_agency.load(sub_account.agency_id)
    assert primary is not None
    payer = rules.payer_of(sub_account, primary)
    if not can(viewer, Action.VIEW_SUB_ACCOUNT, sub_account_target(payer)):
        return []
    return await ctx.loaders.cards_by_payer.load(payer.id)


async def card_node(ctx: RequestContext, key: UUID) -> PaymentCard | None:
    viewer = await ctx.viewer()
    async with ctx.services.database.read() as conn:
        card = await cards.card_by_id(conn, key)
    if card is None or card.agency_id != viewer.agency_id:
        return None
    payer = await ctx.loaders.sub_account_by_id.load(card.payer_id)
    if payer is None or not can(viewer, Action.VIEW_SUB_ACCOUNT, sub_account_target(payer)):
        return None
    return card
