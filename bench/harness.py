"""What every benchmark in bench/ does around its measurement: a fresh PostgreSQL database that
the app migrates, the app's server processes, the CPU and memory they use (psutil), percentiles
(`statistics`), wrk, the app in-process, the machine's description and the results file.

The scripts import it as a plain module: `.venv/bin/python bench/<script>.py` puts bench/ first
on sys.path, as Python does for every script.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import psutil

T = TypeVar("T")
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
BIN = Path(sys.executable).parent
SERVE_APP = [sys.executable, str(BENCH_DIR / "serve_app.py")]
DEFAULT_PG = os.environ.get("BENCH_PG", "postgres@127.0.0.1:5432")
SECRET_KEY = "bench-secret"
PASSWORD = "correct-horse-battery"
# Every server a benchmark starts runs with these (serve_app.py, bare_viewer.py): uvloop,
# httptools, no access log (`agencyhub serve` logs each request, a cost one side alone would pay).
UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "access_log": False,
    "log_level": "warning",
    "lifespan": "on",
    "proxy_headers": True,  # as in `agencyhub serve`
}
# The `call` table's columns a benchmark COPYs (all but the id), in the order it sends them.
CALL_COLUMNS = tuple(
    "agency_id external_id sub_account_id direction channel status tier started_at"
    " duration_seconds recorded_at spent_micros cost_micros overage_seconds funded_by".split()
)
PACKAGES = (
    "strawberry-graphql graphql-core starlette uvicorn uvloop httptools sqlalchemy asyncpg orjson"
    " pyinstrument".split()
)
# More than this share of one core used by other processes during a run: not an idle machine.
OTHER_CPU_WARNING = 0.05


def timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def run_async(main: Callable[[], Awaitable[T]]) -> T:
    """Runs `main` on uvloop, the loop the server uses."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())  # type: ignore[arg-type]


# ---- PostgreSQL and the app's command line ------------------------------------------------------


def asyncpg_dsn(pg: str, database: str) -> str:
    return f"postgresql://{pg}/{database}"


def sqlalchemy_url(pg: str, database: str) -> str:
    return f"postgresql+asyncpg://{pg}/{database}"


@contextlib.asynccontextmanager
async def connect(pg: str, database: str = "postgres") -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(pg, database))
    try:
        yield conn
    finally:
        await conn.close()


async def recreate_database(pg: str, name: str) -> str:
    """Drops `name` if it exists and creates it empty; returns the server's version."""
    async with connect(pg) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
        return str(await conn.fetchval("SHOW server_version"))


async def drop_database(pg: str, name: str) -> None:
    async with connect(pg) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def row_counts(pg: str, database: str, tables: Sequence[str]) -> dict[str, int]:
    async with connect(pg, database) as conn:
        return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in tables}


def app_env(database_url: str, workdir: Path) -> dict[str, str]:
    """The environment the app runs with: PostgreSQL, the in-process broker, no IDE."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY=SECRET_KEY,
        GRAPHIQL="false",
        AUTO_MIGRATE="false",
        DATA_DIR=str(workdir),
        PYTHONUNBUFFERED="1",
    )
    # Each benchmark drives the server from one token or address, far past any per-minute
    # limit: off unless the environment sets it (how its own cost is measured).
    env.setdefault("RATE_LIMIT_PER_MINUTE", "0")
    return env


def app_settings(database_url: str, workdir: Path) -> Any:
    """The same settings for an app built in-process."""
    from agencyhub.settings import Settings

    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        secret_key=SECRET_KEY,
        graphiql=False,
        redis_url=None,
        auto_migrate=False,
        data_dir=workdir,
        rate_limit_per_minute=int(os.environ.get("RATE_LIMIT_PER_MINUTE", "0")),
    )


def agencyhub(database_url: str, workdir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`agencyhub <argv>` on the database, from an empty folder so that no `.env` is read."""
    return subprocess.run(
        [str(BIN / "agencyhub"), *argv],
        env=app_env(database_url, workdir),
        cwd=workdir,
        capture_output=True,
        text=True,
    )


def migrate(database_url: str, workdir: Path) -> None:
    done = agencyhub(database_url, workdir, "migrate")
    if done.returncode != 0:
        raise RuntimeError(f"agencyhub migrate failed:\n{done.stdout}{done.stderr}")


