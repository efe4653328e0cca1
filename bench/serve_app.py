"""Serves the app for a benchmark: `agencyhub serve` without the access log (harness.py's
UVICORN_OPTIONS, which the bare endpoint runs with too); settings from the environment."""

from __future__ import annotations

import argparse

import uvicorn
from harness import UVICORN_OPTIONS


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
        "agencyhub.app:create_app",
        factory=True,
        workers=args.workers if args.workers > 1 else None,
        host=args.host,
        port=args.port,
        **websocket_options(Settings()),
        **UVICORN_OPTIONS,
    )


if __name__ == "__main__":
    main()
