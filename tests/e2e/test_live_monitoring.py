"""Live monitoring across two server processes sharing PostgreSQL and Redis, spoken to over
real WebSockets with the graphql-transport-ws protocol."""

import http.client
import json
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import empty_all_tables
from tests.e2e.server import (
    AGENCYHUB,
    children,
    production_env,
    running_server,
    server_process,
    serving_process,
)
from tests.e2e.test_server_process import SIGN_UP, post, receive, ws_connect

pytestmark = pytest.mark.e2e

CREATE = """mutation($email: String!) { createSubAccount(input: {name: "Live client",
  loginEmail: $email, markupPercent: "25"}) { subAccount { id } } }"""
TRANSFER = """mutation($from: ID!, $to: ID!) { transferMinutes(input: {fromId: $from, toId: $to,
  tier: PREMIUM, minutes: "10"}) { transfer { receivedSeconds } } }"""
KEY = 'mutation { createApiKey(input: {name: "platform"}) { secret } }'
RECORD = """mutation($calls: [CallInput!]!) { recordCalls(input: {calls: $calls}) { accepted } }"""
SUSPEND = """mutation($id: ID!, $note: String) { suspendSubAccount(input: {id: $id,
  note: $note}) { userErrors { code } } }"""
USAGE = """subscription($id: ID, $after: String) { usageUpdated(subAccountId: $id,
  afterSequence: $after) { sequence subAccount { id } balances { tier seconds }
  walletBalance { amount } spentThisPeriod { amount } } }"""
BANNER = """subscription($id: ID!, $after: String) { bannerChanged(subAccountId: $id,
  afterSequence: $after) { sequence subAccountId banner { active note } } }"""


def a_call(sub_account_id, seconds=60):
    return {
        "externalId": uuid.uuid4().hex,
        "subAccountId": sub_account_id,
        "direction": "OUTBOUND",
        "channel": "PHONE",
        "status": "COMPLETED",
        "tier": "PREMIUM",
        "startedAt": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "durationSeconds": seconds,
    }


async def subscribe(ws, operation_id, query, variables):
    await ws.send(
        json.dumps(
            {
                "id": operation_id,
                "type": "subscribe",
                "payload": {"query": query, "variables": variables},
            }
        )
    )


async def next_data(ws, field, timeout=10):
    message = await receive(ws, timeout)
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    return message["payload"]["data"][field]


@pytest.fixture
async def two_servers(tmp_path, databases):
    await empty_all_tables(databases["postgresql"])
    env = production_env(databases["postgresql"])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_server(tmp_path / "a", **env) as a, running_server(tmp_path / "b", **env) as b:
        yield a, b, *an_agency_with_a_client(a)


def an_agency_with_a_client(base):
    """(owner's token, a client's id, an ingestion API key) of a new agency; the client holds
    480 PREMIUM seconds at 25 % markup, moved there from the primary by one transfer."""
    name = uuid.uuid4().hex[:12]
    token = post(base, SIGN_UP, {"email": f"{name}@e2e.example"})["data"]["signUpAgency"]["token"]
    viewer = post(base, "{ viewer { agency { primarySubAccount { id } } } }", token=token)
    primary = viewer["data"]["viewer"]["agency"]["primarySubAccount"]["id"]
    created = post(base, CREATE, {"email": f"{name}@client.example"}, token)
    client = created["data"]["createSubAccount"]["subAccount"]["id"]
    post(base, TRANSFER, {"from": primary, "to": client}, token)
    key = post(base, KEY, token=token)["data"]["createApiKey"]["secret"]
    return token, client, key


async def watch_usage(ws, client):
    """Subscribe from the first event on (afterSequence 0) and wait for the set-up's transfer:
    once the server has shown it, the stream is live and misses nothing committed later."""
    await subscribe(ws, "u", USAGE, {"id": client, "after": "0"})
    replayed = await next_data(ws, "usageUpdated")
    assert {b["tier"]: b["seconds"] for b in replayed["balances"]}["PREMIUM"] == 480
    return replayed


async def test_a_call_recorded_on_one_process_reaches_a_subscriber_on_the_other(two_servers):
    a, b, token, client, key = two_servers
    ws = await ws_connect(b, token)
    try:
        assert (await receive(ws))["type"] == "connection_ack"
        await watch_usage(ws, client)
        assert (
            post(a, RECORD, {"calls": [a_call(client, 60)]}, key)["data"]["recordCalls"]["accepted"]
            == 1
        )
        event = await next_data(ws, "usageUpdated")
    finally:
        await ws.close()
    assert event["subAccount"]["id"] == client
    assert {b["tier"]: b["seconds"] for b in event["balances"]}["PREMIUM"] == 480 - 60
    assert event["walletBalance"] == {"amount": "2.625000"}  # 420 s at $0.375/min
    assert event["spentThisPeriod"] == {"amount": "0.375000"}


