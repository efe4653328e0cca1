"""Threshold auto-recharge: the setting (`setAutoRecharge`) and the job that charges.

A debit that leaves a tier below its threshold writes a request in its own transaction
(`persistence.auto_recharge.request`: ingestion, transfers out) and wakes this process's job.
The job (`charge-auto-recharges`, under its advisory lock) turns each open request into one
AUTO_RECHARGE purchase through the phases of `buyMinutes` (`resolvers.purchases.charge`):

1. under the sub-account's lock and the request's, the PENDING purchase is written and named
   the request's recharge in flight (so a second run, or a second request, finds it);
2. Stripe is charged outside any transaction under the purchase's idempotency key;
3. `settle_in` credits once; then the request is finished: closed after a success, kept open
   with a six-hour backoff (or until the payer's default card changes) after a failure, which
   raises the PAYMENT_FAILED alert.

A purchase left PENDING by a crash or an unreachable Stripe is settled by
`reconcile-payments` like any other; the next run of this job finishes its request.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from domain import auto_recharge as rules
from domain import payments
from domain.agency import SubAccount, SubAccountStatus
from domain.alerts import Alert, AlertKind
from domain.audit import Actor
from domain.auto_recharge import AutoRecharge, Step
from domain.errors import DomainError
from domain.money import Tier
from domain.payments import PaymentStatus, Purchase, PurchaseKind
from domain.sub_account import check_changeable
from persistence import agencies, auto_recharge, purchases
from persistence.auto_recharge import Request
from persistence.errors import UniqueViolation
from persistence.queries.loaders import (
    agencies_by_id,
    balances_by_sub_account,
    primary_sub_accounts_by_agency,
    sub_accounts_by_id,
)
from persistence.unit_of_work import UnitOfWork
from resolvers.auto_allocations import payer_card
from resolvers.context import RequestContext, Services
from resolvers.global_id import to_global_id
from resolvers.payment_cards import sub_account_and_payer
from resolvers.purchases import charge
from resolvers.sub_account import lock_sub_accounts

log = logging.getLogger(__name__)

JOB = auto_recharge.JOB


async def set_auto_recharge(
    ctx: RequestContext,
    sub_account_id: str,
    enabled: bool,
    tier: Tier,
    threshold_minutes: int,
    top_up_minutes: int,
) -> SubAccount:
    """Whoever may buy minutes on the sub-account (and use its payer's cards) may set it."""
    viewer = await ctx.viewer()
    actor = await ctx.actor()
    sub_account, _ = await sub_account_and_payer(ctx, viewer, sub_account_id, "subAccountId")
    now = ctx.services.clock()

    async def store(uow: UnitOfWork) -> SubAccount:
        [locked] = await lock_sub_accounts(uow, viewer, (sub_account.id, "subAccountId"))
        check_changeable(locked, "subAccountId")
        [current] = await auto_recharge.settings_of(uow.conn, [locked.id])
        setting = rules.configure(
            locked,
            current,
            enabled,
            tier,
            threshold_minutes,
            top_up_minutes,
            ctx.services.prices,
        )
        await auto_recharge.save_setting(uow.conn, locked.agency_id, locked.id, setting, now)
        if not setting.enabled:
            for other in Tier:  # nothing more to do for open requests
                await auto_recharge.close_idle(uow.conn, locked.id, other)
        uow.audit(actor, rules.changed(locked, setting))
        return locked

    return await ctx.services.transact(store)


async def after_debit(
    uow: UnitOfWork,
    sub_account: SubAccount,
    setting: AutoRecharge,
    tier: Tier,
    seconds_after: int,
    now: datetime,
) -> None:
    """In a debit's transaction (a transfer out): a request when it left the tier below the
    sub-account's threshold (ingestion does the same for a whole batch at once). `setting` is
    the sub-account's, read under its lock (`auto_recharge.settings_of`): read before the
    debit, it is not read while the balance rows are held."""
    if setting.wants(tier, seconds_after):
        await auto_recharge.request(uow.conn, sub_account.agency_id, [(sub_account.id, tier)], now)
        uow.wake(JOB)


# ---- the job ---------------------------------------------------------------------------------


async def charge_auto_recharges(services: Services) -> int:
    """Work through the open requests; returns how many recharges succeeded."""
    if services.stripe is None:
        return 0
    stripe = services.stripe
    async with services.database.read() as conn:
        requests = await auto_recharge.open_requests(conn)
    succeeded = 0
    for request in requests:
        if request.purchase_id is not None:
            # In flight when the last run ended (a crash, Stripe unreachable, a webhook
            # settled it since): finish it if it has settled, else leave it.
            if not await _finish(services, request, request.purchase_id):
                continue
        purchase = await _begin(services, request)
        if purchase is None:
            continue
        after = await charge(services, stripe, purchase)
        succeeded += await _finish(services, request, after.id) and (
            after.status is PaymentStatus.SUCCEEDED
        )
    return succeeded


async def _begin(services: Services, request: Request) -> Purchase | None:
    """Phase 1: the PENDING purchase, committed, and named the request's recharge in flight;
    None when there is nothing to charge now (the request may have been closed)."""

    async def write(uow: UnitOfWork) -> Purchase | None:
        now = services.clock()
        found = await agencies.sub_accounts_for_update(
            uow.conn, request.agency_id, [request.sub_account_id]
        )
        sub_account = found.get(request.sub_account_id)
        locked = await auto_recharge.request_for_update(
            uow.conn, request.sub_account_id, request.tier
        )
        if sub_account is None or locked is None or locked.purchase_id is not None:
            return None
        [setting] = await auto_recharge.settings_of(uow.conn, [sub_account.id])
        [balances] = await balances_by_sub_account(uow.conn, [sub_account.id])
        seconds = sum(b.seconds for b in balances if b.tier is request.tier)
        [primary] = await primary_sub_accounts_by_agency(uow.conn, [sub_account.agency_id])
        assert primary is not None
        payer = payments.payer_of(sub_account, primary)
        customer, card = await payer_card(uow, payer.id)
        active = sub_account.status is SubAccountStatus.ACTIVE
        step = rules.next_step(setting, active, request.tier, seconds, False, card, now)
        if step is Step.DROP:
            await auto_recharge.close(uow.conn, sub_account.id, request.tier)
            return None
        if step is Step.WAIT:
            return None
        try:
            quote = payments.quote_purchase(
                sub_account, request.tier, setting.top_up_minutes, services.prices
            )
        except DomainError as error:  # the markup changed since it was set
            log.warning("auto-recharge of %s not charged: %s", sub_account.id, error.message)
            return None
        purchase = payments.new_purchase(
            uuid.uuid4(),
            sub_account,
            payer,
            PurchaseKind.AUTO_RECHARGE,
            quote,
            customer,
            card,
            now,
        )
        await purchases.add_purchase(uow.conn, purchase)
        await auto_recharge.start(uow.conn, sub_account.id, request.tier, purchase.id, now)
        return purchase

    try:
        return await services.transact(write, audited=False)  # audited when it settles
    except UniqueViolation:  # a recharge of this tier is in flight already
        return None


async def _finish(services: Services, request: Request, purchase_id: uuid.UUID) -> bool:
    """Phase 4: once the purchase has settled, its request is closed (success) or kept open
    behind the backoff (failure: audited, PAYMENT_FAILED raised). False while it is PENDING,
    or when another run finished it."""

    async def record(uow: UnitOfWork) -> bool:
        now = services.clock()
        locked = await auto_recharge.request_for_update(
            uow.conn, request.sub_account_id, request.tier
        )
        if locked is None or locked.purchase_id != purchase_id:
            return False
        purchase = await purchases.purchase_by_id(uow.conn, purchase_id)
        assert purchase is not None
        if purchase.status is PaymentStatus.PENDING:
            return False
        if purchase.status is PaymentStatus.SUCCEEDED:
            await auto_recharge.succeeded(uow.conn, request.sub_account_id, request.tier, now)
            return True
        [setting] = await auto_recharge.settings_of(uow.conn, [request.sub_account_id])
        blocked = rules.failed(setting, purchase.stripe_payment_method_id, now)
        await auto_recharge.failed(uow.conn, request.sub_account_id, request.tier, blocked, now)
        await _announce_failure(uow, purchase, setting)
        return True

    return await services.transact(record, audited=False)  # a job: its notes are its own


async def _announce_failure(uow: UnitOfWork, purchase: Purchase, setting: AutoRecharge) -> None:
    [sub_account] = await sub_accounts_by_id(uow.conn, [purchase.sub_account_id])
    [agency] = await agencies_by_id(uow.conn, [purchase.agency_id])
    assert sub_account is not None and agency is not None
    uow.audit(
        Actor(purchase.agency_id, None), rules.charge_failed(sub_account, purchase.failure_reason)
    )
    day = purchase.completed_at or purchase.created_at
    await uow.raise_alert(
        Alert(
            purchase.agency_id,
            sub_account.id,
            AlertKind.PAYMENT_FAILED,
            day.astimezone(ZoneInfo(agency.time_zone)).date(),
            {
                "purchaseId": to_global_id("Purchase", purchase.id),
                "tier": setting.tier.value,
                "minutes": setting.top_up_minutes,
                "reason": purchase.failure_reason,
            },
        )
    )
