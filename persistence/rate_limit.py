"""Fixed-window attempt counters, for throttling logins (`hit`, undone by `reset`) and every API
request (`count`, RATE_LIMIT_PER_MINUTE): `RedisRateLimiter` shares them between processes,
`InProcessRateLimiter` (the embedded default) keeps them in one process's memory.
"""

from __future__ import annotations

import itertools
from typing import Protocol

import redis.asyncio as redis


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_seconds: int, now: float) -> float | None:
        """Count one attempt; None if it is within `limit` for the window of `now` (a UNIX
        time), else the seconds until that window ends (a retry-after)."""

    async def count(self, key: str, limit: int, window_seconds: int, now: float) -> float | None:
        """`hit` for the hot path (every API request): cheaper, but `reset` cannot undo it."""

    async def reset(self, key: str) -> None:
        """Forget every attempt counted for `key`, whatever its window."""

    async def close(self) -> None: ...


def window_of(now: float, window_seconds: int) -> tuple[int, float]:
    """The index of the fixed window `now` falls in, and the seconds until it ends."""
    if window_seconds < 1:
        raise ValueError("window_seconds must be at least 1")
    index = int(now // window_seconds)
    return index, (index + 1) * window_seconds - now


def bucket_key(key: str, window_seconds: int, index: int) -> str:
    return f"ratelimit:{key}:{window_seconds}:{index}"


_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


class RedisRateLimiter:
    """One counter per key and window (INCR), listed in a per-key sorted set so that `reset`,
    which knows neither window size nor time, can find them. Needs Redis >= 7.0 (EXPIRE GT).
    """

    def __init__(self, url: str, max_connections: int = 50) -> None:
        # A blocking pool: past `max_connections` hits in flight (every API request makes one
        # when RATE_LIMIT_PER_MINUTE is on), the next waits for a connection instead of failing
        # (redis-py's default pool raises past 100).
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=2, socket_connect_timeout=2
        )
        self._client = redis.Redis(connection_pool=pool)
        self._count = self._client.register_script(_COUNT)

    async def hit(self, key: str, limit: int, window_seconds: int, now: float) -> float | None:
        index, retry_after = window_of(now, window_seconds)
        bucket = bucket_key(key, window_seconds, index)
        listed = _index_key(key)
        ttl = window_seconds * 2
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.incr(bucket)
            pipe.expire(bucket, ttl)
            # Scored by the window's end, so windows that are over drop out of the list.
            pipe.zadd(listed, {bucket: (index + 1) * window_seconds})
            pipe.zremrangebyscore(listed, "-inf", now)
            # The list must outlive its longest-lived bucket, whichever window set it last.
            pipe.expire(listed, ttl, nx=True)
            pipe.expire(listed, ttl, gt=True)
            count, *_ = await pipe.execute()
        return None if count <= limit else retry_after

    async def count(self, key: str, limit: int, window_seconds: int, now: float) -> float | None:
        # One command (EVALSHA of a script INCR-ing the counter, setting its expiry on the
        # first), one reply, no listing: half the client's CPU of `hit`'s MULTI of six.
        index, retry_after = window_of(now, window_seconds)
        bucket = bucket_key(key, window_seconds, index)
        count = await self._count(keys=[bucket], args=[window_seconds * 2])
        return None if int(count) <= limit else retry_after

    async def reset(self, key: str) -> None:
        # A hit racing this may leave its bucket unlisted; its next hit lists it again.
        listed = _index_key(key)
        buckets = await self._client.zrange(listed, 0, -1)
        await self._client.delete(listed, *buckets)

    async def close(self) -> None:
        await self._client.aclose()


def _index_key(key: str) -> str:
    return f"ratelimit:{key}:windows"


class InProcessRateLimiter:
    """Counters in a dict, bounded: windows that are over go when their key is touched, and past
    `max_keys` keys the least recently hit keys go."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._max_keys = max_keys
        # key → {(window_seconds, index): attempts}, least recently hit key first.
        self._counts: dict[str, dict[tuple[int, int], int]] = {}

    async def hit(self, key: str, limit: int, window_seconds: int, now: float) -> float | None:
        index, retry_after = window_of(now, window_seconds)
        counts = self._counts.pop(key, {})
        _drop_ended(counts, now)
        count = counts[window_seconds, index] = counts.get((window_seconds, index), 0) + 1
        self._counts[key] = counts  # re-inserted: now the most recently hit
        if len(self._counts) > self._max_keys:
            self._shrink(now)
        return None if count <= limit else retry_after

    async def count(self, key: str, limit: int, window_seconds: int, now: float) -> float | None:
        return await self.hit(key, limit, window_seconds, now)

    async def reset(self, key: str) -> None:
        self._counts.pop(key, None)

    async def close(self) -> None:
        pass

    def _shrink(self, now: float) -> None:
        for key, counts in list(self._counts.items()):
            _drop_ended(counts, now)
            if not counts:
                del self._counts[key]
        # Then the least recently hit keys, down to 9/10 of the room, so that this O(n) sweep
        # runs at most once per max_keys / 10 new keys.
        excess = len(self._counts) - self._max_keys * 9 // 10
        for key in list(itertools.islice(self._counts, max(excess, 0))):
            del self._counts[key]


def _drop_ended(counts: dict[tuple[int, int], int], now: float) -> None:
    ended = [(size, index) for size, index in counts if (index + 1) * size <= now]
    for window in ended:
        del counts[window]


def build_rate_limiter(redis_url: str | None) -> RateLimiter:
    return RedisRateLimiter(redis_url) if redis_url else InProcessRateLimiter()