async def test_suspending_pushes_the_banner_to_the_other_process(two_servers):
    a, b, token, client, _ = two_servers
    # given a first suspension, and a screen on B that has been shown its banner
    post(a, SUSPEND, {"id": client, "note": "First notice"}, token)
    ws = await ws_connect(b, token)
    try:
        assert (await receive(ws))["type"] == "connection_ack"
        await subscribe(ws, "b", BANNER, {"id": client, "after": "0"})
        first = await next_data(ws, "bannerChanged")
        assert first["banner"] == {"active": True, "note": "First notice"}
        # when A suspends it again with a new note
        post(a, SUSPEND, {"id": client, "note": "Overdue"}, token)
        event = await next_data(ws, "bannerChanged")
    finally:
        await ws.close()
    # then B's screen shows the new banner
    assert event["subAccountId"] == client
    assert event["banner"] == {"active": True, "note": "Overdue"}
    assert int(event["sequence"]) > int(first["sequence"])


async def test_resuming_after_a_sequence_loses_nothing(two_servers):
    a, b, token, client, key = two_servers
    ws = await ws_connect(b, token)
    try:
        assert (await receive(ws))["type"] == "connection_ack"
        await watch_usage(ws, client)
        post(a, RECORD, {"calls": [a_call(client, 10)]}, key)
        seen = await next_data(ws, "usageUpdated")
    finally:
        await ws.close()
    # while disconnected, two more calls happen (their events may still be on their way)
    for _ in range(2):
        post(a, RECORD, {"calls": [a_call(client, 10)]}, key)
    ws = await ws_connect(a, token)
    try:
        assert (await receive(ws))["type"] == "connection_ack"
        await subscribe(ws, "r", USAGE, {"id": client, "after": seen["sequence"]})
        missed = [await next_data(ws, "usageUpdated") for _ in range(2)]
    finally:
        await ws.close()
    sequences = [int(seen["sequence"])] + [int(m["sequence"]) for m in missed]
    assert sequences == sorted(set(sequences))
    premium = [{b["tier"]: b["seconds"] for b in m["balances"]}["PREMIUM"] for m in missed]
    assert premium == [480 - 20, 480 - 30]


async def test_serve_with_two_workers_shares_events_between_them(tmp_path, databases):
    """`WORKERS=2 agencyhub serve`: two worker processes accept connections, and a call
    recorded through one of them reaches a screen that the other one serves."""
    await empty_all_tables(databases["postgresql"])
    env = production_env(databases["postgresql"], WORKERS="2")
    with server_process(tmp_path, **env) as (url, server):
        port = int(url.rsplit(":", 1)[1])
        workers = children(server.pid)
        token, client, key = an_agency_with_a_client(url)
        # given a screen on each of two worker processes (the OS tells which holds a socket;
        # the second worker may still be starting when the first answers /healthz)
        screens = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ws = await ws_connect(url, token)
            assert (await receive(ws))["type"] == "connection_ack"
            pid = serving_process(workers, port, ws.local_address[1])
            if pid in screens:
                await ws.close()
                continue
            screens[pid] = ws
            if len(screens) == 2:
                break
        try:
            assert len(screens) == 2, "every connection went to one process"
            for n, ws in enumerate(screens.values()):
                await subscribe(ws, f"u{n}", USAGE, {"id": client, "after": "0"})
                # the set-up's transfer, replayed: the stream is live from here on
                assert premium(await next_data(ws, "usageUpdated")) == 480
            # when a call is recorded through a connection that the first worker serves
            first = next(iter(screens))
            answer = post_through(url, workers, first, RECORD, {"calls": [a_call(client, 6)]}, key)
            assert answer["data"]["recordCalls"]["accepted"] == 1
            # then both screens show it: the other worker's through Redis
            for ws in screens.values():
                assert premium(await next_data(ws, "usageUpdated")) == 480 - 6
        finally:
            for ws in screens.values():
                await ws.close()


def premium(event):
    return {b["tier"]: b["seconds"] for b in event["balances"]}["PREMIUM"]


def post_through(base, workers, pid, query, variables, token):
    """POST `query` on a connection that worker `pid` accepted (new connections until one
    lands there; each is asked /healthz first, so the worker has accepted it)."""
    host, port = base.removeprefix("http://").split(":")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            if serving_process(workers, int(port), connection.sock.getsockname()[1]) != pid:
                continue
            body = json.dumps({"query": query, "variables": variables})
            headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
            connection.request("POST", "/graphql", body, headers)
            response = connection.getresponse()
            assert response.status == 200
            return json.loads(response.read())
        finally:
            connection.close()
    raise AssertionError(f"no connection landed on worker {pid}")


def test_several_workers_need_postgresql_and_redis(tmp_path):
    result = subprocess.run(
        [AGENCYHUB, "serve", "--workers", "2"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "REDIS_URL" in result.stderr
