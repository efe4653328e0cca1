"""Serves the app for a benchmark: `agencyhub serve` without the access log (harness.py's
UVICORN_OPTIONS, which the bare endpoint runs with too); settings from the environment."""

from __future__ import annotations

import argparse
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
# BENCH_GC_CENSUS=1: on SIGUSR1 a worker logs the objects the collector tracks, by type; on
# SIGUSR2 it thaws the frozen heap (agencyhub/collector.py) and logs the garbage that a complete
# walk then finds (cycles among frozen objects that died: what freezing defers).
CENSUS = os.environ.get("BENCH_GC_CENSUS") == "1"


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

    def timed(phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter()
            return
        ms = 1000 * (time.perf_counter() - started[0])
        if ms >= GC_PAUSE_LOGGED_MS:
            print(f"gc pause {ms:.0f} ms at {time.time():.3f}", file=sys.stderr, flush=True)

    gc.callbacks.append(timed)
    if CENSUS:
        signal.signal(signal.SIGUSR1, census)
        signal.signal(signal.SIGUSR2, frozen_garbage)
    return create_app()


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