# ---- server processes, CPU and memory ------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    rss_bytes: int


def tree_usage(pid: int) -> Usage:
    """CPU seconds (user + system) and resident memory of a process and its descendants."""
    cpu, rss = 0.0, 0
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess), process.oneshot():
            times = process.cpu_times()
            cpu += times.user + times.system
            rss += process.memory_info().rss
    return Usage(cpu, rss)


class Server:
    """A server subprocess on a free port of 127.0.0.1, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.name = name
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            cwd=workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def usage(self) -> Usage:
        return tree_usage(self.process.pid)

    def cpu_seconds(self) -> float:
        return self.usage().cpu_seconds

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def cpu_by_group(groups: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """CPU seconds so far: each of `groups` (processes with their children), this script,
    PostgreSQL, Redis, every other process, this script's exited children (wrk, pgbench), and
    the machine's split."""
    group_of: dict[int, str] = {}
    for name, pids in groups.items():
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                tree = [pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))]
                group_of.update(dict.fromkeys(tree, name))
    used: dict[str, float] = defaultdict(float)
    for process in psutil.process_iter(["name", "cpu_times"]):
        times, name = process.info["cpu_times"], process.info["name"] or ""
        if times is None:
            continue
        if process.pid in group_of:
            group = group_of[process.pid]
        elif process.pid == os.getpid():
            group = "this script"
        elif name == "postgres":
            group = "postgresql"
        elif name.startswith("redis-server"):
            group = "redis"
        else:
            group = "other processes"
        used[group] += times.user + times.system
    me = psutil.Process().cpu_times()
    used["this script's children (wrk)"] = me.children_user + me.children_system
    machine = psutil.cpu_times()
    used["machine busy"] = machine.user + machine.nice + machine.system + machine.steal
    used["machine busy"] += machine.irq + machine.softirq
    used["machine irq+softirq+steal"] = machine.irq + machine.softirq + machine.steal
    used["machine idle+iowait"] = machine.idle + machine.iowait
    return dict(used)


@contextlib.contextmanager
def cpu_used(groups: Mapping[str, Sequence[int]]) -> Iterator[dict[str, float]]:
    """Fills the yielded dict with the CPU seconds by group (`cpu_by_group`) spent in the block,
    with "unattributed (processes that ended)" (busy time no living process accounts for) and
    "wall_seconds"; warns when other processes took more than OTHER_CPU_WARNING of a core."""
    used: dict[str, float] = {}
    before, started = cpu_by_group(groups), time.monotonic()
    yield used
    after, wall = cpu_by_group(groups), time.monotonic() - started
    used.update({k: round(v - before.get(k, 0.0), 2) for k, v in after.items()})
    processes = sum(v for k, v in used.items() if not k.startswith("machine"))
    busy = used["machine busy"] - used["machine irq+softirq+steal"]
    used["unattributed (processes that ended)"] = round(busy - processes, 2)
    used["wall_seconds"] = round(wall, 2)
    if used.get("other processes", 0.0) > OTHER_CPU_WARNING * wall:
        print(
            f"  WARNING: other processes used {used['other processes']} s of CPU during the run:"
            " the machine was not idle",
            flush=True,
        )


def cores(used: dict[str, float]) -> dict[str, float]:
    """`cpu_used`'s seconds as cores: seconds per wall-clock second."""
    wall = used["wall_seconds"]
    return {k: round(v / wall, 2) for k, v in used.items() if k != "wall_seconds" and wall > 0}


# ---- one benchmark run ---------------------------------------------------------------------------


