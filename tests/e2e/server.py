"""Start the real console script (`agencyhub serve`, uvicorn) in a child process."""

from __future__ import annotations

import contextlib
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
    with server_process(cwd, **env) as (base, _):
        yield base


@contextmanager
def server_process(cwd: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`running_server`, with the `agencyhub serve` process itself."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environment.update(HOST="127.0.0.1", PORT=str(port), **env)
    log = open(cwd / f"server-{port}.log", "wb")
    process = subprocess.Popen(
        [AGENCYHUB, "serve"], cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # a busy CI machine: imports alone took 7 s
        while True:
            if process.poll() is not None:
                raise RuntimeError((cwd / f"server-{port}.log").read_text())
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("server did not become healthy in 60 s")
            time.sleep(0.1)
        yield base, process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def children(parent: int) -> set[int]:
    """The processes `parent` started (uvicorn's workers), from Linux's /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")"
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == parent:
            found.add(int(stat.parent.name))
    return found


def serving_process(candidates: set[int], server_port: int, client_port: int) -> int:
    """Which of `candidates` holds the server's end of the local TCP connection from
    `client_port` to `server_port`: the worker that accepted it and serves it."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
        if (local, remote) == (server_port, client_port) and fields[9] != "0":
            inodes.add(f"socket:[{fields[9]}]")
    assert len(inodes) == 1, f"no single accepted connection from port {client_port}"
    for pid in candidates:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in inodes:
                    return pid
    raise AssertionError(f"none of {candidates} serves the connection from port {client_port}")
