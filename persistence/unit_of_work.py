"""One unit of work per mutation or job: its own connection and transaction, and its events.

async with uow_factory() as uow:
    ...                      # repositories over uow.conn
    uow.publish(event)       # written to the outbox in the same transaction
# committed here; the relay is woken to publish what was written
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncConnection

from domain.events import Event
from persistence.database import Database
from persistence.outbox import write_events


class UnitOfWork:
    def __init__(
        self,
        database: Database,
        now: Callable[[], datetime],
        on_events_committed: Callable[[], None] = lambda: None,
    ) -> None:
        self._database = database
        self._now = now
        self._on_events_committed = on_events_committed
        self._transaction: AbstractAsyncContextManager[AsyncConnection] | None = None
        self._events: list[Event] = []
        self.conn: AsyncConnection

    @property
    def is_sqlite(self) -> bool:
        return self._database.is_sqlite

    def publish(self, event: Event) -> None:
        """Announce `event` once this unit of work commits (never if it rolls back)."""
        self._events.append(event)

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
        assert self._transaction is not None
        if exc is None and self._events:
            try:
                await write_events(self.conn, self._events, self._now())
            except BaseException as write_error:
                await self._transaction.__aexit__(
                    type(write_error), write_error, write_error.__traceback__
                )
                raise
        await self._transaction.__aexit__(exc_type, exc, tb)
        if exc is None and self._events:
            self._on_events_committed()