def arguments(doc: str | None, database: str, keep_option: bool = True) -> argparse.ArgumentParser:
    """A parser with the options every benchmark has."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pg", default=DEFAULT_PG, help="user@host:port of PostgreSQL")
    parser.add_argument("--database", default=database)
    if keep_option:
        parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--output", type=Path, help="JSON results file")
    return parser


class Session:
    """One run of a benchmark: a scratch folder, the database (recreated and migrated unless
    `fresh` is false; dropped at the end unless kept), the servers started on it (stopped at the
    end, their logs shown on failure), and the results file."""

    def __init__(self, name: str, args: argparse.Namespace, *, fresh: bool = True) -> None:
        self.name = name
        self.pg, self.database = args.pg, args.database
        self.keep = bool(getattr(args, "keep_database", False))
        self.output: Path | None = getattr(args, "output", None)
        self.fresh = fresh
        self.started = timestamp()
        self.url = sqlalchemy_url(self.pg, self.database)
        self.dsn = asyncpg_dsn(self.pg, self.database)
        self.servers: list[Server] = []
        self.created = False

    def __enter__(self) -> Session:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"agencyhub-bench-{self.name}-"))
        self.loadavg_before = os.getloadavg()
        self.tree_at_start = working_tree()
        try:
            if self.fresh:
                print(f"database {self.database}: recreating and migrating", flush=True)
                self.pg_version = run_async(lambda: recreate_database(self.pg, self.database))
                self.created = True
                migrate(self.url, self.workdir)
            else:  # a kept dataset: brought up to the code's schema (later migrations)
                self.pg_version = run_async(self._server_version)
                migrate(self.url, self.workdir)
        except BaseException as error:
            self.__exit__(type(error), error, None)
            raise
        return self

    async def _server_version(self) -> str:
        async with connect(self.pg) as conn:
            return str(await conn.fetchval("SHOW server_version"))

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        if error is not None:
            for server in self.servers:
                print(f"--- {server.name} log (tail) ---\n{server.log_tail()}", file=sys.stderr)
        self.stop_servers()
        if self.created and not self.keep:
            run_async(lambda: drop_database(self.pg, self.database))
        elif self.created:
            print(f"database {self.database} kept")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def env(self, **extra: str) -> dict[str, str]:
        return {**app_env(self.url, self.workdir), **extra}

    def settings(self) -> Any:
        return app_settings(self.url, self.workdir)

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return agencyhub(self.url, self.workdir, *argv)

    def start(
        self, *names: str, argv: list[str] | None = None, env: dict[str, str] | None = None
    ) -> list[Server]:
        """One server per name (serve_app.py unless `argv`), all healthy when this returns."""
        started = [Server(n, argv or SERVE_APP, env or self.env(), self.workdir) for n in names]
        self.servers += started
        for server in started:
            server.wait_ready()
        return started

    def stop_servers(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()

    def connect(self) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
        return connect(self.pg, self.database)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with connect(self.pg, self.database) as conn:
            return await conn.fetchval(sql, *args)

    async def wait_outbox_published(self, limit_s: float) -> int:
        """Waits until the app's relay has published every outbox event, or `limit_s`; returns
        how many are left."""
        unpublished = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        async with self.connect() as conn:
            deadline = time.monotonic() + limit_s
            while (left := await conn.fetchval(unpublished)) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            return int(left)

    def write(self, result: dict[str, Any]) -> Path:
        """The results file: the run's name, start, machine and code, then `result`."""
        load_after = os.getloadavg()
        print(f"load average before {list(self.loadavg_before)}, after {list(load_after)}")
        output = self.output or RESULTS_DIR / f"{self.name}-{self.started}.json"
        full = {
            "benchmark": self.name,
            "started_at": self.started,
            "machine": machine_info(self.pg_version),
            "working_tree_at_start": self.tree_at_start,
            "working_tree": working_tree(),
            **result,
            "loadavg_before": list(self.loadavg_before),
            "loadavg_after": list(load_after),
        }
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(full, indent=2, default=str) + "\n")
        print(f"wrote {output}")
        return output


# ---- GraphQL over HTTP ---------------------------------------------------------------------------

SIGN_UP = """mutation SignUp($input: SignUpAgencyInput!) { signUpAgency(input: $input) {
  token agency { id primarySubAccount { id } } userErrors { code message field } } }"""


