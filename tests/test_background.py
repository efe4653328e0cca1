"""The server's job runner: each job every so often, and sooner when a commit woke it."""

from __future__ import annotations

import asyncio

from agencyhub.background import JobRunner, PeriodicJob


class Wakeups:
    """What the runner uses of `Services`: the per-job wake-up events."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}

    def wakeup(self, job: str) -> asyncio.Event:
        return self.events.setdefault(job, asyncio.Event())

    def wake_job(self, job: str) -> None:
        self.wakeup(job).set()


async def test_a_woken_job_runs_before_its_next_turn():
    runs: list[int] = []
    ran = asyncio.Event()

    async def job(services) -> int:
        runs.append(1)
        ran.set()
        return 0

    services = Wakeups()
    runner = JobRunner(services, [PeriodicJob("charge-auto-recharges", 3600, job)])  # type: ignore[arg-type]
    runner.start()
    try:
        await asyncio.wait_for(ran.wait(), 5)  # the first turn, at start
        ran.clear()
        await asyncio.sleep(0.05)
        assert len(runs) == 1  # the next turn is an hour away…
        services.wake_job("charge-auto-recharges")
        await asyncio.wait_for(ran.wait(), 5)  # …but a wake-up runs it now
        assert len(runs) == 2
    finally:
        await runner.stop()
