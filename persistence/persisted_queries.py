"""Query texts by their SHA-256, for automatic persisted queries: `RedisPersistedQueries` shares
them between processes (each entry expires `ttl_seconds` after its last use), and
`InProcessPersistedQueries` (the embedded default) keeps the `max_entries` most recently used.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol

import redis.asyncio as redis


class PersistedQueries(Protocol):
    async def get(self, sha256: str) -> str | None:
        """The text stored under `sha256`, if any (its life starts again)."""

    async def put(self, sha256: str, query: str) -> None: ...

    async def close(self) -> None: ...


def _key(sha256: str) -> str:
    return f"apq:{sha256}"


class RedisPersistedQueries:
    def __init__(self, url: str, ttl_seconds: int) -> None:
        self._client = redis.Redis.from_url(url, socket_connect_timeout=2)
        self._ttl = ttl_seconds

    async def get(self, sha256: str) -> str | None:
        text = await self._client.getex(_key(sha256), ex=self._ttl)
        return None if text is None else text.decode()

    async def put(self, sha256: str, query: str) -> None:
        await self._client.set(_key(sha256), query.encode(), ex=self._ttl)

    async def close(self) -> None:
        await self._client.aclose()


class InProcessPersistedQueries:
    def __init__(self, max_entries: int, ttl_seconds: int) -> None:
        self._max_entries = max_entries
        self._ttl = ttl_seconds
        # sha256 → (text, when it expires), least recently used first.
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def get(self, sha256: str) -> str | None:
        entry = self._entries.get(sha256)
        if entry is None:
            return None
        now = time.monotonic()
        if entry[1] <= now:
            del self._entries[sha256]
            return None
        self._entries[sha256] = (entry[0], now + self._ttl)
        self._entries.move_to_end(sha256)
        return entry[0]

    async def put(self, sha256: str, query: str) -> None:
        self._entries[sha256] = (query, time.monotonic() + self._ttl)
        self._entries.move_to_end(sha256)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def close(self) -> None:
        pass


def build_persisted_queries(
    redis_url: str | None, max_entries: int, ttl_seconds: int
) -> PersistedQueries:
    if redis_url:
        return RedisPersistedQueries(redis_url, ttl_seconds)
    return InProcessPersistedQueries(max_entries, ttl_seconds)
