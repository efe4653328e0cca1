"""Buying minutes with a card, in atomic phases (DESIGN.md, "Payments with Stripe"):

1. one transaction writes the purchase PENDING (and the idempotency key) and commits;
2. Stripe is asked outside any transaction, with an Idempotency-Key made from the purchase's
   id, so a retry, a crash and the reconciliation job all reach Stripe as the same request;
3. `settle` records the answer in a second transaction, guarded so that the purchase leaves
   PENDING once and its minutes are credited once, whichever of Stripe's answer, its webhook
   (`receive_webhook`) and the reconciliation job (`reconcile_pending`) comes first.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from uuid import UUID

from domain import payments as rules
from domain.audit import Actor
from domain.errors import DomainError, ErrorCode
from domain.events import usage_event
from domain.money import Tier
from domain.paging import Page
from domain.payments import Declined, IntentState, PaymentStatus, Purchase, PurchaseKind
from domain.sub_account import check_changeable
from persistence import idempotency, ledger, live, payment_cards, purchases
from persistence.errors import UniqueViolation
from persistence.queries.loaders import agencies_by_id, sub_accounts_by_id
from persistence.stripe_gateway import (
    BadSignature,
    StripeGateway,
    StripeUnavailable,
    intent_state,
)
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext, Services
from resolvers.ids import decode, not_found
from resolvers.paging import page_size
from resolvers.payment_cards import sub_account_and_payer
from resolvers.sub_account import lock_sub_accounts
from resolvers.viewer import may_read

log = logging.getLogger(__name__)

# Stripe's clock and ours may differ a little: intents are looked for from this much before
# the purchase was written.
INTENT_CLOCK_SKEW = timedelta(minutes=5)


async def buy_minutes(
    ctx: RequestContext,
    sub_account_id: str,
    tier: Tier,
    minutes: int,
    card_id: str | None,
    idempotency_key: str,
) -> Purchase:
    """The purchase as it stands after Stripe's answer: SUCCEEDED (credited), FAILED (the
    card was declined), or PENDING (Stripe has not decided, or could not be reached: the
    webhook or the reconciliation job will settle it). A retry with the same key returns
    the same purchase and charges nothing twice."""
    stripe = ctx.services.payments()
    viewer = await ctx.viewer()
    actor = await ctx.actor()
    key = rules.check_idempotency_key(idempotency_key)
    rules.check_minutes(minutes)
    sub_account, payer = await sub_account_and_payer(ctx, viewer, sub_account_id, "subAccountId")
    card_key = None if card_id is None else decode(card_id, "PaymentCard", "cardId")
    request = {"sub": sub_account_id, "tier": tier.value, "minutes": minutes, "card": card_id}
    fingerprint = idempotency.request_hash("buyMinutes", request)
    scope = f"purchase:{viewer.agency_id}"
    now = ctx.services.clock()

    async def begin(uow: UnitOfWork) -> Purchase:
        [locked] = await lock_sub_accounts(uow, viewer, (sub_account.id, "subAccountId"))
        earlier = await idempotency.recall(uow.conn, scope, key, fingerprint)
        if earlier is not None:
            found = await purchases.purchase_by_id(uow.conn, UUID(earlier["purchase_id"]))
            assert found is not None
            return found
        check_changeable(locked, "subAccountId")
        quote = rules.quote_purchase(locked, tier, minutes, ctx.services.prices)
        card = await _card_to_charge(uow, payer.id, card_key)
        customer = await payment_cards.customer_id(uow.conn, payer.id)
        assert customer is not None, "a payer with a card has its Customer"
        purchase = rules.new_purchase(
            uuid.uuid4(),
            locked,
            payer,
            PurchaseKind.CLIENT_PURCHASE,
            quote,
            customer,
            card.stripe_payment_method_id,
            now,
            created_by=actor.email,
        )
        await purchases.add_purchase(uow.conn, purchase)
        await idempotency.remember(
            uow.conn, scope, key, fingerprint, {"purchase_id": str(purchase.id)}, now
        )
        return purchase

    # Not audited here: the purchase is logged when it succeeds (`settle`), by whoever
    # settles it, under the buyer's name.
    try:
        purchase = await ctx.services.transact(begin, audited=False)
    except UniqueViolation:
        # A concurrent twin with the same key committed first: this is its retry.
        purchase = await ctx.services.transact(begin, audited=False)
    if purchase.status is PaymentStatus.PENDING:
        purchase = await charge(ctx.services, stripe, purchase)
    return purchase


async def _card_to_charge(
    uow: UnitOfWork, payer_id: UUID, card_key: UUID | None
) -> rules.PaymentCard:
    if card_key is not None:
        card = await payment_cards.card_by_id(uow.conn, card_key)
        if card is None or card.payer_id != payer_id:
            raise not_found("cardId", "card")
        return card
    for card in await payment_cards.cards_of(uow.conn, payer_id):
        if card.is_default:
            return card
    raise DomainError(
        ErrorCode.NO_PAYMENT_CARD, "Add a card first: there is none to charge.", ("cardId",)
    )


async def charge(services: Services, stripe: StripeGateway, purchase: Purchase) -> Purchase:
    """Phase 2 and 3: ask Stripe (again, under the same key, if this is a retry) and settle.
    Stripe unreachable leaves the purchase PENDING for the webhook or the reconciliation job."""
    if purchase.stripe_payment_method_id is None:
        return await settle(services, purchase, Declined("There is no card to charge."))
    try:
        answer = await stripe.charge(
            purchase.stripe_idempotency_key,
            purchase.stripe_customer_id,
            purchase.stripe_payment_method_id,
            purchase.amount_cents,
            _intent_metadata(purchase),
        )
    except StripeUnavailable:
        log.warning("purchase %s left PENDING: Stripe did not answer", purchase.id)
        return purchase
    return await settle(services, purchase, answer)


def _intent_metadata(purchase: Purchase) -> dict[str, str]:
    """What the PaymentIntent carries of us: how a webhook and the reconciliation job find
    the purchase (and which attempt of it) again."""
    return {
        "purchase_id": str(purchase.id),
        "agency_id": str(purchase.agency_id),
        "attempt": str(purchase.attempts),
    }


async def settle(
    services: Services, purchase: Purchase, answer: IntentState | Declined
) -> Purchase:
    """Phase 3 on its own transaction: the purchase as it stands afterwards."""
    now = services.clock()

    async def record(uow: UnitOfWork) -> Purchase:
        return await settle_in(uow, purchase.id, purchase.attempts, answer, now)

    return await services.transact(record, audited=False)  # audited by settle_in on success


async def settle_in(
    uow: UnitOfWork,
    purchase_id: UUID,
    attempt: int,
    answer: IntentState | Declined,
    now: datetime,
) -> Purchase:
    """Record what Stripe said of `attempt` of a purchase, in `uow`: at most one caller ever
    moves it out of PENDING, only the one that moved it to SUCCEEDED credits its minutes, and
    an answer about an earlier attempt changes nothing."""
    purchase = await purchases.purchase_by_id(uow.conn, purchase_id)
    assert purchase is not None
    if not rules.is_current_attempt(purchase, attempt):
        log.warning("purchase %s: an answer about an earlier attempt left aside", purchase.id)
        return purchase
    intent_id = answer.id if isinstance(answer, IntentState) else answer.intent_id
    status = rules.outcome(purchase, answer)
    if status is PaymentStatus.SUCCEEDED:
        assert intent_id is not None
        if await purchases.settle_succeeded(uow.conn, purchase.id, attempt, intent_id, now):
            await _credit(uow, purchase, now)
    elif status is PaymentStatus.FAILED:
        retry_at = rules.next_attempt_after(purchase, now)
        reason = rules.failure_reason(answer)
        await purchases.settle_failed(
            uow.conn, purchase.id, attempt, intent_id, reason, retry_at, now
        )
    elif intent_id is not None:
        await purchases.note_intent(uow.conn, purchase.id, attempt, intent_id)
    settled = await purchases.purchase_by_id(uow.conn, purchase.id)
    assert settled is not None
    return settled


async def _credit(uow: UnitOfWork, purchase: Purchase, now: datetime) -> None:
    """The minutes, the live event and the audit line of a purchase that just succeeded."""
    await ledger.apply(uow.conn, [purchase.credit()], now)
    [sub_account] = await sub_accounts_by_id(uow.conn, [purchase.sub_account_id])
    [agency] = await agencies_by_id(uow.conn, [purchase.agency_id])
    assert sub_account is not None and agency is not None
    for snapshot in await live.usage_snapshots(uow.conn, [sub_account], agency.time_zone, now):
        uow.publish(usage_event(snapshot))
    uow.audit(
        Actor(purchase.agency_id, purchase.created_by), rules.purchased(purchase, sub_account)
    )


# ---- Stripe's webhooks -----------------------------------------------------------------------

_INTENT_EVENTS = {"payment_intent.succeeded", "payment_intent.payment_failed"}


async def receive_webhook(services: Services, payload: bytes, signature: str | None) -> int:
    """An HTTP status for Stripe: 400 when the signature does not verify (nothing applied);
    200 otherwise, for an event applied now, one applied before, or a type we ignore."""
    if services.stripe is None:
        return 404
    try:
        event = services.stripe.verify(payload, signature)
    except BadSignature:
        log.warning("a Stripe webhook with a bad signature was refused")
        return 400
    if event.type not in _INTENT_EVENTS:
        return 200
    answer = intent_state(event.data)
    now = services.clock()

    async def apply(uow: UnitOfWork) -> None:
        await purchases.record_event(uow.conn, event.id, event.type, now)
        purchase = await _purchase_of(uow, answer)
        if purchase is not None:
            await settle_in(uow, purchase.id, rules.about_attempt(answer), answer, now)

    try:
        await services.transact(apply, audited=False)  # audited by settle_in on success
    except UniqueViolation:
        log.info("Stripe event %s was applied before", event.id)
    return 200


async def _purchase_of(uow: UnitOfWork, intent: IntentState) -> Purchase | None:
    """The purchase an intent pays for: by the id we put in its metadata, else by its id."""
    if intent.purchase_id is not None:
        found = await purchases.purchase_by_id(uow.conn, intent.purchase_id)
        if found is not None and found.stripe_payment_intent_id in (None, intent.id):
            return found
    return await purchases.purchase_for_intent(uow.conn, intent.id)


# ---- the reconciliation job ------------------------------------------------------------------


async def reconcile_pending(services: Services) -> int:
    """Ask Stripe about every purchase PENDING for longer than 10 minutes, so a lost webhook
    or a crash between the charge and its recording loses no minutes. A purchase whose
    intent we never learnt is first looked for among its payer's intents (by the metadata we
    put on it): Stripe forgets an Idempotency-Key after 24 hours, so charging again under the
    same key is safe only once we know no intent was made; then it is charged under that key.
    Returns how many purchases it settled."""
    stripe = services.payments()
    now = services.clock()
    async with services.database.read() as conn:
        due = await purchases.pending_since(conn, now - rules.RECONCILE_AFTER, now)
    settled = 0
    for purchase in due:
        try:
            answer = await _known_intent(stripe, purchase)
            if answer is not None:
                after = await settle(services, purchase, answer)
            else:
                after = await charge(services, stripe, purchase)
        except StripeUnavailable:
            continue  # next run
        settled += after.status is not PaymentStatus.PENDING
    return settled


async def _known_intent(stripe: StripeGateway, purchase: Purchase) -> IntentState | None:
    if purchase.stripe_payment_intent_id is not None:
        return await stripe.intent(purchase.stripe_payment_intent_id)
    if not purchase.stripe_customer_id:
        return None  # no card, no Customer: nothing was charged
    # The first attempt's intents are the only ones naming the purchase while it is on its
    # first attempt (and those made before intents carried their attempt have none).
    wanted = {"purchase_id": str(purchase.id)}
    if purchase.attempts > 1:
        wanted["attempt"] = str(purchase.attempts)
    since = purchase.created_at - INTENT_CLOCK_SKEW
    return await stripe.find_intent(purchase.stripe_customer_id, wanted, since)


# ---- reads -----------------------------------------------------------------------------------


async def purchases_page(
    ctx: RequestContext, sub_account_id: UUID, first: int | None, after: str | None
) -> tuple[Page[Purchase], int]:
    size = page_size(first)
    async with ctx.services.database.read() as conn:
        return await purchases.purchases_page(conn, sub_account_id, size, after)


async def purchase_node(ctx: RequestContext, key: UUID) -> Purchase | None:
    viewer = await ctx.viewer()
    async with ctx.services.database.read() as conn:
        purchase = await purchases.purchase_by_id(conn, key)
    if purchase is None or purchase.agency_id != viewer.agency_id:
        return None
    sub_account = await ctx.loaders.sub_account_by_id.load(purchase.sub_account_id)
    if sub_account is None or not may_read(viewer, sub_account):
        return None
    return purchase