@dataclass(frozen=True)
class BenchAgency:
    token: str
    agency_gid: str
    primary_gid: str


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """One GraphQL request; raises on a non-200 answer or on GraphQL errors."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body


async def sign_up_on_plan(
    client: httpx.AsyncClient, name: str, email: str, plan: str | None = None
) -> BenchAgency:
    """An agency signed up through the API (on the default plan unless `plan`)."""
    fields = {"agencyName": name, "ownerEmail": email, "password": PASSWORD}
    if plan is not None:
        fields["planName"] = plan
    payload = (await gql(client, SIGN_UP, {"input": fields}))["data"]["signUpAgency"]
    if payload["userErrors"] or not payload["token"]:
        raise RuntimeError(f"sign-up of {email} failed: {payload}")
    return BenchAgency(
        payload["token"], payload["agency"]["id"], payload["agency"]["primarySubAccount"]["id"]
    )


CREATE_SUB_ACCOUNT = """mutation($i: CreateSubAccountInput!) { createSubAccount(input: $i) {
  subAccount { id } userErrors { code message } } }"""
TRANSFER = """mutation($i: TransferMinutesInput!) { transferMinutes(input: $i) {
  transfer { id } userErrors { code message } } }"""
API_KEY = 'mutation { createApiKey(input: {name: "bench"}) { secret } }'


async def mutate(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str
) -> dict[str, Any]:
    """A mutation's payload (its only field); raises on GraphQL errors or userErrors."""
    [(field, payload)] = (await gql(client, query, variables, token))["data"].items()
    if payload.get("userErrors"):
        raise RuntimeError(f"{field} failed: {payload['userErrors']}")
    return dict(payload)


async def create_sub_account(
    client: httpx.AsyncClient, token: str, name: str, email: str, **fields: str
) -> str:
    """A secondary sub-account made through `createSubAccount`; its global ID."""
    made = {"name": name, "loginEmail": email, **fields}
    return str((await mutate(client, CREATE_SUB_ACCOUNT, {"i": made}, token))["subAccount"]["id"])


async def transfer(
    client: httpx.AsyncClient, token: str, source: str, to: str, minutes: int, tier: str
) -> None:
    """`minutes` of `tier` moved by `transferMinutes`; raises unless the transfer was made."""
    moved = {"fromId": source, "toId": to, "tier": tier, "minutes": str(minutes)}
    if not (await mutate(client, TRANSFER, {"i": moved}, token))["transfer"]:
        raise RuntimeError(f"no transfer of {moved}")


async def api_key(client: httpx.AsyncClient, token: str) -> str:
    """A new ingest API key's secret."""
    return str((await gql(client, API_KEY, token=token))["data"]["createApiKey"]["secret"])


async def subscribe(
    url: str, token: str, subscriptions: Sequence[tuple[str, str, dict[str, Any]]], **options: Any
) -> Any:
    """A graphql-transport-ws socket to the app at `url`, initialised with `token`, with the
    `subscriptions` (id, query, variables) sent; `options` go to websockets' `connect`."""
    from websockets.asyncio.client import connect

    ws = await connect(
        url.replace("http", "ws", 1) + "/graphql",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        **options,
    )
    init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
    await ws.send(json.dumps(init))
    ack = json.loads(await asyncio.wait_for(ws.recv(), 120))
    if ack.get("type") != "connection_ack":
        raise RuntimeError(f"no connection_ack: {ack}")
    for id_, query, variables in subscriptions:
        payload = {"query": query, "variables": variables}
        await ws.send(json.dumps({"id": id_, "type": "subscribe", "payload": payload}))
    return ws


