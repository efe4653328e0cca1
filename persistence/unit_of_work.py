"""One unit of work per mutation or job: its own connection and transaction, and its events.

Production code runs its work through `transact`, which can run it again:

async def move(uow: UnitOfWork) -> Moved:
    ...                      # repositories over uow.conn
    uow.publish(event)       # written to the outbox in the same transaction
    return Moved(...)
moved = await services.transact(move)   # committed; retried whole after a deadlock

`work` may run more than once, each time in a fresh unit of work: whatever it builds up must
be built inside it, and effects outside the database (mail, Redis counters) stay outside.
`async with uow_factory() as uow:` is the same unit of work without retries (tests use it).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.alerts import Alert
from domain.audit import Actor, AuditNote
from domain.errors import TryAgain
from domain.events import Event, audit_recorded
from domain.webhooks import WebhookEvent, WebhookEventKind
from persistence import alerts, audit, webhooks
from persistence.database import Database
from persistence.errors import unique_violation
from persistence.outbox import write_events

log = logging.getLogger(__name__)
T = TypeVar("T")

# PostgreSQL broke a deadlock, or refused a serializable transaction, by rolling this one back:
# run again, it sees the other's commit and goes through.
RETRYABLE_SQLSTATES = {"40P01": "deadlock detected", "40001": "serialization failure"}


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts in all, and the backoff between them: a random delay (full jitter) up to
    `first_delay` doubled per attempt, at most `max_delay`, so the losers of one conflict do
    not all come back at the same instant."""

    attempts: int = 4
    first_delay: float = 0.02
    max_delay: float = 0.5

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        return rng() * min(self.max_delay, self.first_delay * 2 ** (attempt - 1))


def retryable_sqlstate(error: DBAPIError) -> str | None:
    """The SQLSTATE when running the transaction again may succeed, else None.

    asyncpg's errors reach us as `DBAPIError` whose `orig` carries `sqlstate` (and `pgcode`).
    """
    state = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return state if state in RETRYABLE_SQLSTATES else None


