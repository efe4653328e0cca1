"""Group commit: small requests of one key that arrive while its transaction runs share the next.

A platform reports each call as it ends, one call per request, often many at once on one busy
sub-account. Each such request alone costs a whole transaction (about ten statements) and holds
the sub-account's balance rows for all of it, so they queue behind each other. Here, per key
(the agency), one group runs at a time in this process; requests arriving meanwhile wait and run
together in the next group, one transaction for all of them, and each is answered with its own
result. Under light load a group is one request and nothing waits; under heavy load groups grow
and the cost per request falls instead of the queue.

    result = await groups.submit(("recordCalls", agency_id), calls, bill_batches)

`run(items)` returns one result per item, in order; it must give each item the answer it would
have had on its own, run after the items before it (the caller's rule, see
`resolvers/usage.py`). Every caller of one key passes the same work: a group runs the `run` its
first request brought. If a group of several fails for any reason but the `shared` ones (by
default `TryAgain`: the database is busy, which each request alone would be told too), each item
is run again alone, so one request's failure is never another's.

A group's work may let the next group start before it ends (`let_next_start`), once it holds
the locks the next would wait for: the next group then runs its statements up to those locks
while this one finishes and commits, and takes them as soon as it has. Billing one call per
request on a busy sub-account, that overlap raised the rate by a fifth (BENCHMARKS.md, "Usage
ingestion through recordCalls"). The locks, not this module, keep the groups' billing in
order: the next group cannot bill before this one commits. A group that fails after letting
the next one start (its transaction retried, or its items run again alone) bills after that
next group instead: every request of both was waiting for its answer at the time, so that is
an order they could have arrived in.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from domain.errors import TryAgain

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

Run = Callable[[list[T]], Awaitable[Sequence[R]]]

# Set inside a group's run: lets the key's next group start (`let_next_start`).
_next_may_start: ContextVar[Callable[[], None] | None] = ContextVar(
    "group_commit_next_may_start", default=None
)


def let_next_start() -> None:
    """Called by a group's work once it holds the locks the next group would wait for: the
    next group of its key starts now instead of after this one's commit, and runs its
    statements up to those locks meanwhile. Nothing outside a group."""
    release = _next_may_start.get()
    if release is not None:
        release()


@dataclass
class _Waiting(Generic[T, R]):
    item: T
    size: int
    answer: asyncio.Future[R]


class GroupCommit:
    """Per key, one group at a time (two, once the first has let the next start); requests
    meanwhile wait for the next group.

    `max_size` bounds the sizes (as `submit` is told them) of one group's items together;
    `shared` are the failures every item of a group would have had alone, given to each as they
    are (the rest run each item again alone).
    """

    def __init__(self, max_size: int, shared: tuple[type[Exception], ...] = (TryAgain,)) -> None:
        self.max_size = max_size
        self.shared = shared
        self._queues: dict[Hashable, list[_Waiting[Any, Any]]] = {}  # waiting for the next group
        self._running: set[asyncio.Task[None]] = set()
        self._groups_running: dict[Hashable, int] = {}  # by key, released or not
        self.groups_run = 0  # and the items in them: how much grouping saves, for a reader
        self.items_run = 0
        self.groups_overlapped = 0  # started while the one before was still running

    async def submit(self, key: Hashable, item: T, run: Run[T, R], size: int = 1) -> R:
        """`item`'s result from `run`, in a group with whatever else is waiting for `key`.

        A caller cancelled while waiting leaves the group to go on without it: the group may
        already be in its transaction, and the other requests in it want their answers."""
        answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        # Marked as seen, so an answer left for a caller who was cancelled is not logged.
        answer.add_done_callback(lambda done: done.cancelled() or done.exception())
        waiting = self._queues.get(key)
        if waiting is None:
            waiting = self._queues[key] = []
            task = asyncio.create_task(self._drain(key, waiting, run))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        waiting.append(_Waiting(item, min(size, self.max_size), answer))
        return await asyncio.shield(answer)

    async def _drain(self, key: Hashable, waiting: list[_Waiting[T, R]], run: Run[T, R]) -> None:
        """Run groups until nobody waits for `key`, then forget the key. The next group starts
        when the one before it ends or lets it (`let_next_start`)."""
        try:
            while waiting:
                group = self._next_group(waiting)
                released = asyncio.Event()
                task = asyncio.create_task(self._run_released(key, run, group, released))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
                task.add_done_callback(functools.partial(_ended, group, released))
                await released.wait()
        except BaseException as error:  # cancelled (shutdown): nobody is left hanging
            for left in waiting:
                _fail(left, TryAgain("The server is shutting down."))
            if not isinstance(error, asyncio.CancelledError):
                raise
        finally:
            del self._queues[key]

    async def _run_released(
        self,
        key: Hashable,
        run: Run[T, R],
        group: list[_Waiting[T, R]],
        released: asyncio.Event,
    ) -> None:
        _next_may_start.set(released.set)  # this task's own context
        running = self._groups_running
        if running.get(key):
            self.groups_overlapped += 1
        running[key] = running.get(key, 0) + 1
        try:
            await self._run_group(run, group)
        finally:
            running[key] -= 1
            if not running[key]:
                del running[key]

    def _next_group(self, waiting: list[_Waiting[T, R]]) -> list[_Waiting[T, R]]:
        """Takes the longest run of waiting items, in arrival order, that fits in `max_size`."""
        taken, size = 0, 0
        for item in waiting:
            if taken and size + item.size > self.max_size:
                break
            taken, size = taken + 1, size + item.size
        group, waiting[:] = waiting[:taken], waiting[taken:]
        return group

    async def _run_group(self, run: Run[T, R], group: list[_Waiting[T, R]]) -> None:
        self.groups_run += 1
        self.items_run += len(group)
        try:
            results = await run([w.item for w in group])
        except self.shared as error:
            for waiting in group:
                _fail(waiting, error)
            return
        except Exception as error:
            if len(group) == 1:
                _fail(group[0], error)
                return
            log.info("a group of %d failed (%r); each runs again alone", len(group), error)
            for waiting in group:
                await self._run_group(run, [waiting])
            return
        for waiting, result in zip(group, results, strict=True):
            if not waiting.answer.done():
                waiting.answer.set_result(result)


def _ended(
    group: list[_Waiting[Any, Any]], released: asyncio.Event, task: asyncio.Task[None]
) -> None:
    """A group's task is over, however it ended (cancelled before its first step too): the
    next group may start, and no request of this one is left without an answer."""
    released.set()
    if task.cancelled():
        error: BaseException = TryAgain("The server is shutting down.")
    else:
        found = task.exception()
        if found is None:
            return
        log.error("a group's run failed unexpectedly", exc_info=found)
        error = found
    for waiting in group:
        _fail(waiting, error)


def _fail(waiting: _Waiting[Any, Any], error: BaseException) -> None:
    if not waiting.answer.done():
        waiting.answer.set_exception(error)
