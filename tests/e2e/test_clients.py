"""The clients our users run, unmodified, against a real server on PostgreSQL and Redis:
`graphql-ws`'s createClient and Apollo Client's GraphQLWsLink (node, tests/clients), and
Python's `gql` over WebSocket. Each test signs up its own agency on the module's server, and
each client meets the server's keep-alive pings while it watches."""

import asyncio
import json
from pathlib import Path

import pytest
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

from tests.conftest import empty_all_tables
from tests.e2e.server import production_env, running_server
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
