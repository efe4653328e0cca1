"""Serves the app for a benchmark: `agencyhub serve` without the access log (harness.py's
UVICORN_OPTIONS, which the bare endpoint runs with too); settings from the environment."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from typing import Any

import uvicorn
from harness import UVICORN_OPTIONS

# A full (generation 2) collection slower than this is logged as `gc pause <ms> ms`: the
# benchmarks read these lines from the server logs (fanout.py).
GC_PAUSE_LOGGED_MS = 50
# An experiment (BENCH_GC_FREEZE_AFTER_FULL=1): what survives each full collection is frozen, so
# the next one scans only what came after. Not in the product: frozen cycles are never freed.
FREEZE_AFTER_FULL = os.environ.get("BENCH_GC_FREEZE_AFTER_FULL") == "1"


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
        if FREEZE_AFTER_FULL:
            gc.freeze()
        if ms >= GC_PAUSE_LOGGED_MS:
            print(f"gc pause {ms:.0f} ms (generation 2)", file=sys.stderr, flush=True)

    gc.callbacks.append(timed)
    return create_app()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="processes (needs REDIS_URL)")
    args = parser.parse_args()
    from agencyhub.cli import websocket_options
    from agencyhub.settings import Settings

    # As `agencyhub serve`: each worker builds its app from the environment.
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
