"""Redis going away in the middle loses nothing: mutations still commit, events wait in the
outbox, /readyz says the broker is down, and a subscriber gets every event once Redis is back
(live, or by resuming with afterSequence)."""

import asyncio
import shutil
import subprocess
import time

import httpx
import pytest

from tests.conftest import empty_all_tables
from tests.e2e.server import free_port, running_server
from tests.e2e.test_live_monitoring import RECORD, USAGE, a_call, next_data, subscribe
from tests.e2e.test_server_process import SIGN_UP, post, receive, ws_connect

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]

CREATE = """mutation { createSubAccount(input: {name: "C", loginEmail: "c@restart.example"}) {
  subAccount { id } } }"""
TRANSFER = """mutation($from: ID!, $to: ID!) { transferMinutes(input: {fromId: $from, toId: $to,
  tier: PREMIUM, minutes: "10"}) { transfer { receivedSeconds } } }"""
KEY = 'mutation { createApiKey(input: {name: "platform"}) { secret } }'


def start_redis(port: int, workdir) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ping = subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True
        )
        if "PONG" in ping.stdout:
            return process
        time.sleep(0.1)
    raise TimeoutError("redis did not start")


async def test_a_redis_restart_loses_no_event(tmp_path, databases):
    await empty_all_tables(databases["postgresql"])
    port = free_port()
    redis = start_redis(port, tmp_path)
    env = dict(
        DATABASE_URL=databases["postgresql"],
        REDIS_URL=f"redis://127.0.0.1:{port}/0",
        SECRET_KEY="e2e",
        OUTBOX_POLL_SECONDS="0.1",
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        with running_server(tmp_path / "a", **env) as a, running_server(tmp_path / "b", **env) as b:
            token = post(a, SIGN_UP, {"email": "r@e2e.example"})["data"]["signUpAgency"]["token"]
            viewer = post(a, "{ viewer { agency { primarySubAccount { id } } } }", token=token)
            primary = viewer["data"]["viewer"]["agency"]["primarySubAccount"]["id"]
            client = post(a, CREATE, token=token)["data"]["createSubAccount"]["subAccount"]["id"]
            post(a, TRANSFER, {"from": primary, "to": client}, token)
            key = post(a, KEY, token=token)["data"]["createApiKey"]["secret"]
            ws = await ws_connect(b, token)
            assert (await receive(ws))["type"] == "connection_ack"
            await subscribe(ws, "u", USAGE, {"id": client})
            await asyncio.sleep(0.5)
            post(a, RECORD, {"calls": [a_call(client, 10)]}, key)
            before = await next_data(ws, "usageUpdated")

            # Redis goes away: the call still commits, readiness says so
            redis.terminate()
            redis.wait(timeout=10)
            accepted = post(a, RECORD, {"calls": [a_call(client, 20)]}, key)
            assert accepted["data"]["recordCalls"]["accepted"] == 1
            ready = httpx.get(f"{a}/readyz", timeout=10)
            assert ready.status_code == 503 and ready.json()["broker"] == "down"

            # Redis comes back: the event is delivered live, or on resume — never lost
            redis = start_redis(port, tmp_path)
            try:
                after = await asyncio.wait_for(next_data(ws, "usageUpdated"), 10)
            except (TimeoutError, Exception):
                await ws.close()
                ws = await ws_connect(b, token)
                assert (await receive(ws))["type"] == "connection_ack"
                await subscribe(ws, "r", USAGE, {"id": client, "after": before["sequence"]})
                after = await next_data(ws, "usageUpdated")
            await ws.close()
            assert int(after["sequence"]) > int(before["sequence"])
            balances = {x["tier"]: x["seconds"] for x in after["balances"]}
            assert balances["PREMIUM"] == 600 - 10 - 20  # both calls billed, once
    finally:
        redis.terminate()
        redis.wait(timeout=10)
