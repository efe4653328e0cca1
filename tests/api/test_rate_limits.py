"""RATE_LIMIT_PER_MINUTE (agencyhub/limits.py): per session token, per API key, per client
address without a token; a 429 with Retry-After and RATE_LIMITED; one HTTP request counts once;
shared by processes through Redis; operations over WebSocket count too."""

import asyncio
import contextlib
import json
import uuid
from datetime import timedelta

import httpx
import pytest
import redis.asyncio as redis
import websockets

from agencyhub.app import create_app
from resolvers.api_keys import issue_api_key
from resolvers.global_id import from_global_id
from tests.api.test_browser_access import serving
from tests.api.test_usage import RECORD, call
from tests.conftest import REDIS_URL, Clock, make_settings
from tests.factories import make_agency

LIMIT = 3
QUERY = {"query": "{ viewer { user { email } } }"}


@contextlib.asynccontextmanager
async def app_clients(settings, clock, count=1, client_host="127.0.0.1"):
    """`count` apps (processes) on the same settings, each with its HTTP client."""
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for _ in range(count):
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            app.state.services.clock = clock
            transport = httpx.ASGITransport(app=app, client=(client_host, 40000))
            client = httpx.AsyncClient(transport=transport, base_url="http://test")
            client.app = app  # make_agency reads services through it
            clients.append(await stack.enter_async_context(client))
        yield clients


@pytest.fixture(params=["in-process", "redis"])
def settings(request, tmp_path, databases):
    redis_url = REDIS_URL if request.param == "redis" else None
    return make_settings(tmp_path, databases["sqlite"], redis_url, rate_limit_per_minute=LIMIT)


def a_client_address():
    # Each test its own address: counters in Redis outlive a test.
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


async def post(client, body, token=None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return await client.post("/graphql", json=body, headers=headers)


async def test_a_token_past_the_limit_gets_429_until_the_minute_ends(settings):
    clock = Clock()
    clock.now = clock.now.replace(second=0, microsecond=0)  # the start of a window
    async with app_clients(settings, clock, client_host=a_client_address()) as [client]:
        owner = await make_agency(client)
        other = await make_agency(client)
        for _ in range(LIMIT):
            assert (await post(client, QUERY, owner.token)).status_code == 200
        clock.advance(timedelta(seconds=20))
        refused = await post(client, QUERY, owner.token)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "40"
        [error] = refused.json()["errors"]
        assert error["extensions"] == {"code": "RATE_LIMITED", "retryAfterSeconds": 40}
        # another token is counted apart
        assert (await post(client, QUERY, other.token)).status_code == 200
        # the next minute, the token may again
        clock.advance(timedelta(seconds=40))
        assert (await post(client, QUERY, owner.token)).status_code == 200


async def test_a_batch_of_recorded_calls_counts_as_one_request(settings):
    async with app_clients(settings, Clock(), client_host=a_client_address()) as [client]:
        owner = await make_agency(client)
        services = client.app.state.services
        _, key = await issue_api_key(services, from_global_id(owner.id)[1], "platform", None)
        for _ in range(LIMIT):
            batch = {"calls": [call(owner.primary_id, duration=1) for _ in range(5)]}
            response = await post(client, {"query": RECORD, "variables": batch}, key)
            assert response.json()["data"]["recordCalls"]["accepted"] == 5
        response = await post(client, {"query": RECORD, "variables": batch}, key)
        assert response.status_code == 429
        assert response.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_requests_without_a_token_are_counted_per_client_address(settings):
    clock = Clock()
    address = a_client_address()
    async with (
        app_clients(settings, clock, client_host=address) as [client],
        app_clients(settings, clock, client_host=a_client_address()) as [elsewhere],
    ):
        for _ in range(LIMIT):
            assert (await post(client, QUERY)).status_code == 200  # UNAUTHENTICATED, counted
        assert (await post(client, QUERY)).status_code == 429
        assert (await post(elsewhere, QUERY)).status_code == 200


@pytest.mark.parametrize("settings", ["redis"], indirect=True)
async def test_processes_share_the_count_in_redis_without_the_token_in_clear(settings):
    async with app_clients(settings, Clock(), count=2, client_host=a_client_address()) as (
        first,
        second,
    ):
        owner = await make_agency(first)
        statuses = [(await post(app, QUERY, owner.token)).status_code for app in (first, second)]
        statuses += [(await post(first, QUERY, owner.token)).status_code]
        assert statuses == [200, 200, 200]
        assert (await post(second, QUERY, owner.token)).status_code == 429
    store = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [key.decode() async for key in store.scan_iter("ratelimit:requests:*")]
    finally:
        await store.aclose()
    assert keys
    secret = owner.token.removeprefix("ahs_")
    assert not any(secret in key or owner.token in key for key in keys)


async def test_zero_turns_the_limit_off(tmp_path, databases):
    settings = make_settings(tmp_path, databases["sqlite"], rate_limit_per_minute=0)
    async with app_clients(settings, Clock()) as [client]:
        for _ in range(10):
            assert (await post(client, QUERY)).status_code == 200


@pytest.mark.parametrize("settings", ["in-process"], indirect=True)
async def test_operations_over_websocket_count_too(settings):
    async with serving(settings) as url:
        ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"])
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
        results = []
        for n in range(LIMIT + 1):
            payload = {"query": "{ __typename }"}
            await ws.send(json.dumps({"id": str(n), "type": "subscribe", "payload": payload}))
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            results.append(message["type"])
            if message["type"] == "next":
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "complete"
        assert results == ["next"] * LIMIT + ["error"]
        assert message["payload"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert message["payload"][0]["extensions"]["retryAfterSeconds"] >= 1
        await ws.close()