def over_api(url: str, work: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """`work(client)` with an HTTP client on the server at `url`, run to completion."""

    async def run() -> T:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            return await work(client)

    return run_async(run)


def global_key(global_id: str) -> Any:
    """The UUID inside a Relay global ID."""
    from resolvers.global_id import from_global_id

    decoded = from_global_id(global_id)
    if decoded is None:
        raise ValueError(f"not a global ID: {global_id!r}")
    return decoded[1]


def sequential(
    server: Server, body: bytes, headers: dict[str, str], warmup: int, requests: int
) -> dict[str, Any]:
    """`warmup` then `requests` POSTs of `body` one at a time on one keep-alive connection,
    timed at the client, the CPU by group (`cpu_used`) around the measured ones. Status -1 is
    a 200 with GraphQL errors."""
    statuses, latencies, size = set(), [], 0
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for _ in range(warmup):
            client.post("/graphql", content=body, headers=headers)
        with cpu_used({"app server": [server.process.pid]}) as cpu:
            for _ in range(requests):
                started = time.perf_counter()
                response = client.post("/graphql", content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                statuses.add(-1 if b'"errors"' in response.content else response.status_code)
                size = len(response.content)
    return summary_ms(latencies) | {
        "server_cpu_ms_per_request": round(1000 * cpu["app server"] / requests, 2),
        "cpu_seconds": cpu,
        "statuses": sorted(statuses),
        "response_bytes": size,
        "latencies_ms": [round(1000 * latency, 2) for latency in latencies],
    }


# ---- wrk -----------------------------------------------------------------------------------------

# Put before each script's own Lua: sums a counter (or finds a sample) over wrk's threads in
# done(), and reports it on a line of its own that `wrk()` reads back.
LUA_PRELUDE = """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_no", #threads)
end
function total(name)
  local sum = 0
  for _, thread in ipairs(threads) do sum = sum + thread:get(name) end
  return sum
end
function first(name)
  for _, thread in ipairs(threads) do
    local value = thread:get(name)
    if value ~= "" then return value end
  end
  return ""
end
function report(name, value) io.write("BENCH " .. name .. " " .. value .. "\\n") end
"""
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: sudo apt-get install -y wrk")


def lua_script(path: Path, body: str, **values: str | int | Sequence[str]) -> Path:
    """A wrk script: `values` as Lua globals, the prelude, then `body`."""

    def literal(value: str | int) -> str:
        if isinstance(value, int):
            return str(value)
        if "]==]" in value or "\n" in value:
            raise ValueError(f"cannot embed {value[:60]!r} in a Lua long string")
        return f"[==[{value}]==]"

    lines = [
        f"{name} = {{ {', '.join(map(literal, value))} }}"
        if isinstance(value, list | tuple)
        else f"{name} = {literal(value)}"  # type: ignore[arg-type]
        for name, value in values.items()
    ]
    path.write_text("\n".join(["-- generated by bench/", *lines, LUA_PRELUDE, body]))
    return path


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if not match:
        raise ValueError(f"unexpected wrk duration {value!r}")
    return float(match[1]) * _UNITS_MS[match[2]]


def wrk(url: str, script: Path, seconds: int, connections: int, threads: int = 1) -> dict[str, Any]:
    """A wrk run (`--latency`, 10 s timeout): its figures, and in "lua" what the script
    reported."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    done = subprocess.run([*argv, "--latency", "-s", str(script), url], capture_output=True)
    output = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{output}{done.stderr!r}")

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise ValueError(f"wrk output without {pattern!r}:\n{output}")
        return match

    finished = find(r"^\s*(\d+) requests in ([\d.]+\w+),")
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    lua = {
        m[1]: int(m[2]) if m[2].isdigit() else m[2] or None
        for m in re.finditer(r"^BENCH (\S+) ?(.*)$", output, re.MULTILINE)
    }
    return {
        "requests_per_second": float(find(r"^Requests/sec:\s+([\d.]+)")[1]),
        "p50_ms": _ms(find(r"^\s+50%\s+(\S+)")[1]),
        "p99_ms": _ms(find(r"^\s+99%\s+(\S+)")[1]),
        "requests": int(finished[1]),
        "seconds": _ms(finished[2]) / 1000,
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
        "socket_errors": dict(
            zip(
                ("connect", "read", "write", "timeout"),
                map(int, socket_errors.groups()) if socket_errors else (0, 0, 0, 0),
                strict=True,
            )
        ),
        "lua": lua,
    }


# ---- figures -------------------------------------------------------------------------------------


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """n, min, p50, p95, p99, max and mean of durations given in seconds, in ms
    (`statistics.quantiles`, inclusive method)."""
    ms = [s * 1000 for s in seconds]
    cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {
        "n": len(ms),
        "min_ms": round(min(ms), 2),
        "p50_ms": round(cuts[49], 2),
        "p95_ms": round(cuts[94], 2),
        "p99_ms": round(cuts[98], 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def one_line(statement: str, limit: int = 240) -> str:
    text = " ".join(statement.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _git(*args: str) -> str | None:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def working_tree() -> dict[str, Any]:
    """What the measured code is: the commit and the uncommitted changes on top of it."""
    return {
        "commit": _git("rev-parse", "--short", "HEAD"),
        "status": (_git("status", "--porcelain") or "").splitlines(),
        "diff_stat": (_git("diff", "--stat") or "").splitlines()[-1:] or None,
    }


def machine_info(postgres_version: str | None) -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        models = re.findall(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu_model = models[0] if models else cpu_model
    wrk_version = None
    if shutil.which("wrk"):
        done = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
        wrk_version = ((done.stdout or done.stderr).splitlines() or [None])[0]
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "mem_total_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": postgres_version,
        "wrk": wrk_version,
        "packages": versions,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_tracked_changes": bool(status) if status is not None else None,
        "cpu_probe_ms": cpu_probe_ms(),
    }


def cpu_probe_ms() -> float:
    """CPU time of a fixed piece of pure Python (the best of five): this VM's speed moves by
    up to half from one hour to the next, so runs are comparable only at a like probe."""
    times = []
    for _ in range(5):
        started = time.process_time()
        sum(range(10_000_000))
        times.append(time.process_time() - started)
    return round(1000 * min(times), 1)


# ---- the app in-process: statements and profiles -------------------------------------------------


@contextlib.asynccontextmanager
async def in_process_app(
    database_url: str, workdir: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app built by `create_app` inside its lifespan, no uvicorn: a client talking to it
    through httpx.ASGITransport, and its services (`.database`, `.health`, …)."""
    from agencyhub.app import create_app

    app = create_app(app_settings(database_url, workdir))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=120
        ) as client:
            yield client, app.state.services


@dataclass(frozen=True)
class Statement:
    sql: str
    seconds: float  # from the cursor's execute to its return, the round trip included
    kind: str  # "request", "control" (BEGIN, COMMIT, …) or "relay" (the outbox relay's)


def _kind(sql: str) -> str:
    # The relay's: the advisory lock and every outbox statement but the INSERT, which belongs to
    # the change that wrote the events (as in tests/api/test_account_manager.py).
    upper = sql.lstrip().upper()
    if "advisory" in sql or ("outbox" in sql and not upper.startswith("INSERT INTO OUTBOX")):
        return "relay"
    if upper.startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
        return "control"
    return "request"


@contextlib.contextmanager
def statements_of(database: Any) -> Iterator[list[Statement]]:
    """Every statement the app's two engines send while the block runs, timed."""
    from sqlalchemy import event

    seen: list[Statement] = []
    engines = {database.engine.sync_engine, database._read_engine.sync_engine}
    # By connection; a lookup (persistence.database.Lookup, its own pool) is announced with
    # none, so those are kept by their SQL.
    running: dict[Any, list[float]] = {}

    def before(conn: Any, cursor: Any, sql: str, parameters: Any, *args: Any) -> None:
        running.setdefault(id(conn) if conn is not None else sql, []).append(time.perf_counter())

    def after(conn: Any, cursor: Any, sql: str, parameters: Any, *args: Any) -> None:
        started = running.get(id(conn) if conn is not None else sql)
        if started:  # a statement already running when the listeners came has none
            spent = time.perf_counter() - started.pop()
            seen.append(Statement(sql, spent, _kind(sql)))

    listeners = [(e, n, f) for e in engines for n, f in (("before", before), ("after", after))]
    for engine, name, listener in listeners:
        event.listen(engine, f"{name}_cursor_execute", listener)
    try:
        yield seen
    finally:
        for engine, name, listener in listeners:
            event.remove(engine, f"{name}_cursor_execute", listener)


async def counted_requests(
    client: httpx.AsyncClient, database: Any, body: bytes, headers: dict[str, str], requests: int
) -> dict[str, Any]:
    """`requests` POSTs of `body`, each one's statements counted; the last one's listed."""
    per_request = []
    for _ in range(requests):
        with statements_of(database) as seen:
            response = await client.post("/graphql", content=body, headers=headers)
        if response.status_code != 200 or b'"errors"' in response.content:
            raise RuntimeError(f"in-process request failed: {response.text[:500]}")
        per_request.append(seen)
    last = per_request[-1]
    return {
        "statements_per_request": [sum(s.kind == "request" for s in r) for r in per_request],
        "statements": [one_line(s.sql, 400) for s in last if s.kind == "request"],
        "transaction_control": [one_line(s.sql) for s in last if s.kind == "control"],
        "relay_statements_meanwhile": sum(s.kind == "relay" for r in per_request for s in r),
    }


async def sql_share(
    client: httpx.AsyncClient, database: Any, bodies: Sequence[bytes], headers: dict[str, str]
) -> dict[str, Any]:
    """Each of `bodies` POSTed once, in-process: its latency and its statements' time (the
    round trips included), so the rest is Python (app, GraphQL, ASGI, the httpx client)."""
    totals, sql = [], []
    for body in bodies:
        with statements_of(database) as seen:
            started = time.perf_counter()
            response = await client.post("/graphql", content=body, headers=headers)
            totals.append(time.perf_counter() - started)
        if response.status_code != 200 or b'"errors"' in response.content:
            raise RuntimeError(f"in-process request failed: {response.text[:500]}")
        sql.append(sum(s.seconds for s in seen if s.kind == "request"))
    return {
        "in_process_latency": summary_ms(totals),
        "sql_ms_per_request": summary_ms(sql),
        "sql_share_of_request": round(sum(sql) / sum(totals), 3),
        "python_ms_per_request_mean": round(1000 * (sum(totals) - sum(sql)) / len(totals), 2),
    }


SITE = "/site-packages/"
APP_PACKAGES = tuple(f"{ROOT}/{p}/" for p in ("agencyhub", "resolvers", "schema", "persistence"))
# Where a profiled frame's time goes, by its file; the first match wins. C functions count for
# their caller's layer.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("strawberry", (SITE + "strawberry/",)),
    ("graphql-core", (SITE + "graphql/",)),
    ("sqlalchemy", (SITE + "sqlalchemy/",)),
    ("asyncpg", (SITE + "asyncpg/",)),
    ("starlette", (SITE + "starlette/",)),
    ("httpx client (not server work)", (SITE + "httpx/", SITE + "httpcore/")),
    ("anyio", (SITE + "anyio/",)),
    ("pydantic", (SITE + "pydantic/", SITE + "pydantic_core/")),
    ("other libraries", (SITE,)),
    ("agencyhub code", (*APP_PACKAGES, f"{ROOT}/domain/")),
    ("benchmark driver", (f"{BENCH_DIR}/",)),
    ("asyncio / stdlib", ("/lib/python3",)),
)
SERVER_LAYERS = ("strawberry", "graphql-core", "sqlalchemy", "asyncpg", "starlette", "anyio")
SERVER_LAYERS += ("pydantic", "other libraries", "agencyhub code")
EVENT_LOOP = "event loop (uvloop C code, incl. idle wait)"


