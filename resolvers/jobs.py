"""Periodic jobs, run from the command line (cron) and safe to run any number of times."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.exc import IntegrityError

from domain.billing_cycle import add_months
from domain.ledger import LedgerKind, Movement
from domain.money import minutes_to_seconds
from persistence import jobs, ledger, outbox
from resolvers.context import Services


def periods_until(anchor: date, today: date) -> list[date]:
    """Every plan period's first day from the anchor up to today (monthly, clamped)."""
    periods, months = [], 0
    while (start := add_months(anchor, months)) <= today:
        periods.append(start)
        months += 1
    return periods


async def grant_plan_minutes(services: Services, today: date) -> int:
    """Grant each agency's included minutes to its primary once per plan period.

    A period already granted is skipped; two jobs racing on one period collide on the
    plan_grant primary key and the loser's transaction (grant included) rolls back.
    """
    async with services.database.read() as conn:
        terms = await jobs.grant_terms(conn)
    granted = 0
    for agency in terms:
        async with services.database.read() as conn:
            done = await jobs.granted_periods(conn, agency.agency_id)
        for period in periods_until(agency.plan_started_on, today):
            if period in done:
                continue
            now = services.clock()
            grant = Movement(
                agency.agency_id,
                agency.primary_id,
                agency.included_tier,
                minutes_to_seconds(agency.included_monthly_minutes),
                LedgerKind.PLAN_GRANT,
                f"plan:{agency.plan_name}:{period}",
            )
            try:
                async with services.uow() as uow:
                    await jobs.record_grant(uow.conn, agency.agency_id, period, now)
                    await ledger.apply(uow.conn, [grant], now)
            except IntegrityError:
                continue  # another run granted this period first
            granted += 1
    return granted


async def purge_removed(services: Services) -> int:
    """Purge sub-accounts removed longer ago than the retention period."""
    now = services.clock()
    async with services.database.read() as conn:
        due = await jobs.removed_before(conn, now - services.removed_retention)
    for sub_account_id in due:
        async with services.uow() as uow:
            await jobs.purge(uow.conn, sub_account_id, now)
    return len(due)


async def prune_outbox(services: Services, keep: timedelta) -> int:
    """Published events older than `keep` can no longer be replayed with afterSequence."""
    async with services.uow() as uow:
        return await outbox.prune_published(uow.conn, services.clock() - keep)
