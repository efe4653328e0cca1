"""An event's figures are read once per process, however many subscribers receive it."""

import asyncio

import pytest

from resolvers.context import OncePerEvent


async def test_concurrent_subscribers_share_one_build():
    builds = 0
    gate = asyncio.Event()

    async def build():
        nonlocal builds
        builds += 1
        await gate.wait()
        return "figures"

    cache = OncePerEvent()
    waiters = [asyncio.create_task(cache.get(("usage", 7), build)) for _ in range(500)]
    await asyncio.sleep(0)
    waiters[0].cancel()  # one subscriber leaves; the others still get the figures
    gate.set()
    results = await asyncio.gather(*waiters[1:])
    assert results == ["figures"] * 499 and builds == 1
    assert await cache.get(("usage", 8), build) == "figures" and builds == 2


async def test_a_failed_build_is_tried_again_and_old_events_are_dropped():
    attempts = 0

    async def flaky():
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("database away")
        return attempts

    cache = OncePerEvent(size=2)
    with pytest.raises(ConnectionError):
        await cache.get(("usage", 1), flaky)
    assert await cache.get(("usage", 1), flaky) == 2
    for sequence in (2, 3):
        await cache.get(("usage", sequence), flaky)
    assert await cache.get(("usage", 1), flaky) == 5  # evicted: built again
