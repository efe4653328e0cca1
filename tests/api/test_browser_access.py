"""Browser front ends on other origins (CORS_ALLOWED_ORIGINS) and WebSocket keep-alive, in
process: HTTP through the ASGI transport; WebSocket through uvicorn serving the app on a local
port with the server's own WebSocket protocol (handshakes and frames are real)."""

import asyncio
import contextlib
import json
import socket

import pytest
import uvicorn
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode

from agencyhub.app import create_app
from agencyhub.cli import websocket_options
from agencyhub.websocket import _DeflatePerMessage
from tests.conftest import make_settings

APP = "https://app.example"
LISTED = "https://App.example:443,http://127.0.0.1:3000"  # normalised as browsers send them
OTHER = "https://evil.example"
PREFLIGHT = {"access-control-request-method": "POST"}
WITH_TOKEN = {**PREFLIGHT, "access-control-request-headers": "authorization,content-type"}


@pytest.fixture
def settings(tmp_path, databases):
    """The CORS rules do not depend on the database: SQLite only."""
    return make_settings(tmp_path, databases["sqlite"], cors_allowed_origins=LISTED)


@pytest.mark.parametrize("origin", [APP, "http://127.0.0.1:3000"])
async def test_a_preflight_from_a_listed_origin_allows_the_token_header(app_client, origin):
    response = await app_client.options("/graphql", headers={"origin": origin, **WITH_TOKEN})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-max-age"] == "600"


async def test_a_preflight_from_another_origin_is_refused(app_client):
    response = await app_client.options("/graphql", headers={"origin": OTHER, **WITH_TOKEN})
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_a_preflight_asking_for_another_header_is_refused(app_client):
    headers = {"origin": APP, **PREFLIGHT, "access-control-request-headers": "x-api-key"}
    response = await app_client.options("/graphql", headers=headers)
    assert response.status_code == 400


@pytest.mark.parametrize(("origin", "readable"), [(APP, True), (OTHER, False)])
async def test_only_listed_origins_may_read_answers(app_client, origin, readable):
    response = await app_client.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"origin": origin}
    )
    assert response.json() == {"data": {"__typename": "Query"}}  # browsers enforce, not us
    assert ("access-control-allow-origin" in response.headers) is readable


@pytest.mark.parametrize(
    "origins", ["*", "https://app.example,*", "https://app.example/admin", "app.example"]
)
def test_anything_but_exact_origins_stops_the_start(tmp_path, databases, origins):
    settings = make_settings(tmp_path, databases["sqlite"], cors_allowed_origins=origins)
    with pytest.raises(ValueError, match="CORS_ALLOWED_ORIGINS"):
        create_app(settings)


@contextlib.asynccontextmanager
async def serving(settings):
    """The app behind uvicorn on a free local port, with the server's WebSocket protocol.
    The port is bound here and the socket handed over: a port only found free and bound later
    could be taken by another test process in between (it was, once, in CI)."""
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings),
        log_level="warning",
        **websocket_options(settings),  # as `agencyhub serve`
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not task.done(), "uvicorn stopped while starting"
                await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await task
        listening.close()


@pytest.fixture
async def server(settings):
    async with serving(settings) as url:
        yield url


async def connected(url, origin=None):
    """A socket past connection_ack (any origin header as given), with nothing else read."""
    ws = await websockets.connect(url, origin=origin, subprotocols=["graphql-transport-ws"])
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
    return ws


async def test_a_websocket_from_another_origin_is_refused_at_the_upgrade(server):
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(server, origin=OTHER, subprotocols=["graphql-transport-ws"])
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("origin", [APP, "http://127.0.0.1:3000", None])
async def test_a_websocket_from_a_listed_origin_or_from_no_browser_is_accepted(server, origin):
    ws = await connected(server, origin)
    await ws.close()


async def test_a_quiet_socket_gets_keep_alive_pings_as_text(tmp_path, databases):
    settings = make_settings(tmp_path, databases["sqlite"], ws_keepalive_seconds=0.2)
    async with serving(settings) as url:
        ws = await connected(url)
        frames = []
        try:
            for _ in range(3):  # answered each time, as graphql-ws and gql do
                frames.append(await asyncio.wait_for(ws.recv(), 2))
                await ws.send(json.dumps({"type": "pong"}))
        finally:
            await ws.close()
    assert frames == ['{"type":"ping"}'] * 3


async def test_a_socket_that_does_not_answer_pings_is_closed_as_a_dead_peer(tmp_path, databases):
    settings = make_settings(tmp_path, databases["sqlite"], ws_keepalive_seconds=0.2)
    async with serving(settings) as url:
        ws = await connected(url)
        assert await asyncio.wait_for(ws.recv(), 2) == '{"type":"ping"}'
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 2)  # no pong sent
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


def test_keep_alive_pings_replace_uvicorns_own(tmp_path, databases):
    on = make_settings(tmp_path, databases["sqlite"], ws_keepalive_seconds=15)
    off = make_settings(tmp_path, databases["sqlite"], ws_keepalive_seconds=0)
    assert websocket_options(on)["ws_ping_interval"] is None
    assert "ws_ping_interval" not in websocket_options(off)  # uvicorn's pings stay on


async def test_deflate_is_negotiated_without_context_takeover(server):
    ws = await websockets.connect(
        server, subprotocols=["graphql-transport-ws"], compression="deflate"
    )
    try:
        (deflate,) = ws.protocol.extensions
        # Both sides start every message afresh: no compressor state lives on an idle socket.
        assert deflate.local_no_context_takeover and deflate.remote_no_context_takeover
        assert deflate.remote_max_window_bits == 9
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
    finally:
        await ws.close()


def test_small_messages_go_uncompressed_and_no_compressor_outlives_its_message():
    deflate = _DeflatePerMessage(True, True, 9, 9, {"memLevel": 1})
    ping = deflate.encode(Frame(Opcode.TEXT, b'{"type":"ping"}'))
    assert not ping.rsv1 and ping.data == b'{"type":"ping"}'
    event = b'{"type":"next","id":"1","payload":{"data":' + b'"x",' * 60 + b'"x"}}'
    compressed = deflate.encode(Frame(Opcode.TEXT, event))
    assert compressed.rsv1 and len(compressed.data) < len(event)
    assert not hasattr(deflate, "encoder")
    assert _DeflatePerMessage(True, True, 9, 9).decode(compressed).data == event


async def test_no_pings_when_keep_alive_is_off(tmp_path, databases):
    settings = make_settings(tmp_path, databases["sqlite"], ws_keepalive_seconds=0)
    async with serving(settings) as url:
        ws = await connected(url)
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 1)  # five times what pinged the socket above
            await ws.send(json.dumps({"type": "ping"}))
            answer = await asyncio.wait_for(ws.recv(), 5)
        finally:
            await ws.close()
    assert json.loads(answer) == {"type": "pong"}  # the socket lives; nothing came before