async def posts(
    client: httpx.AsyncClient, body: bytes, headers: dict[str, str], requests: int
) -> list[float]:
    """`requests` POSTs of `body` one at a time, each one's seconds; stops on an error answer."""
    spent = []
    for _ in range(requests):
        started = time.perf_counter()
        response = await client.post("/graphql", content=body, headers=headers)
        spent.append(time.perf_counter() - started)
        if response.status_code != 200 or b'"errors"' in response.content:
            raise RuntimeError(f"in-process request failed: {response.text[:500]}")
    return spent


async def profiled_posts(
    client: httpx.AsyncClient, body: bytes, headers: dict[str, str], requests: int, html: Path
) -> dict:
    """`requests` POSTs of `body` (`posts`), plain and then under pyinstrument (`profiled`)."""
    load = functools.partial(posts, client, body, headers, requests)
    return await profiled(load, requests, html)


async def profiled(load: Callable[[], Awaitable[object]], requests: int, html: Path) -> dict:
    """`load` (of `requests` requests) run as it is and then under pyinstrument: ms per request
    both ways and the profile (`profile_summary`), which is printed."""
    from pyinstrument import Profiler

    started = time.perf_counter()
    await load()
    plain = time.perf_counter() - started
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    started = time.perf_counter()
    await load()
    elapsed = time.perf_counter() - started
    profiler.stop()
    return {
        "requests": requests,
        "ms_per_request": round(1000 * plain / requests, 3),
        "ms_per_request_profiled": round(1000 * elapsed / requests, 3),
    } | profile_summary(profiler, html)


