"""Shared by the benchmark scripts: the database, the seed data and the machine description.

Not an entry point; `viewer_http.py` and `profile_viewer.py` import it (the scripts' own
directory is first on sys.path when they run).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
BIN = Path(sys.executable).parent

DEFAULT_PG = os.environ.get("BENCH_PG", "postgres@127.0.0.1:5432")
SECRET_KEY = "bench-secret"
PASSWORD = "correct-horse-battery"
BENCH_EMAIL = "bench@example.com"

VIEWER_QUERY = (
    "{ viewer { user { id email role } agency { id name primarySubAccount { id name status } } } }"
)
SIGN_UP = """
mutation SignUp($name: String!, $email: String!, $password: String!) {
  signUpAgency(input: {agencyName: $name, ownerEmail: $email, password: $password}) {
    token
    userErrors { code message }
  }
}
"""
# The `call` table's columns a benchmark COPYs (all but the id).
CALL_COLUMNS = (
    "agency_id",
    "external_id",
    "sub_account_id",
    "direction",
    "channel",
    "status",
    "tier",
    "started_at",
    "duration_seconds",
    "recorded_at",
)
PACKAGES = (
    "strawberry-graphql",
    "graphql-core",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "sqlalchemy",
    "asyncpg",
    "orjson",
    "pyinstrument",
)


def asyncpg_dsn(pg: str, database: str) -> str:
    return f"postgresql://{pg}/{database}"


def sqlalchemy_url(pg: str, database: str) -> str:
    return f"postgresql+asyncpg://{pg}/{database}"


def timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


async def recreate_database(pg: str, name: str) -> str:
    """Drop `name` if it exists and create it empty; returns the server version."""
    conn = await asyncpg.connect(asyncpg_dsn(pg, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def drop_database(pg: str, name: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(pg, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def app_env(database_url: str, data_dir: Path) -> dict[str, str]:
    """The environment the app runs with: PostgreSQL, in-process broker, no IDE."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY=SECRET_KEY,
        GRAPHIQL="false",
        AUTO_MIGRATE="false",
        DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
    )
    return env


def migrate(database_url: str, data_dir: Path) -> None:
    """`agencyhub migrate`, run from an empty directory so no `.env` is picked up."""
    subprocess.run(
        [str(BIN / "agencyhub"), "migrate"],
        env=app_env(database_url, data_dir),
        cwd=data_dir,
        check=True,
        stdout=subprocess.DEVNULL,
    )


async def sign_up(client: httpx.AsyncClient, name: str, email: str) -> str:
    """Signs an agency up through the API; returns its owner's bearer token."""
    response = await client.post(
        "/graphql",
        json={
            "query": SIGN_UP,
            "variables": {"name": name, "email": email, "password": PASSWORD},
        },
    )
    response.raise_for_status()
    body = response.json()
    payload = (body.get("data") or {}).get("signUpAgency")
    if not payload or payload["userErrors"] or not payload["token"]:
        raise RuntimeError(f"sign-up of {email} failed: {body}")
    return str(payload["token"])


async def seed(client: httpx.AsyncClient, agencies: int, concurrency: int = 4) -> str:
    """The benchmark's agency plus `agencies` others, all through the API; returns the token.

    Each sign-up costs an argon2 hash (tens of ms), so they run a few at a time.
    """
    token = await sign_up(client, "Bench", BENCH_EMAIL)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await sign_up(client, f"Agency {i:04d}", f"owner{i:04d}@example.com")

    await asyncio.gather(*(one(i) for i in range(agencies)))
    return token


async def table_counts(pg: str, database: str) -> dict[str, int]:
    conn = await asyncpg.connect(asyncpg_dsn(pg, database))
    try:
        counts = {}
        for table in ("agency", "sub_account", "app_user", "auth_session", "ledger_entry"):
            counts[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
        return counts
    finally:
        await conn.close()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        return out.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _wrk_version() -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    out = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    return (
        (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else None
    )


def loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def machine_info(postgres_version: str | None) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "mem_total_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": postgres_version,
        "wrk": _wrk_version(),
        "packages": versions,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_tracked_changes": bool(status) if status is not None else None,
    }


def run_async(main: Callable[[], Awaitable[Any]]) -> Any:
    """Runs `main` on uvloop, the loop the server uses."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def app_settings(database_url: str, data_dir: Path) -> Any:
    """The settings the benchmark server runs with (`app_env`), for an in-process app."""
    from agencyhub.settings import Settings

    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        secret_key=SECRET_KEY,
        graphiql=False,
        redis_url=None,
        auto_migrate=False,
        data_dir=data_dir,
    )
