"""Serves the agencyhub app for the benchmark: like `agencyhub serve`, minus the access log.

The bare endpoint is started with exactly the same uvicorn options from here (uvloop, httptools,
no access log), so neither side pays for something the other does not. (`ACCESS_LOG=false
agencyhub serve` is the production equivalent.) Settings come from the environment.

    DATABASE_URL=... SECRET_KEY=... GRAPHIQL=false .venv/bin/python bench/serve_app.py --port 8001
"""

from __future__ import annotations

import argparse
from typing import Any

# The same server options for both sides of the benchmark (bare_viewer.py imports these):
# one process, uvloop, httptools, no access log, warnings only.
UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "access_log": False,
    "log_level": "warning",
    "lifespan": "on",
    "proxy_headers": True,  # as in `agencyhub serve`
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="processes (needs REDIS_URL)")
    args = parser.parse_args()

    import uvicorn

    from agencyhub.cli import websocket_options
    from agencyhub.settings import Settings

    settings = Settings()
    if args.workers > 1:  # as `agencyhub serve --workers N`: each builds its app from the env
        uvicorn.run(
            "agencyhub.app:create_app",
            factory=True,
            workers=args.workers,
            host=args.host,
            port=args.port,
            **websocket_options(settings),
            **UVICORN_OPTIONS,
        )
        return

    from agencyhub.app import create_app

    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        **websocket_options(settings),  # as in `agencyhub serve`
        **UVICORN_OPTIONS,
    )


if __name__ == "__main__":
    main()
