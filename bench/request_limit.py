"""What RATE_LIMIT_PER_MINUTE adds to each request: `RequestLimit.check` (an HMAC of the token
and one counter hit) on Redis and in process, next to a bare Redis PING (one round trip, the
floor for anything shared between processes). Sequential (latency) and 32 at a time
(throughput, as a loaded server issues them). BENCHMARKS.md, "Request rate limit".

    .venv/bin/python bench/request_limit.py [--redis redis://127.0.0.1:6379/0] [--checks 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import redis.asyncio as redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agencyhub.limits import RequestLimit
from persistence.rate_limit import InProcessRateLimiter, RedisRateLimiter
from resolvers.security import Tokens

TOKENS = [f"ahs_bench{n:04d}" for n in range(100)]


async def timed(
    work: Callable[[int], Awaitable[object]], checks: int, concurrency: int
) -> tuple[float, float]:
    """Microseconds per call, wall clock and this process's CPU, `concurrency` calls in flight
    at a time (CPU is the steadier figure on a busy machine)."""
    for start in range(0, 200, concurrency):  # warm up
        await asyncio.gather(*(work(n) for n in range(start, start + concurrency)))
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, checks, concurrency):
        await asyncio.gather(*(work(n) for n in range(start, min(start + concurrency, checks))))
    wall = (time.perf_counter() - started) / checks * 1e6
    return wall, (time.process_time() - cpu) / checks * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--checks", type=int, default=5000)
    args = parser.parse_args()

    ping_client = redis.Redis.from_url(args.redis)
    limiters = {"in-process": InProcessRateLimiter(), "redis": RedisRateLimiter(args.redis)}
    rows = []
    for concurrency in (1, 32):

        async def ping(n: int) -> object:
            return await ping_client.ping()

        rows.append(("redis PING", concurrency, await timed(ping, args.checks, concurrency)))
        for name, limiter in limiters.items():
            limit = RequestLimit(10**9)
            limit.services = SimpleNamespace(  # type: ignore[assignment]
                tokens=Tokens(b"bench"), rate_limiter=limiter, clock=lambda: datetime.now(UTC)
            )

            async def check(n: int, limit: RequestLimit = limit) -> object:
                return await limit.check(TOKENS[n % len(TOKENS)], "127.0.0.1")

            rows.append(
                (f"check, {name}", concurrency, await timed(check, args.checks, concurrency))
            )
        # the login throttle's `hit` (a MULTI of six commands, listed for reset) for comparison
        redis_limiter = limiters["redis"]

        async def hit(n: int, redis_limiter: RedisRateLimiter = redis_limiter) -> object:
            return await redis_limiter.hit(f"bench:{n % 100}", 10**9, 60, time.time())

        rows.append(
            ("hit (login's), redis", concurrency, await timed(hit, args.checks, concurrency))
        )
    print(f"{'what':<22} {'in flight':>9} {'wall µs':>9} {'CPU µs':>9}")
    for what, concurrency, (wall, cpu) in rows:
        print(f"{what:<22} {concurrency:>9} {wall:>9.1f} {cpu:>9.1f}")
    await ping_client.aclose()
    for limiter in limiters.values():
        await limiter.close()


if __name__ == "__main__":
    asyncio.run(main())
