"""Real deadlocks on demand, for tests of what happens to their victims (PostgreSQL)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.database import Database

# advisory locks: a deadlock needs no data, and PostgreSQL detects it like any other
MINE, THEIRS = 8_101, 8_102


class Opponents:
    """Transactions on other connections that deadlock with the one under test, which is
    always the victim: it checks for deadlocks after 20 ms, its opponents after 10 s."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._tasks: list[asyncio.Task[None]] = []

    async def deadlock(self, conn: AsyncConnection) -> None:
        await conn.execute(text("SET LOCAL deadlock_timeout = '20ms'"))
        await conn.execute(text(f"SELECT pg_advisory_xact_lock({MINE})"))
        opponent_pid: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._tasks.append(asyncio.create_task(self._opponent(opponent_pid)))
        await self._until_waiting(await opponent_pid)  # it holds THEIRS and waits for MINE
        await conn.execute(text(f"SELECT pg_advisory_xact_lock({THEIRS})"))  # 40P01

    async def _opponent(self, pid: asyncio.Future[int]) -> None:
        async with self._database.transaction() as conn:
            await conn.execute(text("SET LOCAL deadlock_timeout = '10s'"))
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({THEIRS})"))
            pid.set_result(await conn.scalar(text("SELECT pg_backend_pid()")))
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({MINE})"))

    async def _until_waiting(self, pid: int) -> None:
        query = text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid")
        for _ in range(500):
            async with self._database.read() as conn:
                if await conn.scalar(query, {"pid": pid}) == "Lock":
                    return
            await asyncio.sleep(0.01)
        raise AssertionError("the opponent never waited")

    @property
    def played(self) -> int:
        """How many deadlocks were arranged."""
        return len(self._tasks)

    async def finished(self) -> None:
        await asyncio.gather(*self._tasks)
