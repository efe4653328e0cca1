"""The clients our users run, unmodified, against a real server on PostgreSQL and Redis:
`graphql-ws`'s createClient and Apollo Client's GraphQLWsLink (node, tests/clients), and
Python's `gql` over WebSocket. Each test signs up its own agency on the module's server, and
each client meets the server's keep-alive pings while it watches."""

import asyncio
import contextlib
import hashlib
import json
import uuid
from pathlib import Path

import httpx
import pytest
import uvicorn
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import empty_all_tables
from tests.e2e.server import free_port, production_env, running_server
from tests.e2e.test_live_monitoring import RECORD, USAGE, a_call, an_agency_with_a_client
from tests.e2e.test_server_process import post

pytestmark = pytest.mark.e2e

CLIENTS = Path(__file__).parents[1] / "clients"
VIEWER = "{ viewer { user { role } agency { primarySubAccount { kind } } } }"


@pytest.fixture(scope="module")
async def server(tmp_path_factory, databases):
    """Keep-alive pings every 0.2 s, so each client meets them while it watches."""
    await empty_all_tables(databases["postgresql"])
    env = production_env(databases["postgresql"], WS_KEEPALIVE_SECONDS="0.2")
    with running_server(tmp_path_factory.mktemp("clients"), **env) as base:
        yield base


def premium_seconds(event):
    return {b["tier"]: b["seconds"] for b in event["balances"]}["PREMIUM"]


class Watching:
    """What the node client printed: its results in order, and whether the server pinged it."""

    def __init__(self, node):
        self.node = node
        self.events = []
        self.pinged = False

    async def until(self, condition):
        async with asyncio.timeout(15):
            while not condition(self):
                line = await self.node.stdout.readline()
                assert line, "the client ended: " + (await self.node.stderr.read()).decode()
                message = json.loads(line)
                if message.get("ping"):
                    self.pinged = True
                    continue
                assert "errors" not in message, message
                self.events.append(message["data"]["usageUpdated"])


@pytest.mark.parametrize("via", ["graphql-ws", "apollo"])
async def test_a_js_client_sees_each_recorded_call_live(server, via):
    token, client, key = an_agency_with_a_client(server)
    # given a node process subscribed to the client's usage from the first event on
    node = await asyncio.create_subprocess_exec(
        "node",
        "subscribe.mjs",
        via,
        server.replace("http", "ws") + "/graphql",
        token,
        client,
        "3",
        cwd=CLIENTS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    watching = Watching(node)
    try:
        # the transfer, replayed, shows the subscription is live; then a keep-alive ping comes
        await watching.until(lambda w: w.events and w.pinged)
        # when the platform records a 60 s call, then a 30 s one
        post(server, RECORD, {"calls": [a_call(client, 60)]}, key)
        await watching.until(lambda w: len(w.events) == 2)
        post(server, RECORD, {"calls": [a_call(client, 30)]}, key)
        await watching.until(lambda w: len(w.events) == 3)
        assert await asyncio.wait_for(node.wait(), 10) == 0
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
    # then each event shows the balance after its call, in sequence order
    events = watching.events
    assert [e["subAccount"]["id"] for e in events] == [client] * 3
    assert [premium_seconds(e) for e in events] == [480, 420, 390]
    assert int(events[0]["sequence"]) < int(events[1]["sequence"]) < int(events[2]["sequence"])


def gql_over_websocket(base, token):
    transport = WebsocketsTransport(
        url=base.replace("http", "ws") + "/graphql",
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"authorization": f"Bearer {token}"},
    )
    return Client(transport=transport), transport


async def test_python_gql_queries_over_websocket(server):
    token, _, _ = an_agency_with_a_client(server)
    client, _ = gql_over_websocket(server, token)
    async with client as session:
        data = await session.execute(GraphQLRequest(VIEWER))
    assert data == {
        "viewer": {
            "user": {"role": "AGENCY_OWNER"},
            "agency": {"primarySubAccount": {"kind": "PRIMARY"}},
        }
    }


