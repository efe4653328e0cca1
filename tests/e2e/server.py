"""Start the real console script (`agencyhub serve`, uvicorn) in a child process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import REDIS_URL

AGENCYHUB = str(Path(sys.executable).with_name("agencyhub"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def production_env(database_url: str, **env: str) -> dict[str, str]:
    """The production shape: PostgreSQL and Redis (with a fast relay and cheap password
    hashing, for quick tests)."""
    return dict(
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        SECRET_KEY="e2e",
        OUTBOX_POLL_SECONDS="0.1",
        ARGON2_TIME_COST="1",
        ARGON2_MEMORY_KIB="1024",
        **env,
    )


@contextmanager
def running_server(cwd: Path, **env: str) -> Iterator[str]:
    """Serve until the block ends; yields the base URL once /healthz answers."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environment.update(HOST="127.0.0.1", PORT=str(port), **env)
    log = open(cwd / f"server-{port}.log", "wb")
    process = subprocess.Popen(
        [AGENCYHUB, "serve"], cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError((cwd / f"server-{port}.log").read_text())
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("server did not become healthy in 30 s")
            time.sleep(0.1)
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