def profile_summary(profiler: Any, html: Path) -> dict[str, Any]:
    """Self time by layer and by function and inclusive time by function of a pyinstrument
    profile, printed; its HTML report written to `html`."""
    root = profiler.last_session.root_frame(trim_stem=False)
    layer_self: dict[str, float] = defaultdict(float)
    self_time: dict[str, float] = defaultdict(float)
    inclusive: dict[str, float] = defaultdict(float)
    layer_of: dict[str, str] = {"root": "other"}

    def walk(frame: Any, name: str, layer: str, open_names: frozenset[str]) -> None:
        if not frame.is_synthetic:  # "[self]" and "[await]" count for their parent
            path = frame.file_path or ""
            if path == "<built-in>":
                name = f"{frame.function} (built-in)"
                if frame.function in ("run_until_complete", "run_forever"):
                    layer = EVENT_LOOP
            else:
                name = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
                if path and not path.startswith("<"):
                    found = [n for n, prefixes in LAYERS if any(p in path for p in prefixes)]
                    layer = found[0] if found else "other"
            layer_of.setdefault(name, layer)
        own = max(frame.time - sum(child.time for child in frame.children), 0.0)
        layer_self[layer] += own
        self_time[name] += own
        if name not in open_names:  # recursion counts once
            inclusive[name] += frame.time
        for child in frame.children:
            walk(child, name, layer, open_names | {name})

    walk(root, "root", "other", frozenset())

    def rows(times: dict[str, float], n: int, layers: Sequence[str] | None = None) -> list:
        ranked = sorted(times.items(), key=lambda kv: kv[1], reverse=True)
        ranked = [(k, v) for k, v in ranked if layers is None or layer_of[k] in layers]
        return [
            ({"function": k, "layer": layer_of[k]} if k in layer_of else {"layer": k})
            | {"seconds": round(v, 3), "percent": round(100 * v / root.time, 1)}
            for k, v in ranked[:n]
        ]

    summary = {
        "html": str(html.relative_to(ROOT)),
        "profiled_seconds": round(root.time, 3),
        "layers_self": rows(layer_self, len(layer_self)),
        "top_self": rows(self_time, 25),
        "top_inclusive": rows(inclusive, 25, SERVER_LAYERS),
    }
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    for key, title in (
        ("layers_self", "self time by layer (C calls count for their caller's layer)"),
        ("top_self", "top functions by self time"),
        ("top_inclusive", "top app and library functions by inclusive time"),
    ):
        print(f"\n{title}:")
        for row in summary[key]:
            name = row.get("function", row["layer"])
            print(f"  {row['percent']:5.1f}%  {row['seconds']:8.3f}s  {name}")
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(profiler.output_html())
    return summary


