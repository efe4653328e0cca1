"""Periodic jobs, run from the command line (cron) and safe to run any number of times."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from functools import partial
from uuid import UUID

from domain.billing_cycle import periods_begun
from domain.ledger import LedgerKind, Movement
from domain.money import minutes_to_seconds
from persistence import jobs, ledger, metrics, outbox
from persistence.errors import UniqueViolation
from persistence.unit_of_work import UnitOfWork
from resolvers import (
    alerts,
    auto_allocations,
    auto_recharges,
    payouts,
    purchases,
    spending_caps,
    webhooks,
)
from resolvers.context import Services


async def grant_plan_minutes(services: Services) -> int:
    """Grant each agency's included minutes to its primary once per plan period, from the
    agency's local midnight on (its renewal date turns over there, not at UTC's).

    A period already granted is skipped; two jobs racing on one period collide on the
    plan_grant primary key and the loser's transaction (grant included) rolls back.
    """
    now = services.clock()
    async with services.database.read() as conn:
        terms = await jobs.grant_terms(conn)
    granted = 0
    for agency in terms:
        async with services.database.read() as conn:
            done = await jobs.granted_periods(conn, agency.agency_id)
        for period in periods_begun(agency.plan_started_on, now, agency.time_zone):
            if period not in done:
                granted += await _grant_period(services, agency, period, now)
    return granted


async def _grant_period(
    services: Services, agency: jobs.GrantTerms, period: date, now: datetime
) -> bool:
    """True when this run granted the period, false when another run had."""
    grant = Movement(
        agency.agency_id,
        agency.primary_id,
        agency.included_tier,
        minutes_to_seconds(agency.included_monthly_minutes),
        LedgerKind.PLAN_GRANT,
        f"plan:{agency.plan_name}:{period}",
    )

    async def record(uow: UnitOfWork) -> None:
        await jobs.record_grant(uow.conn, agency.agency_id, period, now)
        await ledger.apply(uow.conn, [grant], now)

    try:
        await services.transact(record, audited=False)  # a job, not a change through the API
    except UniqueViolation:
        return False  # another run granted this period first
    return True


async def purge_removed(services: Services) -> int:
    """Purge sub-accounts removed longer ago than the retention period."""
    now = services.clock()
    async with services.database.read() as conn:
        due = await jobs.removed_before(conn, now - services.removed_retention)
    for sub_account_id in due:
        await services.transact(
            partial(_purge, sub_account_id=sub_account_id, now=now), audited=False
        )
    return len(due)


async def _purge(uow: UnitOfWork, sub_account_id: UUID, now: datetime) -> None:
    await jobs.purge(uow.conn, sub_account_id, now)


async def prune_outbox(services: Services, keep: timedelta) -> int:
    """Published events older than `keep` can no longer be replayed with afterSequence."""
    cutoff = services.clock() - keep

    async def prune(uow: UnitOfWork) -> int:
        return await outbox.prune_published(uow.conn, cutoff)

    return await services.transact(prune, audited=False)


async def reconcile_payments(services: Services) -> int:
    """Settle purchases PENDING for more than 10 minutes from what Stripe says of them."""
    return await _as_sole_runner(services, "reconcile-payments", purchases.reconcile_pending)


async def pay_out(services: Services) -> int:
    """Pay out every agency's unpaid earnings that reached its threshold (and resend payouts a
    crash left PENDING)."""
    return await _as_sole_runner(services, "pay-out", payouts.pay_out)


async def charge_auto_allocations(services: Services) -> int:
    """Charge the monthly auto allocations due (and retry the failed ones that are due)."""
    return await _as_sole_runner(
        services, "charge-auto-allocations", auto_allocations.charge_auto_allocations
    )


async def _as_sole_runner(
    services: Services, job: str, run: Callable[[Services], Awaitable[int]]
) -> int:
    """`run` if this process is the deployment's one runner of `job` now; else 0 (counted as
    skipped: another process holds the job's lock)."""
    async with jobs.sole_runner(services.database, job) as sole:
        if not sole:
            metrics.JOB_SKIPPED.labels(job).inc()
            return 0
        return await run(services)


async def deliver_webhooks(services: Services) -> int:
    """Send the webhook deliveries that are due (one runner in the deployment at a time)."""
    return await _as_sole_runner(services, "deliver-webhooks", webhooks.deliver_webhooks)


async def charge_auto_recharges(services: Services) -> int:
    """Turn the open auto-recharge requests into purchases and finish those that settled."""
    return await _as_sole_runner(
        services, "charge-auto-recharges", auto_recharges.charge_auto_recharges
    )


async def apply_spending_caps(services: Services) -> int:
    """Cap the sub-accounts ingestion found over their cap; lift those a new period freed."""
    return await _as_sole_runner(services, "apply-spending-caps", spending_caps.apply_spending_caps)


async def send_alerts(services: Services) -> int:
    """Mail the alerts raised and not sent yet."""
    return await _as_sole_runner(services, "send-alerts", alerts.send_alerts)


async def raise_low_balance_alerts(services: Services) -> int:
    """LOW_BALANCE alerts for the sub-accounts whose runway is short (once a day each)."""
    return await _as_sole_runner(services, "low-balance-alerts", alerts.raise_low_balance_alerts)
