"""The query cost limit (schema/cost.py): page sizes multiplied through nested connections,
refused with QUERY_TOO_COSTLY above QUERY_COST_LIMIT, before any resolver runs, over HTTP and
WebSocket, for queries and subscriptions."""

import asyncio
import json

import httpx
import pytest
from graphql import parse, validate

from agencyhub.app import create_app
from resolvers import viewer as reads
from schema import build_schema
from schema.cost import connection_terms, cost_of
from tests.api.test_browser_access import connected, serving
from tests.conftest import make_settings
from tests.factories import gql, make_agency

SCHEMA = build_schema()._schema


def cost(query, variables=None, operation_name=None):
    document = parse(query)
    assert validate(SCHEMA, document) == []
    return cost_of(connection_terms(SCHEMA, document, operation_name), variables)


CLIENTS_AND_LINES = """query($n: Int, $m: Int = 10) { viewer { agency {
  subAccounts(first: $n) { edges { node { name lines(first: $m) { edges { node { number } } } } } }
} } }"""


def test_page_sizes_multiply_through_nested_connections():
    assert cost("{ __typename }") == 1
    assert cost("{ viewer { agency { name } } }") == 1
    assert (
        cost("{ viewer { agency { subAccounts(first: 500) { pageInfo { hasNextPage } } } } }")
        == 501
    )
    # 1 + 100 sub-accounts + 100 * 10 lines
    assert cost(CLIENTS_AND_LINES, {"n": 100}) == 1101
    assert cost(CLIENTS_AND_LINES, {"n": 100, "m": 2}) == 301  # the variable, not its default


def test_a_connection_without_first_counts_the_default_page_size():
    assert cost("{ viewer { agency { users { pageInfo { hasNextPage } } } } }") == 21
    assert cost(CLIENTS_AND_LINES) == 1 + 20 + 20 * 10  # $n absent: the default page
    assert cost(CLIENTS_AND_LINES, {"n": None, "m": None}) == 1 + 20 + 20 * 20


def test_aliases_count_each_and_repeated_fields_count_once():
    two = """{ viewer { agency { a: users(first: 50) { pageInfo { hasNextPage } }
      b: users(first: 50) { pageInfo { hasNextPage } } } } }"""
    assert cost(two) == 101
    same = """{ viewer { agency { users(first: 50) { pageInfo { hasNextPage } }
      users(first: 50) { pageInfo { endCursor } } } } }"""
    assert cost(same) == 51


def test_fragments_and_inline_fragments_are_followed():
    query = """
    query { viewer { agency { ...Clients } }
      node(id: "x") { ... on SubAccount { purchases(first: 30) { pageInfo { hasNextPage } } } } }
    fragment Clients on Agency { subAccounts(first: 10) { edges { node { ...Lines } } } }
    fragment Lines on SubAccount { lines(first: 40) { pageInfo { hasNextPage } } }
    """
    assert cost(query) == 1 + 10 + 10 * 40 + 30


def test_the_named_operation_is_the_one_counted():
    query = """query Small { viewer { agency { users(first: 1) { pageInfo { hasNextPage } } } } }
    query Big { viewer { agency { users(first: 99) { pageInfo { hasNextPage } } } } }"""
    assert cost(query, operation_name="Small") == 2
    assert cost(query, operation_name="Big") == 100


TOO_COSTLY = CLIENTS_AND_LINES


async def test_a_costly_query_is_refused_before_any_resolver_runs(app_client, monkeypatch):
    owner = await make_agency(app_client)
    ran = []
    real_viewer = reads.viewer

    async def counting_viewer(context):
        ran.append(1)
        return await real_viewer(context)

    monkeypatch.setattr(reads, "viewer", counting_viewer)
    body = await gql(app_client, TOO_COSTLY, {"n": 100}, owner.token)
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"] == {"code": "QUERY_TOO_COSTLY", "cost": 1101, "maximum": 1000}
    assert "1101" in error["message"]
    assert ran == []
    # within the limit it runs
    body = await gql(app_client, TOO_COSTLY, {"n": 90}, owner.token)  # 1 + 90 + 900 = 991
    assert "errors" not in body, body
    assert ran == [1]


async def test_a_costly_query_over_get_is_refused_too(app_client):
    owner = await make_agency(app_client)
    response = await app_client.get(
        "/graphql",
        params={"query": TOO_COSTLY, "variables": json.dumps({"n": 100})},
        headers={"authorization": f"Bearer {owner.token}"},
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


@pytest.fixture
async def low_limit_client(tmp_path, databases):
    """QUERY_COST_LIMIT=200, on SQLite: the cost does not depend on the database."""
    app = create_app(make_settings(tmp_path, databases["sqlite"], query_cost_limit=200))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_the_maximum_is_a_setting(low_limit_client):
    app_client = low_limit_client
    owner = await make_agency(app_client)
    query = "query($n: Int) { viewer { agency { users(first: $n) { pageInfo { hasNextPage } } } } }"
    body = await gql(app_client, query, {"n": 100}, owner.token)
    assert "errors" not in body
    body = await gql(app_client, TOO_COSTLY, {"n": 10}, owner.token)  # 111
    assert "errors" not in body
    body = await gql(app_client, TOO_COSTLY, {"n": 20}, owner.token)  # 221
    assert body["errors"][0]["extensions"] == {
        "code": "QUERY_TOO_COSTLY",
        "cost": 221,
        "maximum": 200,
    }


async def test_queries_and_subscriptions_over_websocket_are_limited(tmp_path, databases):
    subscription = """subscription($n: Int) { usageUpdated { sequence
      subAccount { lines(first: $n) { pageInfo { hasNextPage } }
        purchases(first: 150) { pageInfo { hasNextPage } } } } }"""
    settings = make_settings(tmp_path, databases["sqlite"], query_cost_limit=200)
    async with serving(settings) as url:
        ws = await connected(url)
        for n, (query, variables) in enumerate(
            [(TOO_COSTLY, {"n": 20}), (subscription, {"n": 50})], start=1
        ):
            payload = {"query": query, "variables": variables}
            await ws.send(json.dumps({"id": str(n), "type": "subscribe", "payload": payload}))
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert message["id"] == str(n)
            assert message["type"] in ("error", "next"), message
            errors = (
                message["payload"] if message["type"] == "error" else message["payload"]["errors"]
            )
            assert errors[0]["extensions"]["code"] == "QUERY_TOO_COSTLY", message
        await ws.close()
