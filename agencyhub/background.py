"""The jobs the server runs itself, besides the outbox relay: the payment jobs, each every so
often, and the webhook deliveries, woken by new ones; each also a command for cron
(`agencyhub reconcile-payments`, `pay-out`, `charge-auto-allocations`, `deliver-webhooks`).

Every server process starts a runner; each job takes its own PostgreSQL advisory lock for a
run (`persistence.jobs.sole_runner`), so one process of the deployment runs it at a time and
the others find the lock taken and wait for their next turn. A run that fails is logged and
tried again at the next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from persistence import metrics
from resolvers.context import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    """`run` every `every_seconds`, and at once when a commit in this process wrote work for
    it (`UnitOfWork.wake`, `Services.wake_job`)."""

    name: str
    every_seconds: float
    run: Callable[[Services], Awaitable[int]]


async def run_counted(
    name: str, run: Callable[[Services], Awaitable[int]], services: Services
) -> int:
    """One run of a job, counted in the metrics (`agencyhub_job_runs`, `agencyhub_job_items`):
    failed when it raises, ok otherwise (also when another process held the job's lock: that
    is `agencyhub_job_skipped`)."""
    try:
        done = await run(services)
    except Exception:
        metrics.JOB_RUNS.labels(name, "failed").inc()
        raise
    metrics.JOB_RUNS.labels(name, "ok").inc()
    if done:
        metrics.JOB_DONE.labels(name).inc(done)
    return done


class JobRunner:
    def __init__(self, services: Services, jobs: list[PeriodicJob]) -> None:
        self._services = services
        self._jobs = jobs
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for job in self._jobs:
            self._tasks.append(asyncio.create_task(self._loop(job), name=f"job-{job.name}"))

    async def _loop(self, job: PeriodicJob) -> None:
        while True:
            try:
                done = await run_counted(job.name, job.run, self._services)
                if done:
                    log.info("%s: %d done", job.name, done)
            except Exception:
                log.warning(
                    "%s failed; trying again in %.0f s", job.name, job.every_seconds, exc_info=True
                )
            # The next turn comes after `every_seconds`, or sooner when a commit wrote work
            # for this job in this process (`Services.wake_job`).
            wakeup = self._services.wakeup(job.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), job.every_seconds)
            wakeup.clear()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()


HOUR = 3600.0
MINUTE = 60.0


def payment_jobs(reconcile_seconds: float) -> list[PeriodicJob]:
    from resolvers import jobs

    return [
        PeriodicJob("reconcile-payments", reconcile_seconds, jobs.reconcile_payments),
        PeriodicJob("pay-out", HOUR, jobs.pay_out),
        PeriodicJob("charge-auto-allocations", HOUR, jobs.charge_auto_allocations),
        # Woken by the debits that write requests, caps reached and alerts raised; the turn
        # every minute catches what another process wrote and the backoffs that ended.
        PeriodicJob("charge-auto-recharges", MINUTE, jobs.charge_auto_recharges),
    ]


def wallet_jobs() -> list[PeriodicJob]:
    """Spending caps and alerts, which need no payments."""
    from resolvers import jobs

    return [
        PeriodicJob("apply-spending-caps", MINUTE, jobs.apply_spending_caps),
        PeriodicJob("send-alerts", MINUTE, jobs.send_alerts),
        PeriodicJob("low-balance-alerts", HOUR, jobs.raise_low_balance_alerts),
    ]


def webhook_job(every_seconds: float) -> PeriodicJob:
    """Outgoing webhooks: woken by each commit that queued a delivery in this process, and
    polling every `every_seconds` for those queued by other processes and for retries."""
    from resolvers import jobs

    return PeriodicJob("deliver-webhooks", every_seconds, jobs.deliver_webhooks)
