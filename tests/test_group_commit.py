"""Group commit (resolvers/group_commit.py): requests of one key that arrive while its group runs
share the next group; each gets its own answer, and one's failure is never another's."""

from __future__ import annotations

import asyncio

import pytest

from domain.errors import TryAgain
from resolvers.group_commit import GroupCommit, let_next_start


class Recorder:
    """A group's work: answers each item doubled, after a pause that lets others queue."""

    def __init__(self, fail_on: set[int] | None = None, error: Exception | None = None) -> None:
        self.groups: list[list[int]] = []
        self.fail_on = fail_on or set()
        self.error = error

    async def __call__(self, items: list[int]) -> list[int]:
        self.groups.append(items)
        await asyncio.sleep(0.1)  # far longer than the tests take to queue the next ones
        if self.fail_on & set(items):
            raise self.error or ValueError(f"refused {sorted(self.fail_on & set(items))}")
        return [2 * item for item in items]


async def answered(awaitable):
    """A request left unanswered fails the test instead of hanging it."""
    return await asyncio.wait_for(awaitable, timeout=5)


async def while_one_runs(groups: GroupCommit, work: Recorder, first: int, *rest, **sizes):
    """`first` submitted alone; once its group is running, `rest` (key, item) all at once."""
    started = asyncio.create_task(groups.submit("k", first, work))
    await asyncio.sleep(0.002)  # its group is in `work` now
    others = [groups.submit(key, n, work, size=sizes.get(f"s{n}", 1)) for key, n in rest]
    return await answered(asyncio.gather(started, *others, return_exceptions=True))


async def test_requests_arriving_together_run_as_one_group_with_their_own_answers():
    groups, work = GroupCommit(max_size=100), Recorder()
    answers = await answered(asyncio.gather(*(groups.submit("k", n, work) for n in range(10))))
    assert answers == [2 * n for n in range(10)]
    assert work.groups == [list(range(10))]
    assert groups._queues == {}  # a key nobody waits for is forgotten


async def test_requests_arriving_while_a_group_runs_share_the_next_one():
    groups, work = GroupCommit(max_size=100), Recorder()
    answers = await while_one_runs(groups, work, 0, *(("k", n) for n in range(1, 10)))
    assert answers == [2 * n for n in range(10)]
    assert work.groups == [[0], list(range(1, 10))]


async def test_each_key_has_its_own_groups_running_side_by_side():
    groups, work = GroupCommit(max_size=100), Recorder()
    await while_one_runs(groups, work, 0, ("k", 2), ("other", 1), ("k", 4), ("other", 3))
    assert work.groups == [[0], [1, 3], [2, 4]]


async def test_a_group_holds_at_most_max_size_but_a_larger_item_still_runs_alone():
    groups, work = GroupCommit(max_size=5), Recorder()
    rest = [("k", n) for n in range(1, 6)]
    await while_one_runs(groups, work, 0, *rest, s1=3, s2=3, s3=1, s4=9, s5=1)
    assert work.groups == [[0], [1], [2, 3], [4], [5]]


async def test_a_failing_request_fails_alone_and_the_rest_of_its_group_succeeds():
    groups, work = GroupCommit(max_size=100), Recorder(fail_on={3})
    answers = await while_one_runs(groups, work, 0, *(("k", n) for n in range(1, 6)))
    assert isinstance(answers[3], ValueError) and "refused [3]" in str(answers[3])
    assert [a for n, a in enumerate(answers) if n != 3] == [0, 2, 4, 8, 10]
    # the group of five failed as a whole; each of its items then ran alone
    assert work.groups == [[0], [1, 2, 3, 4, 5], [1], [2], [3], [4], [5]]


async def test_try_again_is_every_requests_answer_without_running_them_again():
    groups = GroupCommit(max_size=100)
    work = Recorder(fail_on={2}, error=TryAgain("busy"))
    answers = await while_one_runs(groups, work, 0, ("k", 1), ("k", 2), ("k", 3))
    assert answers[0] == 0
    assert all(isinstance(a, TryAgain) for a in answers[1:])
    assert work.groups == [[0], [1, 2, 3]]


