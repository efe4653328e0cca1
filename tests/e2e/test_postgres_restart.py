"""PostgreSQL restarting under traffic: the requests it cuts off (and those sent while it is
down) are answered SERVICE_UNAVAILABLE, never a stack trace or SQL; /readyz says the database
is down meanwhile; the same server process recovers on its own once it is back; the relay
resumes; a connected screen loses no event; and the ledger still equals the balances.

The test makes a PostgreSQL cluster of its own (initdb, pg_ctl) on a free port, so it can stop
and start it without disturbing the suite's shared server. initdb refuses to run as root: as
root, the cluster's commands run as the `postgres` user (runuser)."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.e2e.server import AGENCYHUB, free_port, production_env, server_process
from tests.e2e.test_live_monitoring import USAGE, a_call, subscribe
from tests.e2e.test_redis_restart import CREATE, KEY, TRANSFER
from tests.e2e.test_server_process import SIGN_UP, post, receive, ws_connect

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not PG_BIN, reason="needs PostgreSQL's initdb and pg_ctl"),
    pytest.mark.skipif(
        os.geteuid() == 0 and shutil.which("runuser") is None, reason="root without runuser"
    ),
]
RECORD = """mutation($calls: [CallInput!]!) { recordCalls(input: {calls: $calls}) {
  accepted } }"""
UNAVAILABLE = "SERVICE_UNAVAILABLE"


class Cluster:
    """A throwaway PostgreSQL: its own data directory, port and log."""

    def __init__(self) -> None:
        self.bin = Path(PG_BIN[-1]).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="agencyhub-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        if os.geteuid() == 0:  # initdb and postgres refuse root: the cluster is postgres's
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log),
            "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        # fast: what a restart or a failover does to the sessions in flight (terminated)
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


class Traffic:
    """recordCalls, one call a request, from a few concurrent senders until stopped; each
    answer kept: accepted, or the errors' codes and the raw body."""

    def __init__(self, base: str, key: str, client: str) -> None:
        self.base, self.key, self.client = base, key, client
        self.accepted = 0
        self.failures: list[tuple[list[str], str]] = []
        self.accepted_at: list[float] = []
        self._stop = asyncio.Event()

    async def _sender(self, http: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            body = {"query": RECORD, "variables": {"calls": [a_call(self.client, 1)]}}
            try:
                response = await http.post("/graphql", json=body)
            except httpx.HTTPError:
                await asyncio.sleep(0.05)  # the server itself is never expected to go away
                continue
            answer = response.json()
            if answer.get("errors"):
                codes = [e.get("extensions", {}).get("code") for e in answer["errors"]]
                self.failures.append((codes, response.text))
                await asyncio.sleep(0.05)
            else:
                assert answer["data"]["recordCalls"]["accepted"] == 1, answer
                self.accepted += 1
                self.accepted_at.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def run(self, senders: int = 4) -> None:
        headers = {"authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(base_url=self.base, headers=headers, timeout=30) as http:
            await asyncio.gather(*(self._sender(http) for _ in range(senders)))

    def stop(self) -> None:
        self._stop.set()


async def collect(ws, into: list[dict]) -> None:
    """The screen: every usageUpdated it receives, until cancelled."""
    while True:
        message = await receive(ws, timeout=3600)
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        into.append(message["payload"]["data"]["usageUpdated"])


async def wait_until(check, timeout: float, what: str) -> float:
    """Seconds it took `check()` to be true (polled)."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_a_postgres_restart_under_traffic_is_survived_without_a_lost_event(cluster, tmp_path):
    env = production_env(cluster.url, AUTO_MIGRATE="true", LOG_FORMAT="json")
    with server_process(tmp_path, **env) as (base, process):
        token = post(base, SIGN_UP, {"email": "pg@restart.example"})["data"]["signUpAgency"][
            "token"
        ]
        viewer = post(base, "{ viewer { agency { primarySubAccount { id } } } }", token=token)
        primary = viewer["data"]["viewer"]["agency"]["primarySubAccount"]["id"]
        client = post(base, CREATE, token=token)["data"]["createSubAccount"]["subAccount"]["id"]
        post(base, TRANSFER, {"from": primary, "to": client}, token)
        key = post(base, KEY, token=token)["data"]["createApiKey"]["secret"]

        # given a screen watching the client from the start, and calls coming in
        ws = await ws_connect(base, token)
        assert (await receive(ws))["type"] == "connection_ack"
        await subscribe(ws, "u", USAGE, {"id": client, "after": "0"})
        received: list[dict] = []
        screen = asyncio.create_task(collect(ws, received))
        traffic = Traffic(base, key, client)
        sending = asyncio.create_task(traffic.run())
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            await wait_until(lambda: _true(traffic.accepted >= 20), 30, "traffic flowing")

            # when PostgreSQL stops (a restart, fast shutdown: sessions in flight are cut)
            # while requests are in flight: each sender's next call waits, inside its
            # transaction, for the client's balance rows, which another session holds
            locker = await asyncpg.connect(cluster.dsn)
            await locker.execute("BEGIN")
            await locker.execute(
                "SELECT 1 FROM balance WHERE sub_account_id = $1 FOR UPDATE", _uuid(client)
            )
            held = traffic.accepted
            await asyncio.sleep(1)
            assert traffic.accepted <= held + 4  # the senders wait (one may have been past)
            await asyncio.to_thread(cluster.stop)
            with contextlib.suppress(Exception):
                await locker.close(timeout=1)
            down_since = time.monotonic()
            failed_before = len(traffic.failures)

            async def readiness_says_down() -> bool:
                ready = await http.get("/readyz")
                return ready.status_code == 503 and ready.json()["database"] == "down"

            # then readiness says the database is down, and calls are refused clearly
            await wait_until(readiness_says_down, 10, "/readyz reporting the database down")
            await wait_until(
                lambda: _true(len(traffic.failures) >= failed_before + 5), 10, "refusals"
            )
            await asyncio.sleep(2)  # down a while: requests keep arriving meanwhile
            accepted_before = traffic.accepted

            # and when it is back, the same process serves again on its own
            await asyncio.to_thread(cluster.start)
            back = time.monotonic()

            async def serving_again() -> bool:
                return any(t > back for t in traffic.accepted_at[-5:])

            recovered_in = await wait_until(serving_again, 20, "serving after the restart")
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            accepted_after = traffic.accepted
            await wait_until(
                lambda: _true(traffic.accepted >= accepted_after + 20), 30, "traffic again"
            )
            traffic.stop()
            await sending
            scrape = (await http.get("/metrics")).text

        # every failure was SERVICE_UNAVAILABLE, without a trace of the driver or SQL: the
        # requests cut in flight and those that came while the database was down
        assert len(traffic.failures) >= 4 + 5
        for codes, text in traffic.failures:
            assert codes == [UNAVAILABLE], text
            for leak in ("asyncpg", "Traceback", "SELECT", "INSERT", "sqlalchemy", "postgres"):
                assert leak not in text, text
        assert process.poll() is None  # recovered without a restart of the server
        print(
            f"accepted {traffic.accepted}, refused {len(traffic.failures)} "
            f"(down {back - down_since:.1f} s, {accepted_before} accepted before), "
            f"recovered {recovered_in:.2f} s after PostgreSQL was back"
        )

        # the relay resumed: every event committed is published, and the screen got each
        # one, once, in order: 0 lost
        async with asyncio.timeout(30):
            while True:
                conn = await asyncpg.connect(cluster.dsn)
                try:
                    waiting = await conn.fetchval(
                        "SELECT count(*) FROM outbox WHERE published_at IS NULL"
                    )
                    calls = await conn.fetchval("SELECT count(*) FROM call")
                finally:
                    await conn.close()
                if waiting == 0 and len(received) >= calls + 1:
                    break
                await asyncio.sleep(0.2)
        screen.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await screen
        await ws.close()
        sequences = [int(e["sequence"]) for e in received]
        assert sequences == sorted(set(sequences)), "duplicates or disorder on the screen"
        # the transfer's event, then one per call recorded (calls whose commit the restart
        # cut may have committed: the outbox and the call table say what really happened)
        assert calls >= traffic.accepted
        assert len(received) == calls + 1
        assert {b["tier"]: b["seconds"] for b in received[-1]["balances"]}["PREMIUM"] == max(
            0, 600 - calls
        )

        # and the server counted the refusals and the screen's socket
        refused = _sample(scrape, 'agencyhub_graphql_errors_total{code="SERVICE_UNAVAILABLE"}')
        assert refused >= len(traffic.failures)
        assert _sample(scrape, "agencyhub_websockets_open") >= 1

    # and the ledger equals the balances
    check = await asyncio.to_thread(
        subprocess.run,
        [AGENCYHUB, "check-ledger"],
        env={**os.environ, "DATABASE_URL": cluster.url, "SECRET_KEY": "e2e"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0 and "ledger: balanced" in check.stdout, check.stdout


def _uuid(global_id: str) -> uuid.UUID:
    from resolvers.global_id import from_global_id

    decoded = from_global_id(global_id)
    assert decoded is not None
    return decoded[1]


async def _true(value: bool) -> bool:
    return value


def _sample(scrape: str, name: str) -> float:
    for line in scrape.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")