def sqlite_busy(error: DBAPIError) -> bool:
    """SQLite gave up waiting for the one write lock (after the busy timeout, 30 s)."""
    orig = error.orig
    return isinstance(orig, sqlite3.OperationalError) and (
        getattr(orig, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    )


async def transact(
    new_uow: Callable[[], UnitOfWork],
    work: Callable[[UnitOfWork], Awaitable[T]],
    policy: RetryPolicy | None = None,
) -> T:
    """`work` in a unit of work, committed; run again in a fresh one after a deadlock or a
    serialization failure (the whole transaction was rolled back, so that is safe), up to
    `policy.attempts` times, then TryAgain. SQLite's "database is locked" comes after its
    busy timeout has already waited 30 s: TryAgain at once rather than more waiting."""
    policy = policy or RetryPolicy()
    for attempt in range(1, policy.attempts + 1):
        try:
            async with new_uow() as uow:
                return await work(uow)
        except DBAPIError as error:
            if sqlite_busy(error):
                log.warning("transaction gave up: SQLite database is locked (busy timeout)")
                raise TryAgain(_TRY_AGAIN) from error
            state = retryable_sqlstate(error)
            if state is None:
                raise
            if attempt == policy.attempts:
                log.warning(
                    "transaction gave up after %d attempts: SQLSTATE %s (%s)",
                    attempt,
                    state,
                    RETRYABLE_SQLSTATES[state],
                )
                raise TryAgain(_TRY_AGAIN) from error
            delay = policy.delay(attempt)
            log.info(
                "transaction retried: SQLSTATE %s (%s), attempt %d of %d, again in %.0f ms",
                state,
                RETRYABLE_SQLSTATES[state],
                attempt,
                policy.attempts,
                delay * 1000,
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


_TRY_AGAIN = "The database was too busy to finish this request and nothing was saved; try again."


class Unaudited(Exception):
    """A change through the API was about to commit without an audit entry: a bug."""


class UnitOfWork:
    """One transaction, the events it announces and the audit entries it records.

    With `audited=True` (every API mutation: `Services.transact`), committing a change without
    an audit entry is refused (`Unaudited`), so no use case can forget its entry; a use case
    that found nothing to change says so with `nothing_changed()`.

    A unique constraint or primary key refusing a row, in the work or at commit, leaves as
    `persistence.errors.UniqueViolation` (after the rollback), so callers need not know
    SQLAlchemy's exceptions.
    """

    def __init__(
        self,
        database: Database,
        now: Callable[[], datetime],
        on_events_committed: Callable[[], None] = lambda: None,
        audited: bool = False,
        wake_job: Callable[[str], None] = lambda name: None,
    ) -> None:
        self._database = database
        self._now = now
        self._on_events_committed = on_events_committed
        self._audited = audited
        self._wake_job = wake_job
        self._wakes: set[str] = set()
        self._transaction: AbstractAsyncContextManager[AsyncConnection] | None = None
        self._events: list[Event] = []
        self._notes: list[tuple[Actor, AuditNote]] = []
        self._unchanged = False
        self._webhook_events: list[WebhookEvent] = []
        self.conn: AsyncConnection

    @property
    def is_sqlite(self) -> bool:
        return self._database.is_sqlite

    def publish(self, event: Event) -> None:
        """Announce `event` once this unit of work commits (never if it rolls back)."""
        self._events.append(event)

    def record(self, events: Sequence[Event]) -> None:
        """Announce every event of a domain transition."""
        self._events.extend(events)

    def audit(self, actor: Actor, note: AuditNote) -> None:
        """Log who changed what, in this transaction; the live audit feed announces it."""
        self._notes.append((actor, note))

    def notify(self, event: WebhookEvent) -> None:
        """Queue `event` for the agency's webhook endpoints: at commit, one delivery row per
        enabled endpoint subscribed to its kind, in this transaction (none if no endpoint
        listens); the delivery worker sends them after the commit, never in this request."""
        self._webhook_events.append(event)

    def wake(self, job: str) -> None:
        """Nudge this process's runner of `job` once this unit of work commits: it has work
        (a durable row this transaction wrote), sooner than its next turn."""
        self._wakes.add(job)

    async def raise_alert(self, alert: Alert) -> bool:
        """Every alert goes through here, in the transaction that raised it: its row (at most
        one per sub-account, kind and local day; false when today's was raised already), sent
        by the alert job after the commit."""
        added = await alerts.add(self.conn, alert, self._now())
        if added:
            self.wake(alerts.JOB)
            # the same event for the agency's webhook endpoints, as often as the mail
            kind = WebhookEventKind(alert.kind.value)
            self.notify(WebhookEvent(kind, alert.agency_id, alert.sub_account_id, alert.data))
        return added

    def nothing_changed(self) -> None:
        """This run changed nothing (a replayed request, a no-op): no audit entry is due."""
        self._unchanged = True

    async def __aenter__(self) -> UnitOfWork:
        self._transaction = self._database.transaction()
        self.conn = await self._transaction.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._finish(exc_type, exc, tb)
        except IntegrityError as error:  # at commit, or writing the audit log and outbox
            if (violation := unique_violation(error)) is None:
                raise
            raise violation from error
        if isinstance(exc, IntegrityError) and (violation := unique_violation(exc)) is not None:
            raise violation from exc  # rolled back above

    async def _finish(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Commit (with the audit entries and events) when the work succeeded, else roll back."""
        assert self._transaction is not None
        pending = self._events or self._notes or self._webhook_events
        if exc is None and (pending or self._audited):
            try:
                if self._audited and not self._notes and not self._unchanged:
                    raise Unaudited("a change was about to commit without an audit entry")
                now = self._now()
                if len(self._notes) == 1:  # nearly always: the entry and events at once
                    [(actor, note)] = self._notes
                    entry = await audit.record_with_events(
                        self.conn, actor, note, self._events, now
                    )
                    self._events.append(audit_recorded(entry))
                else:
                    for entry in await audit.record(self.conn, self._notes, now):
                        self._events.append(audit_recorded(entry))
                    if self._events:
                        await write_events(self.conn, self._events, now)
                if self._webhook_events and await webhooks.queue_deliveries(
                    self.conn, self._webhook_events, now
                ):
                    self.wake(webhooks.JOB)
            except BaseException as write_error:
                await self._transaction.__aexit__(
                    type(write_error), write_error, write_error.__traceback__
                )
                raise
        await self._transaction.__aexit__(exc_type, exc, tb)
        if exc is None and self._events:
            self._on_events_committed()
        if exc is None:
            for job in sorted(self._wakes):
                self._wake_job(job)