async def test_a_caller_cancelled_while_waiting_leaves_the_group_to_finish_for_the_others():
    groups, work = GroupCommit(max_size=100), Recorder()
    first = asyncio.create_task(groups.submit("k", 0, work))
    await asyncio.sleep(0.002)
    waiting = [asyncio.create_task(groups.submit("k", n, work)) for n in (1, 2, 3)]
    await asyncio.sleep(0.002)  # the first group is running; the others wait for the next
    waiting[1].cancel()
    assert await answered(first) == 0
    assert await answered(asyncio.gather(waiting[0], waiting[2])) == [2, 6]
    with pytest.raises(asyncio.CancelledError):
        await waiting[1]
    assert work.groups == [[0], [1, 2, 3]]  # the cancelled one's work still ran with its group


class Releasing(Recorder):
    """A group's work that lets the next group start once it holds a lock every group takes
    (as billing does once it holds the balances' locks, until commit), recording when each
    group starts and ends."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.lock = asyncio.Lock()

    async def __call__(self, items: list[int]) -> list[int]:
        self.events.append(f"start {items}")
        await asyncio.sleep(0.05)  # its statements before the lock
        async with self.lock:
            let_next_start()
            let_next_start()  # a second time changes nothing
            await asyncio.sleep(0.1)
            self.events.append(f"end {items}")
        return [2 * item for item in items]


async def test_a_group_that_lets_the_next_start_overlaps_with_the_next_one():
    groups, work = GroupCommit(max_size=100), Releasing()
    first = asyncio.create_task(groups.submit("k", 0, work))
    await asyncio.sleep(0.01)  # the first group is running, not yet released
    second = [asyncio.create_task(groups.submit("k", n, work)) for n in (1, 2)]
    await asyncio.sleep(0.07)  # the first has let the second start, which waits for the lock
    third = [asyncio.create_task(groups.submit("k", n, work)) for n in (3, 4)]
    answers = await answered(asyncio.gather(first, *second, *third))
    assert answers == [0, 2, 4, 6, 8]
    assert work.events == [
        "start [0]",
        "start [1, 2]",  # while [0] still runs: it let it
        "end [0]",
        "start [3, 4]",  # [1, 2] let it, and not before
        "end [1, 2]",
        "end [3, 4]",
    ]
    assert groups.groups_overlapped == 2 and groups._queues == {}


async def test_letting_the_next_start_outside_a_group_does_nothing():
    let_next_start()
    groups, work = GroupCommit(max_size=100), Recorder()
    await while_one_runs(groups, work, 0, ("k", 1), ("k", 2))
    assert work.groups == [[0], [1, 2]] and groups.groups_overlapped == 0


async def test_a_group_cancelled_before_it_starts_answers_its_requests_and_lets_the_next_run(
    monkeypatch,
):
    """Shutdown can cancel a group's task before its first step: its requests are told to try
    again and the key's next group still runs."""
    groups, work = GroupCommit(max_size=100), Recorder()
    real_create_task = asyncio.create_task
    cancelled: list[asyncio.Task] = []

    def create_task(coroutine, **kwargs):
        task = real_create_task(coroutine, **kwargs)
        if coroutine.__qualname__.endswith("_run_released") and not cancelled:
            task.cancel()  # before it ever runs
            cancelled.append(task)
        return task

    monkeypatch.setattr(asyncio, "create_task", create_task)
    first = asyncio.ensure_future(groups.submit("k", 0, work))
    await asyncio.sleep(0.002)
    second = asyncio.ensure_future(groups.submit("k", 1, work))
    answers = await answered(asyncio.gather(first, second, return_exceptions=True))
    assert isinstance(answers[0], TryAgain) and answers[1] == 2
    assert work.groups == [[1]] and groups._queues == {}
