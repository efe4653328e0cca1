"""`agencyhub reconcile --from --to`: every purchase made in the range beside its PaymentIntent
at Stripe and its ledger credit, every payout beside its Transfer (`domain.reconciliation`
decides what disagrees). Read only: it changes nothing, here or at Stripe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from domain.payments import IntentState, Purchase
from domain.payouts import TransferState
from domain.reconciliation import Line, Unreachable, check_payout, check_purchase
from persistence import ledger, payouts, purchases
from persistence.stripe_gateway import StripeGateway, StripeUnavailable
from resolvers.context import Services
from resolvers.purchases import INTENT_CLOCK_SKEW


async def reconcile(services: Services, start: datetime, end: datetime) -> AsyncIterator[Line]:
    """The report's lines for records made in [start, end): purchases, then payouts, each
    oldest first, a batch at a time (never the whole range in memory)."""
    stripe = services.payments()
    now = services.clock()
    after = None
    while True:
        async with services.database.read() as conn:
            batch = await purchases.purchases_between(conn, start, end, after)
            credits = await ledger.purchase_credits(conn, [p.reference for p in batch])
        for purchase in batch:
            intent = await _intent(stripe, purchase.stripe_payment_intent_id)
            others = await _earlier_attempts(stripe, purchase)
            credited = credits.get(purchase.reference, 0)
            yield check_purchase(purchase, intent, credited, now, others)
        if len(batch) < purchases.BATCH:
            break
        after = (batch[-1].created_at, batch[-1].id)
    after = None
    while True:
        async with services.database.read() as conn:
            sent = await payouts.payouts_between(conn, start, end, after)
        for payout in sent:
            transfer = await _transfer(stripe, payout.stripe_transfer_id)
            yield check_payout(payout, transfer, now)
        if len(sent) < payouts.BATCH:
            break
        after = (sent[-1].created_at, sent[-1].id)


async def _intent(stripe: StripeGateway, intent_id: str | None) -> IntentState | Unreachable | None:
    if intent_id is None:
        return None
    try:
        return await stripe.intent(intent_id)
    except StripeUnavailable as error:
        return Unreachable(str(error))


async def _earlier_attempts(
    stripe: StripeGateway, purchase: Purchase
) -> Sequence[IntentState] | Unreachable:
    """The intents of a retried purchase's earlier attempts (a first attempt has none: one
    Idempotency-Key, one intent)."""
    if purchase.attempts == 1 or not purchase.stripe_customer_id:
        return ()
    since = purchase.created_at - INTENT_CLOCK_SKEW
    try:
        mine = await stripe.intents_for(
            purchase.stripe_customer_id, {"purchase_id": str(purchase.id)}, since
        )
    except StripeUnavailable as error:
        return Unreachable(str(error))
    return [i for i in mine if i.id != purchase.stripe_payment_intent_id]


async def _transfer(
    stripe: StripeGateway, transfer_id: str | None
) -> TransferState | Unreachable | None:
    if transfer_id is None:
        return None
    try:
        return await stripe.transfer_by_id(transfer_id)
    except StripeUnavailable as error:
        return Unreachable(str(error))
