"""The operational metrics counted below the shell: events, the outbox, ingestion, jobs and the
database pools (Prometheus; `agencyhub/metrics.py` serves them at /metrics with the request
metrics).

They live here, in the innermost layer that may use an I/O library, so that persistence/,
resolvers/ and agencyhub/ can all count into them. Every label has a small fixed set of
values. Under `serve --workers N` each process writes its values to files in
PROMETHEUS_MULTIPROC_DIR (prometheus-client reads that variable when it is first imported:
`agencyhub serve` sets it before the workers start) and /metrics adds them up.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter, Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.tables import OutboxRow

EVENTS_DELIVERED = Counter(
    "agencyhub_events_delivered",
    "Events handed to local subscriptions (one per subscription that received one).",
)
SUBSCRIBERS_TOO_SLOW = Counter(
    "agencyhub_subscribers_too_slow",
    "Subscriptions ended with SUBSCRIBER_TOO_SLOW: their queue overflowed, or too many events "
    "were missed to catch up.",
)
INGESTED = Counter(
    "agencyhub_ingested",
    "Calls and messages the platform reported, by what became of each.",
    ["kind", "result"],  # kind: calls | messages; result: accepted | duplicate | rejected
)
JOB_RUNS = Counter(
    "agencyhub_job_runs",
    "Runs of the periodic jobs, by job and outcome (ok, failed).",
    ["job", "outcome"],
)
JOB_SKIPPED = Counter(
    "agencyhub_job_skipped",
    "Turns a process let go because another process of the deployment held the job's lock.",
    ["job"],
)
JOB_DONE = Counter(
    "agencyhub_job_items",
    "What the jobs' runs did (periods granted, charges made, payouts paid, accounts purged).",
    ["job"],
)
OUTBOX_WAITING = Gauge(
    "agencyhub_outbox_waiting_events",
    "Events committed but not yet published (sampled every METRICS_SAMPLE_SECONDS).",
    multiprocess_mode="livemostrecent",
)
OUTBOX_LAG = Gauge(
    "agencyhub_outbox_oldest_waiting_seconds",
    "Age of the oldest event not yet published: the relay's lag (0 when none waits).",
    multiprocess_mode="livemostrecent",
)
DB_IN_USE = Gauge(
    "agencyhub_db_connections_in_use",
    "Pooled database connections checked out, by pool (write transactions, reads).",
    ["pool"],
    multiprocess_mode="livesum",
)

_outbox = OutboxRow.__table__


def count_ingested(kind: str, accepted: int, duplicates: int, rejected: int) -> None:
    for result, n in (("accepted", accepted), ("duplicate", duplicates), ("rejected", rejected)):
        if n:
            INGESTED.labels(kind, result).inc(n)


async def outbox_backlog(conn: AsyncConnection) -> tuple[int, datetime | None]:
    """How many events wait to be published and when the oldest was committed: two index
    range reads (the outbox's two partial indexes, not numbered yet and numbered but not
    published), however large the outbox."""
    rows = []
    for waiting in (
        _outbox.c.sequence.is_(None),
        _outbox.c.sequence.is_not(None) & _outbox.c.published_at.is_(None),
    ):
        query = select(func.count(), func.min(_outbox.c.created_at)).where(waiting)
        rows.append((await conn.execute(query)).one())
    oldest = [r[1] for r in rows if r[1] is not None]
    return sum(int(r[0]) for r in rows), min(oldest) if oldest else None


def record_outbox_backlog(waiting: int, oldest: datetime | None, now: datetime) -> None:
    OUTBOX_WAITING.set(waiting)
    OUTBOX_LAG.set(0 if oldest is None else max(0.0, (now - oldest).total_seconds()))
