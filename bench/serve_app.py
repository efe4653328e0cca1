"""Serves the app for a benchmark: `agencyhub serve` without the access log (harness.py's
UVICORN_OPTIONS, which the bare endpoint runs with too); settings from the environment."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
import time
from collections import Counter
from typing import Any

import uvicorn
from harness import UVICORN_OPTIONS

# A full (generation 2) collection slower than this is logged as `gc pause <ms> ms at <epoch
# seconds>`: the
# benchmarks read these lines from the server logs (fanout.py).
GC_PAUSE_LOGGED_MS = 50
# A younger collection (generation 0 or 1) slower than this is logged as `gc young pause <ms> ms
# at <epoch> generation <n>`, and the event loop running this much later than a 10 ms sleep
# asked as `loop lag <ms> ms at <epoch>`: what else can stall a server for a moment.
YOUNG_PAUSE_LOGGED_MS = 20
LOOP_LAG_LOGGED_MS = 50
# The first generation-1 collection of more objects than this logs what they are, by type.
GEN1_CENSUS_ABOVE = 60_000
# BENCH_GC_CENSUS=1: on SIGUSR1 a worker logs the objects the collector tracks, by type; on
# SIGUSR2 it thaws the frozen heap (agencyhub/collector.py) and logs the garbage that a complete
# walk then finds (cycles among frozen objects that died: what freezing defers).
CENSUS = os.environ.get("BENCH_GC_CENSUS") == "1"
# BENCH_GC_YOUNG=1 (fanout.py sets it): before each generation-1 collection, count what it is
# about to walk (for the `objects` of its pause line and the census above GEN1_CENSUS_ABOVE).
# Off by default: listing both young generations at every such collection was 2 % of the
# GraphQL server's CPU in the viewer benchmark, which the bare endpoint does not pay.
YOUNG = os.environ.get("BENCH_GC_YOUNG") == "1"


def census(*_: Any) -> None:
    objects = gc.get_objects()
    kinds = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objects)
    print(
        f"gc census {len(objects)} tracked, {gc.get_freeze_count()} frozen,"
        f" counts {gc.get_count()}",
        file=sys.stderr,
    )
    for kind, n in kinds.most_common(40):
        print(f"gc census   {n:>9} {kind}", file=sys.stderr, flush=True)


def frozen_garbage(*_: Any) -> None:
    frozen = gc.get_freeze_count()
    gc.unfreeze()
    started = time.perf_counter()
    found = gc.collect()
    ms = 1000 * (time.perf_counter() - started)
    print(
        f"gc frozen garbage {found} of {frozen} frozen, complete walk {ms:.0f} ms",
        file=sys.stderr,
        flush=True,
    )


def create_app() -> Any:
    """`agencyhub.app.create_app` in a worker that logs its long garbage-collection pauses."""
    from agencyhub.app import create_app

    started = [0.0]

    sizes: list[int] = []
    started_cpu: list[float] = []
    dumped: list[int] = []

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            if info["generation"] == 1 and YOUNG:  # what the walk is about to visit
                sizes[:] = [len(gc.get_objects(generation=g)) for g in (0, 1)]
                if sizes[1] > GEN1_CENSUS_ABOVE and not dumped:  # once: what fills it
                    dumped.append(1)
                    young = gc.get_objects(generation=1)
                    kinds = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in young)
                    for kind, n in kinds.most_common(25):
                        print(f"gc gen1 census {n:>7} {kind}", file=sys.stderr, flush=True)
            started[0] = time.perf_counter()
            started_cpu[:] = [time.thread_time()]
            return
        ms = 1000 * (time.perf_counter() - started[0])
        cpu = 1000 * (time.thread_time() - started_cpu[0]) if started_cpu else 0.0
        generation = info["generation"]
        if generation == 2 and ms >= GC_PAUSE_LOGGED_MS:
            print(f"gc pause {ms:.0f} ms at {time.time():.3f}", file=sys.stderr, flush=True)
        elif generation < 2 and ms >= YOUNG_PAUSE_LOGGED_MS:
            line = f"gc young pause {ms:.0f} ms at {time.time():.3f} generation {generation}"
            if generation == 1:
                line += f" objects {sizes} collected {info['collected']} cpu {cpu:.0f}"
            print(line, file=sys.stderr, flush=True)

    gc.callbacks.append(timed)
    if CENSUS:
        signal.signal(signal.SIGUSR1, census)
        signal.signal(signal.SIGUSR2, frozen_garbage)
    return _watching_the_loop(create_app())


async def _loop_lag() -> None:
    while True:
        asked = time.perf_counter()
        await asyncio.sleep(0.01)
        ms = 1000 * (time.perf_counter() - asked) - 10
        if ms >= LOOP_LAG_LOGGED_MS:
            print(f"loop lag {ms:.0f} ms at {time.time():.3f}", file=sys.stderr, flush=True)


def _watching_the_loop(app: Any) -> Any:
    """The app, with a task started on its first call that logs the event loop's late wake-ups."""
    watching: list[asyncio.Task[None]] = []

    async def watched(scope: Any, receive: Any, send: Any) -> None:
        if not watching:
            watching.append(asyncio.get_running_loop().create_task(_loop_lag()))
        await app(scope, receive, send)

    return watched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="processes (needs REDIS_URL)")
    args = parser.parse_args()
    from agencyhub.metrics import multiprocess_directory_for

    # No request log lines (as UVICORN_OPTIONS has no access log), but the metrics are counted
    # as in `agencyhub serve`, in files shared by the workers when there are several.
    os.environ.setdefault("ACCESS_LOG", "false")
    # As `agencyhub serve`: each worker builds its app from the environment.
    with multiprocess_directory_for(args.workers):
        serve(args)


def serve(args: argparse.Namespace) -> None:
    from agencyhub.cli import websocket_options
    from agencyhub.settings import Settings

    uvicorn.run(
        "serve_app:create_app",
        factory=True,
        workers=args.workers if args.workers > 1 else None,
        host=args.host,
        port=args.port,
        **websocket_options(Settings()),
        **UVICORN_OPTIONS,
    )


if __name__ == "__main__":
    main()