# ---- py-spy --------------------------------------------------------------------------------------


def py_spy_during(
    session: Session,
    server: Server,
    name: str,
    seconds: int,
    load: Callable[[], Any],
    subprocesses: bool = False,
) -> dict[str, Any]:
    """`load()` run again while py-spy records the server's stacks (only while it holds the
    GIL: its CPU, not its waits) for `seconds`, from one second in, into bench/results/ in
    py-spy's raw format (collapsed stacks: speedscope or flamegraph.pl read it); with the
    functions that most often ran themselves (`top_self`). `subprocesses`: the server's
    worker processes too (`serve --workers N`)."""
    py_spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if py_spy is None:
        return {"skipped": "py-spy not installed"}
    raw = RESULTS_DIR / f"{name}-pyspy-{session.started}.txt"
    raw.parent.mkdir(parents=True, exist_ok=True)
    argv = [py_spy, "record", "-p", str(server.process.pid), "-d", str(seconds), "-r", "250"]
    argv += ["-f", "raw", "--full-filenames", "--nolineno", "--gil", "-o", str(raw)]
    if subprocesses:
        argv.append("--subprocesses")
    spied: dict[str, Any] = {}

    def spy() -> None:
        time.sleep(1)  # into the run
        done = subprocess.run(argv, capture_output=True, text=True)
        spied.update(returncode=done.returncode, stderr=done.stderr[-500:])

    thread = threading.Thread(target=spy)
    thread.start()
    run = load()
    thread.join()
    if spied.get("returncode") != 0 or not raw.exists():
        return {"failed": spied, "run": run}
    return {
        "run_under_py_spy": run,
        "py_spy_seconds": seconds,
        "raw_file": str(raw),
        "top_self": top_self(raw),
    }


def print_top_self(profile: dict[str, Any]) -> None:
    """A `py_spy_during` profile's top functions, one per line."""
    for share, function in profile.get("top_self", []):
        print(f"  {share:5.1f} %  {function}")


def top_self(raw: Path, limit: int = 25) -> list[tuple[float, str]]:
    """The functions of a py-spy raw file by the share of samples they were running in."""
    counts: dict[str, int] = defaultdict(int)
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        total += int(samples)
        leaf = stack.rsplit(";", 1)[-1]
        counts[leaf.replace(str(BENCH_DIR.parent) + "/", "")] += int(samples)
    ranked = sorted(counts.items(), key=lambda item: -item[1])[:limit]
    return [(round(100 * n / total, 1), leaf) for leaf, n in ranked] if total else []
