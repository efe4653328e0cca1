"""Redis going away in the middle loses nothing: mutations still commit, events wait in the
outbox, /readyz says the broker is down, and a subscriber gets every event once Redis is back
live, on the same socket."""

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


async def test_a_redis_restart_loses_no_event_for_a_connected_screen(tmp_path, databases):
    await empty_all_tables(databases["postgresql"])
    port = free_port()
    redis = start_redis(port, tmp_path)
    # the default outbox poll interval: delivery after the restart must not rely on a fast poll
    env = dict(
        DATABASE_URL=databases["postgresql"],
        REDIS_URL=f"redis://127.0.0.1:{port}/0",
        SECRET_KEY="e2e",
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
            # given a screen on process B watching the client, one event already received
            ws = await ws_connect(b, token)
            assert (await receive(ws))["type"] == "connection_ack"
            await subscribe(ws, "u", USAGE, {"id": client, "after": "0"})
            replayed = await next_data(ws, "usageUpdated")  # the transfer: live from here on
            assert {x["tier"]: x["seconds"] for x in replayed["balances"]}["PREMIUM"] == 600
            post(a, RECORD, {"calls": [a_call(client, 10)]}, key)
            before = await next_data(ws, "usageUpdated")

            # when Redis goes away, calls keep committing through A (readiness says so)
            redis.terminate()
            redis.wait(timeout=10)
            during = [20, 30, 40]
            for seconds in during:
                accepted = post(a, RECORD, {"calls": [a_call(client, seconds)]}, key)
                assert accepted["data"]["recordCalls"]["accepted"] == 1
            ready = httpx.get(f"{a}/readyz", timeout=10)
            assert ready.status_code == 503 and ready.json()["broker"] == "down"

            # and Redis comes back
            redis = start_redis(port, tmp_path)
            post(a, RECORD, {"calls": [a_call(client, 50)]}, key)

            # then the same socket receives every event, in order, each once, each showing
            # the balance right after its own call
            received = [await next_data(ws, "usageUpdated", timeout=15) for _ in range(4)]
            await ws.close()
            sequences = [int(before["sequence"])] + [int(e["sequence"]) for e in received]
            assert sequences == sorted(set(sequences))
            remaining = 600 - 10
            for event, seconds in zip(received, [*during, 50], strict=True):
                remaining -= seconds
                balances = {x["tier"]: x["seconds"] for x in event["balances"]}
                assert balances["PREMIUM"] == remaining
    finally:
        redis.terminate()
        redis.wait(timeout=10)