async def test_python_gql_sees_each_recorded_call_live(server):
    token, client, key = an_agency_with_a_client(server)
    watch = GraphQLRequest(USAGE, variable_values={"id": client, "after": "0"})
    gql_client, transport = gql_over_websocket(server, token)
    async with gql_client as session:
        events = session.subscribe(watch)
        async with asyncio.timeout(15):
            before = (await anext(events))["usageUpdated"]  # the transfer, replayed: live
            await transport.ping_received.wait()  # answered by gql itself
            post(server, RECORD, {"calls": [a_call(client, 60)]}, key)
            first = (await anext(events))["usageUpdated"]
            post(server, RECORD, {"calls": [a_call(client, 30)]}, key)
            second = (await anext(events))["usageUpdated"]
        await events.aclose()
    assert [premium_seconds(e) for e in (before, first, second)] == [480, 420, 390]
    assert int(before["sequence"]) < int(first["sequence"]) < int(second["sequence"])
    assert second["walletBalance"] == {"amount": "2.437500"}  # 390 s at $0.375/min


@contextlib.asynccontextmanager
async def recording_proxy(upstream):
    """A reverse proxy in front of `upstream` that notes each request it passes on: (method,
    query parameters, JSON body or None), so a test sees what a client really sent."""
    seen = []

    async def forward(request):
        body = await request.body()
        seen.append((request.method, dict(request.query_params), json.loads(body or "null")))
        headers = {k: v for k, v in request.headers.items() if k in FORWARDED}
        async with httpx.AsyncClient() as client:
            answer = await client.request(
                request.method,
                upstream + "/graphql",
                params=request.query_params,
                content=body,
                headers=headers,
            )
        media_type = answer.headers.get("content-type")
        return Response(answer.content, answer.status_code, media_type=media_type)

    port = free_port()
    app = Starlette(routes=[Route("/graphql", forward, methods=["GET", "POST"])])
    proxy = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(proxy.serve())
    try:
        async with asyncio.timeout(10):
            while not proxy.started:
                assert not task.done(), "the proxy stopped while starting"
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}/graphql", seen
    finally:
        proxy.should_exit = True
        await task


FORWARDED = ("authorization", "content-type", "accept")


async def test_apollo_persisted_queries_send_the_text_once(server):
    token, _, _ = an_agency_with_a_client(server)
    async with recording_proxy(server) as (url, seen):
        node = await asyncio.create_subprocess_exec(
            "node",
            "persisted.mjs",
            url,
            token,
            f"Viewer{uuid.uuid4().hex}",  # a text, and a hash, new to the server's store
            cwd=CLIENTS,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(node.communicate(), 30)
    assert node.returncode == 0, err.decode()
    expected = {  # Apollo's cache adds __typename to each selection
        "viewer": {
            "__typename": "Viewer",
            "user": {"__typename": "User", "role": "AGENCY_OWNER"},
            "agency": {
                "__typename": "Agency",
                "primarySubAccount": {"__typename": "SubAccount", "kind": "PRIMARY"},
            },
        }
    }
    assert [json.loads(line) for line in out.decode().splitlines()] == [expected, expected]
    # the first time: the hash over GET (unknown), then the text with it over POST
    (first_get, params, _), (post_method, _, body), *rest = seen
    assert first_get == "GET" and "query" not in params
    sha256 = json.loads(params["extensions"])["persistedQuery"]["sha256Hash"]
    assert post_method == "POST" and body["extensions"]["persistedQuery"]["sha256Hash"] == sha256
    assert hashlib.sha256(body["query"].encode()).hexdigest() == sha256
    # the second time: the hash alone, over GET, answered without the text
    [(second_get, params, second_body)] = rest
    assert second_get == "GET" and "query" not in params and second_body is None
    assert json.loads(params["extensions"])["persistedQuery"]["sha256Hash"] == sha256
