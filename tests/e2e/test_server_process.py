"""A real uvicorn process, spoken to the way browsers and the `graphql-ws` client do."""

import asyncio
import json
import time

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import empty_all_tables
from tests.e2e.server import production_env, running_server
from tests.factories import PASSWORD
from tests.mailbox import latest_token_for

pytestmark = pytest.mark.e2e

SIGN_UP = """mutation($email: String!) { signUpAgency(input: {agencyName: "Live Co",
  ownerEmail: $email, password: "correct-horse-battery"}) { token userErrors { code } } }"""
LOGIN = """mutation($email: String!, $password: String!) {
  login(input: {email: $email, password: $password}) { token userErrors { code } } }"""
VIEWER = "{ viewer { user { email role } agency { name primarySubAccount { kind } } } }"
AUDIT = "subscription { auditEvents { sequence kind email occurredAt } }"
PROBE = 'mutation { createApiKey(input: {name: "probe"}) { userErrors { code } } }'


def post(base, query, variables=None, token=None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"{base}/graphql",
        json={"query": query, "variables": variables or {}},
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


async def ws_connect(base, token=None, protocol="graphql-transport-ws"):
    ws = await websockets.connect(
        base.replace("http", "ws") + "/graphql", subprotocols=[protocol], open_timeout=5
    )
    payload = {"authorization": f"Bearer {token}"} if token else {}
    await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
    return ws


async def receive(ws, timeout=10):
    """The next message other than the server's keep-alive pings (answered as clients do)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.recv()
            assert isinstance(frame, str), "graphql-transport-ws messages are text frames"
            message = json.loads(frame)
            if message["type"] != "ping":
                return message
            await ws.send(json.dumps({"type": "pong"}))


async def watch_audit(base, ws, owner_token):
    """Subscribe to the audit feed and return once it is live. The feed takes no
    afterSequence, and the server says nothing when it has taken a subscription in: events
    committed before that are not the stream's. So the owner makes probe events (API keys)
    until one shows; every event committed after it reaches the stream. Late probes are
    skipped by `next_audit`."""
    await ws.send(json.dumps({"id": "audit", "type": "subscribe", "payload": {"query": AUDIT}}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert post(base, PROBE, token=owner_token)["data"]["createApiKey"]["userErrors"] == []
        try:
            while True:  # events sequenced just before the probe may come first: skip them
                message = await receive(ws, timeout=1)
                assert message["type"] == "next", message
                if message["payload"]["data"]["auditEvents"]["kind"] == "API_KEY_CREATED":
                    return
        except TimeoutError:
            continue  # that probe was committed before the subscription: another one
    raise TimeoutError("the audit feed showed no probe in 30 s")


async def next_audit(ws):
    """The next audit event that is not a probe."""
    while True:
        message = await receive(ws)
        assert message["type"] == "next", message
        event = message["payload"]["data"]["auditEvents"]
        if event["kind"] != "API_KEY_CREATED":
            return event


@pytest.fixture
async def postgres_server(tmp_path, databases):
    """The production shape: PostgreSQL + Redis. (The embedded default is tested below.)"""
    await empty_all_tables(databases["postgresql"])
    with running_server(tmp_path, **production_env(databases["postgresql"])) as base:
        yield base


async def test_sign_up_log_in_and_see_own_sign_in_live_over_websocket(postgres_server):
    base = postgres_server
    # given an agency whose owner watches the audit feed over WebSocket
    token = post(base, SIGN_UP, {"email": "live@e2e.example"})["data"]["signUpAgency"]["token"]
    viewer = post(base, VIEWER, token=token)["data"]["viewer"]
    assert viewer == {
        "user": {"email": "live@e2e.example", "role": "AGENCY_OWNER"},
        "agency": {"name": "Live Co", "primarySubAccount": {"kind": "PRIMARY"}},
    }
    ws = await ws_connect(base, token)
    try:
        assert (await receive(ws))["type"] == "connection_ack"
        await watch_audit(base, ws, token)
        # when someone signs in with a wrong password, then correctly
        wrong = post(base, LOGIN, {"email": "live@e2e.example", "password": "wrong-password!"})
        assert wrong["data"]["login"]["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]
        right = post(base, LOGIN, {"email": "live@e2e.example", "password": PASSWORD})
        assert right["data"]["login"]["token"]
        # then both events arrive, through outbox → relay → Redis → socket, in order
        events = [await next_audit(ws), await next_audit(ws)]
    finally:
        await ws.close()
    assert [e["kind"] for e in events] == ["SIGN_IN_FAILED", "USER_SIGNED_IN"]
    assert int(events[0]["sequence"]) < int(events[1]["sequence"])


async def test_subscriptions_need_a_signed_in_owner_or_admin(postgres_server):
    ws = await ws_connect(postgres_server)  # no token: anonymous socket
    try:
        assert (await receive(ws))["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "a", "type": "subscribe", "payload": {"query": AUDIT}}))
        message = await receive(ws)
    finally:
        await ws.close()
    assert message["type"] == "next", message
    assert message["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", message


async def test_a_forged_token_is_refused_at_connection_init(postgres_server):
    ws = await ws_connect(postgres_server, token="ahs_forged")
    with pytest.raises(ConnectionClosed) as closed:
        await receive(ws)
    assert closed.value.rcvd.code == 4403


async def test_only_the_graphql_transport_ws_protocol_is_spoken(postgres_server):
    with pytest.raises((InvalidStatus, ConnectionClosed)):
        ws = await ws_connect(postgres_server, protocol="graphql-ws")
        await receive(ws)


async def test_a_socket_that_never_says_connection_init_is_closed(tmp_path, databases):
    with running_server(
        tmp_path,
        DATABASE_URL=databases["postgresql"],
        SECRET_KEY="e2e",
        WS_CONNECTION_INIT_TIMEOUT_SECONDS="0.5",
    ) as base:
        ws = await websockets.connect(
            base.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"]
        )
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 4408


def test_embedded_default_serves_with_no_database_or_redis_configured(tmp_path):
    # the `make run` path: nothing configured, migrations applied at start
    with running_server(tmp_path, MAIL_DIR=str(tmp_path / "mail")) as base:
        token = post(base, SIGN_UP, {"email": "solo@e2e.example"})["data"]["signUpAgency"]["token"]
        assert post(base, VIEWER, token=token)["data"]["viewer"]["user"]["role"] == "AGENCY_OWNER"
        ready = httpx.get(f"{base}/readyz").json()
        ide = httpx.get(f"{base}/graphql", headers={"accept": "text/html"})
    assert ready == {"status": "ready", "database": "ok", "broker": "ok"}
    assert "graphiql" in ide.text.lower()
    assert (tmp_path / "data" / "agencyhub.sqlite3").exists()
    assert (tmp_path / "data" / "secret_key").stat().st_mode & 0o077 == 0


async def test_the_101st_subscription_on_one_socket_is_refused(postgres_server):
    token = post(postgres_server, SIGN_UP, {"email": "cap@e2e.example"})["data"]["signUpAgency"][
        "token"
    ]
    ws = await ws_connect(postgres_server, token)
    try:
        assert (await receive(ws))["type"] == "connection_ack"
        for n in range(101):
            await ws.send(
                json.dumps({"id": str(n), "type": "subscribe", "payload": {"query": AUDIT}})
            )
        # The sign-up's own audit event may still be on its way through the relay (sequences
        # are given at publish time), so a stream may show it: skip `next` messages.
        message = await receive(ws)
        while message["type"] == "next":
            message = await receive(ws)
    finally:
        await ws.close()
    assert message == {
        "id": "100",
        "type": "error",
        "payload": [{"message": "Subscription limit reached"}],
    }


INVITE = """mutation($email: String!, $role: Role!) { inviteUser(input: {email: $email,
  role: $role}) { userErrors { code } } }"""
ACCEPT = """mutation($token: String!) { acceptInvitation(input: {token: $token,
  password: "a-brand-new-secret"}) { token user { id } userErrors { code } } }"""
REMOVE = "mutation($id: ID!) { removeUser(input: {userId: $id}) { userErrors { code } } }"
CHANGE = """mutation($id: ID!) { changeUserRole(input: {userId: $id, role: AGENCY_MEMBER}) {
  userErrors { code } } }"""


async def _watching_admin(base, mail_dir, owner_token, email):
    """An admin, invited by mail and signed in, watching the audit feed over WebSocket."""
    assert (
        post(base, INVITE, {"email": email, "role": "AGENCY_ADMIN"}, owner_token)["data"][
            "inviteUser"
        ]["userErrors"]
        == []
    )
    accepted = post(base, ACCEPT, {"token": latest_token_for(mail_dir, email)})["data"][
        "acceptInvitation"
    ]
    ws = await ws_connect(base, accepted["token"])
    assert (await receive(ws))["type"] == "connection_ack"
    await watch_audit(base, ws, owner_token)
    return ws, accepted["user"]["id"]


async def _until_error(ws):
    while True:
        message = await receive(ws)
        errors = message.get("payload", {}).get("errors") if message["type"] == "next" else None
        if message["type"] == "error":
            errors = message["payload"]
        if errors:
            return errors[0]["extensions"]["code"]


@pytest.mark.parametrize(("change", "code"), [(REMOVE, "UNAUTHENTICATED"), (CHANGE, "FORBIDDEN")])
async def test_an_open_subscription_ends_when_its_users_access_goes(
    tmp_path, databases, change, code
):
    await empty_all_tables(databases["postgresql"])
    mail_dir = tmp_path / "mail"
    with running_server(
        tmp_path, **production_env(databases["postgresql"], MAIL_DIR=str(mail_dir))
    ) as base:
        owner = post(base, SIGN_UP, {"email": "boss@e2e.example"})["data"]["signUpAgency"]["token"]
        ws, admin_id = await _watching_admin(base, mail_dir, owner, "watcher@e2e.example")
        try:
            # when the owner removes the admin, or makes them a member
            assert post(base, change, {"id": admin_id}, owner)["data"]
            # then the admin's open subscription is ended with the matching code
            assert await _until_error(ws) == code
        finally:
            await ws.close()
