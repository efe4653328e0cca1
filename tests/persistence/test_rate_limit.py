"""Rate limiters, on Redis and in-process: fixed windows on an injected clock, reset, bounds."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from persistence.rate_limit import (
    InProcessRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    bucket_key,
    build_rate_limiter,
)
from tests.conftest import REDIS_URL

WINDOW = 60
START = 1_000 * WINDOW  # the start of a window, as a UNIX time


@pytest.fixture(params=("redis", "in-process"))
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    limiter = build_rate_limiter(REDIS_URL if request.param == "redis" else None)
    yield limiter
    await limiter.close()


def new_key() -> str:
    # Unique per test, so whatever earlier runs left in Redis cannot matter.
    return f"test:{uuid.uuid4().hex}"


async def hits(limiter: RateLimiter, key: str, n: int, now: float, limit: int = 3) -> list:
    return [await limiter.hit(key, limit, WINDOW, now) for _ in range(n)]


async def test_the_attempt_past_the_limit_waits_for_the_end_of_the_window(limiter: RateLimiter):
    key = new_key()
    assert await hits(limiter, key, 3, START + 15) == [None, None, None]
    assert await limiter.hit(key, 3, WINDOW, START + 15) == pytest.approx(45)
    assert await limiter.hit(key, 3, WINDOW, START + 59.5) == pytest.approx(0.5)


async def test_a_new_window_starts_a_new_count(limiter: RateLimiter):
    key = new_key()
    await hits(limiter, key, 4, START + 59)
    assert await hits(limiter, key, 3, START + WINDOW) == [None, None, None]
    assert await limiter.hit(key, 3, WINDOW, START + WINDOW) == pytest.approx(WINDOW)


async def test_keys_are_counted_apart(limiter: RateLimiter):
    busy, other = new_key(), new_key()
    await hits(limiter, busy, 4, START)
    assert await limiter.hit(other, 3, WINDOW, START) is None
    assert await limiter.hit(busy, 3, WINDOW, START) is not None


async def test_reset_forgets_the_attempts_of_a_key_in_every_window(limiter: RateLimiter):
    key, other = new_key(), new_key()
    await hits(limiter, key, 4, START)
    await limiter.hit(key, 1, 3600, START)
    await hits(limiter, other, 4, START)

    await limiter.reset(key)

    assert await hits(limiter, key, 3, START + 1) == [None, None, None]
    assert await limiter.hit(key, 1, 3600, START + 1) is None
    assert await limiter.hit(other, 3, WINDOW, START + 1) is not None
    await limiter.reset(new_key())  # a key never seen is fine


async def test_a_limit_of_zero_refuses_everything(limiter: RateLimiter):
    assert await limiter.hit(new_key(), 0, WINDOW, START) == pytest.approx(WINDOW)


async def test_a_window_shorter_than_a_second_is_refused(limiter: RateLimiter):
    with pytest.raises(ValueError):
        await limiter.hit(new_key(), 3, 0, START)


async def test_redis_counters_expire_and_past_windows_leave_the_list():
    limiter = RedisRateLimiter(REDIS_URL)
    client = redis.Redis.from_url(REDIS_URL)
    key = new_key()
    try:
        await limiter.hit(key, 3, WINDOW, START)
        await limiter.hit(key, 3, WINDOW, START + WINDOW)
        current = bucket_key(key, WINDOW, 1_001)
        assert await client.get(current) == b"1"
        assert 0 < await client.ttl(current) <= 2 * WINDOW
        assert await client.zrange(f"ratelimit:{key}:windows", 0, -1) == [current.encode()]

        # A later hit with a shorter window must not cut the list short of the long bucket.
        await limiter.hit(key, 3, 3600, START + WINDOW)
        await limiter.hit(key, 3, WINDOW, START + WINDOW)
        assert await client.ttl(f"ratelimit:{key}:windows") > 2 * WINDOW

        await limiter.reset(key)
        assert await client.exists(current, f"ratelimit:{key}:windows") == 0
    finally:
        await client.aclose()
        await limiter.close()


async def test_in_process_memory_stays_bounded():
    limiter = InProcessRateLimiter(max_keys=100)
    old = new_key()
    await hits(limiter, old, 4, START)
    # Touching a key drops its windows that are over.
    await limiter.hit(old, 3, WINDOW, START + WINDOW)
    assert limiter._counts[old] == {(WINDOW, 1_001): 1}

    for n in range(1_000):
        await limiter.hit(f"ip:{n}", 3, WINDOW, START + WINDOW)
        assert len(limiter._counts) <= 100
    # The most recently hit keys are still counted.
    await hits(limiter, "ip:999", 2, START + WINDOW)
    assert await limiter.hit("ip:999", 3, WINDOW, START + WINDOW) is not None


async def test_past_windows_are_swept_before_live_keys_are_dropped():
    limiter = InProcessRateLimiter(max_keys=10)
    for n in range(10):
        await limiter.hit(f"old:{n}", 3, WINDOW, START)
    await hits(limiter, "live", 3, START + WINDOW)
    assert list(limiter._counts) == ["live"]


async def test_count_is_hit_for_the_hot_path(limiter: RateLimiter):
    key, other = new_key(), new_key()
    assert [await limiter.count(key, 3, WINDOW, START + 15) for _ in range(3)] == [None] * 3
    assert await limiter.count(key, 3, WINDOW, START + 15) == pytest.approx(45)
    assert await limiter.count(other, 3, WINDOW, START + 15) is None
    assert await limiter.count(key, 3, WINDOW, START + WINDOW) is None  # a new window


async def test_redis_count_keeps_one_counter_that_expires():
    limiter = RedisRateLimiter(REDIS_URL)
    client = redis.Redis.from_url(REDIS_URL)
    key = new_key()
    try:
        for _ in range(2):
            await limiter.count(key, 3, WINDOW, START)
        bucket = bucket_key(key, WINDOW, 1_000)
        assert await client.get(bucket) == b"2"
        assert WINDOW < await client.ttl(bucket) <= 2 * WINDOW
        assert await client.keys(f"ratelimit:{key}:*") == [bucket.encode()]
    finally:
        await client.aclose()
        await limiter.close()
