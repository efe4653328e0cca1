"""The monthly auto allocation charge (`charge-auto-allocations`; the server runs it hourly).

For every active secondary whose auto allocation is on, each period begun (in the agency's
zone) since it was turned on and not yet charged gets one AUTO_ALLOCATION purchase per tier,
at base cost, on the primary's default card, through the same atomic phases as `buyMinutes`
(`resolvers.purchases.charge`): the purchase row is written PENDING and committed first, so
the unique key on (sub-account, period, tier) makes "one charge per period" hold whatever runs
at once; Stripe is called outside any transaction under a key made from the row's id and its
attempt; the credit is the guarded settle step's, once.

A failed charge is FAILED with Stripe's reason and a `next_attempt_at` 1 h, 6 h and 24 h after
its first three attempts; each later run retries the due ones on the primary's default card of
that moment, under a new key (a declined request replays as declined at Stripe), then leaves
it FAILED for good (`autoAllocation.lastCharge` shows it).
"""

from __future__ import annotations

import logging
import uuid
from datetime import date
from zoneinfo import ZoneInfo

from domain import payments as rules
from domain.agency import SubAccountStatus
from domain.auto_allocation import Due, keeps_retrying
from domain.money import Tier
from domain.payments import PaymentStatus, Purchase, PurchaseKind
from persistence import payment_cards, purchases
from persistence.errors import UniqueViolation
from persistence.queries.loaders import sub_accounts_by_id
from persistence.queries.sub_accounts import auto_allocations
from persistence.stripe_gateway import StripeGateway
from persistence.unit_of_work import UnitOfWork
from resolvers.context import Services
from resolvers.purchases import charge

log = logging.getLogger(__name__)


async def charge_auto_allocations(services: Services) -> int:
    """Charge what is due and retry what failed; returns how many charges succeeded."""
    stripe = services.payments()
    async with services.database.read() as conn:
        due = await purchases.auto_allocations_due(conn)
    succeeded = 0
    for sub_account in due:
        # The clock is read for each charge: a run can be long, and a purchase stamped with
        # the run's start would look stale to reconcile-payments while still in flight.
        today = services.clock().astimezone(ZoneInfo(sub_account.time_zone)).date()
        for period, tier, minutes in sub_account.charges_due(today):
            purchase = await _begin(services, sub_account, period, tier, minutes)
            if purchase is not None:
                after = await charge(services, stripe, purchase)
                succeeded += after.status is PaymentStatus.SUCCEEDED
    succeeded += await _retry_failed(services, stripe)
    return succeeded


async def _begin(
    services: Services, due: Due, period: date, tier: Tier, minutes: int
) -> Purchase | None:
    """Phase 1: the PENDING row, committed. None when the sub-account is no longer active,
    or when another run wrote this period's charge first (the unique key)."""

    async def write(uow: UnitOfWork) -> Purchase | None:
        [sub_account, primary] = await sub_accounts_by_id(
            uow.conn, [due.sub_account_id, due.primary_id]
        )
        assert sub_account is not None and primary is not None
        if sub_account.status is not SubAccountStatus.ACTIVE:
            return None
        customer, card = await payer_card(uow, primary.id)
        purchase = rules.new_purchase(
            uuid.uuid4(),
            sub_account,
            primary,
            PurchaseKind.AUTO_ALLOCATION,
            rules.quote_auto_allocation(tier, minutes, services.prices),
            customer,
            card,
            services.clock(),
            period_start=period,
        )
        await purchases.add_purchase(uow.conn, purchase)
        return purchase

    try:
        return await services.transact(write, audited=False)  # audited when it succeeds
    except UniqueViolation:
        log.info("another run charges %s's %s for %s", due.sub_account_id, tier, period)
        return None


async def _retry_failed(services: Services, stripe: StripeGateway) -> int:
    async with services.database.read() as conn:
        failed = await purchases.retries_due(conn, services.clock())
    succeeded = 0
    for purchase in failed:

        async def restart(uow: UnitOfWork, purchase: Purchase = purchase) -> Purchase | None:
            [sub_account] = await sub_accounts_by_id(uow.conn, [purchase.sub_account_id])
            [allocation] = await auto_allocations(uow.conn, [purchase.sub_account_id])
            assert sub_account is not None
            active = sub_account.status is SubAccountStatus.ACTIVE
            if not keeps_retrying(allocation, active):
                await purchases.stop_retrying(uow.conn, purchase.id)
                return None
            customer, card = await payer_card(uow, purchase.payer_id)
            look_again_at = services.clock() + rules.RECONCILE_AFTER
            return await purchases.start_retry(uow.conn, purchase, customer, card, look_again_at)

        retried = await services.transact(restart, audited=False)
        if retried is not None:
            after = await charge(services, stripe, retried)
            succeeded += after.status is PaymentStatus.SUCCEEDED
    return succeeded


async def payer_card(uow: UnitOfWork, payer_id: uuid.UUID) -> tuple[str, str | None]:
    """The payer's Customer and default card now; without a card the charge fails (and is
    retried) as any declined one: "There is no card to charge"."""
    customer = await payment_cards.customer_id(uow.conn, payer_id)
    cards = await payment_cards.cards_of(uow.conn, payer_id)
    default = next((card for card in cards if card.is_default), None)
    if customer is None or default is None:
        return customer or "", None
    return customer, default.stripe_payment_method_id
