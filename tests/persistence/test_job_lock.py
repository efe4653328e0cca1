"""The payment jobs run in every server process and from cron: one runner at a time."""

from __future__ import annotations

from persistence.jobs import sole_runner


async def test_a_job_has_one_runner_at_a_time_on_postgresql(database):
    async with sole_runner(database, "reconcile-payments") as first:
        async with sole_runner(database, "reconcile-payments") as second:
            async with sole_runner(database, "pay-out") as other_job:
                # SQLite serves one process: nothing to share there
                assert first and other_job
                assert second is database.is_sqlite
    async with sole_runner(database, "reconcile-payments") as again:
        assert again  # released when the run ended
