"""Automatic persisted queries (agencyhub/persisted_queries.py), as Apollo's link speaks them:
an unknown hash is PERSISTED_QUERY_NOT_FOUND, the text sent with it is checked and kept, then
the hash alone runs it, over GET too; never a mutation over GET; bounded stores."""

import asyncio
import hashlib
import json
import uuid

import pytest
import redis.asyncio as redis

from persistence.persisted_queries import InProcessPersistedQueries, RedisPersistedQueries
from tests.api.test_rate_limits import app_clients
from tests.conftest import REDIS_URL, Clock, make_settings
from tests.factories import make_agency


def persisted(query):
    sha256 = hashlib.sha256(query.encode()).hexdigest()
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256}}


def a_query():
    # Unique per test: texts kept in Redis outlive a test.
    return f"query Q{uuid.uuid4().hex} {{ viewer {{ user {{ email }} }} }}"


@pytest.fixture(params=["in-process", "redis"])
def settings(request, tmp_path, databases):
    redis_url = REDIS_URL if request.param == "redis" else None
    return make_settings(tmp_path, databases["sqlite"], redis_url, persisted_query_max_bytes=200)


@pytest.fixture
async def client(settings):
    async with app_clients(settings, Clock()) as [client]:
        client.owner = await make_agency(client)
        client.headers["authorization"] = f"Bearer {client.owner.token}"
        yield client


async def get(client, extensions, **params):
    query = {"extensions": json.dumps(extensions), **params}
    return await client.get("/graphql", params=query, headers={"accept": "*/*"})


def not_found(response):
    assert response.status_code == 200
    assert response.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }
    return True


async def test_an_unknown_hash_then_its_text_then_the_hash_alone(client):
    query = a_query()
    # the hash alone, unknown: POST or GET
    assert not_found(await client.post("/graphql", json={"extensions": persisted(query)}))
    assert not_found(await get(client, persisted(query)))
    # the text with its hash runs and is kept
    sent = await client.post("/graphql", json={"query": query, "extensions": persisted(query)})
    expected = {"data": {"viewer": {"user": {"email": client.owner.email}}}}
    assert sent.json() == expected
    # then the hash alone is enough, over GET and POST
    assert (await get(client, persisted(query))).json() == expected
    assert (await client.post("/graphql", json={"extensions": persisted(query)})).json() == expected


async def test_a_text_that_does_not_match_its_hash_is_refused_and_not_kept(client):
    query, other = a_query(), a_query()
    response = await client.post("/graphql", json={"query": other, "extensions": persisted(query)})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert not_found(await get(client, persisted(query)))
    assert not_found(await get(client, persisted(other)))


async def test_a_persisted_mutation_never_runs_over_get(client):
    mutation = (
        f"mutation M{uuid.uuid4().hex} "
        '{ updateAgency(input: {name: "Renamed"}) { agency { name } } }'
    )
    sent = await client.post(
        "/graphql", json={"query": mutation, "extensions": persisted(mutation)}
    )
    assert "errors" not in sent.json(), sent.json()
    response = await get(client, persisted(mutation))
    assert response.status_code == 400
    assert "mutations are not allowed when using GET" in response.text
    # over POST, the hash alone runs it
    again = await client.post("/graphql", json={"extensions": persisted(mutation)})
    assert again.json()["data"]["updateAgency"]["agency"]["name"] == "Renamed"


async def test_long_texts_run_but_are_not_kept(client):
    query = a_query().replace("email", "email " + "id " * 80)  # past 200 bytes
    sent = await client.post("/graphql", json={"query": query, "extensions": persisted(query)})
    assert sent.json()["data"]["viewer"]["user"]["email"] == client.owner.email
    assert not_found(await get(client, persisted(query)))


@pytest.mark.parametrize(
    "extensions",
    [
        {"persistedQuery": {"version": 2, "sha256Hash": "0" * 64}},
        {"persistedQuery": {"version": 1, "sha256Hash": "not a hash"}},
        {"persistedQuery": "yes"},
    ],
)
async def test_malformed_persisted_queries_are_refused(client, extensions):
    response = await client.post("/graphql", json={"extensions": extensions})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] in (
        "BAD_REQUEST",
        "PERSISTED_QUERY_NOT_SUPPORTED",
    )


async def test_the_in_process_store_keeps_the_most_recently_used():
    store = InProcessPersistedQueries(max_entries=2, ttl_seconds=60)
    for name in ("a", "b"):
        await store.put(name, name.upper())
    assert await store.get("a") == "A"  # now b is the least recently used
    await store.put("c", "C")
    assert [await store.get(name) for name in "abc"] == ["A", None, "C"]


async def test_the_in_process_store_forgets_after_its_ttl():
    store = InProcessPersistedQueries(max_entries=10, ttl_seconds=1)
    await store.put("a", "A")
    await asyncio.sleep(1.05)
    assert await store.get("a") is None


async def test_redis_entries_expire_after_their_last_use():
    store = RedisPersistedQueries(REDIS_URL, ttl_seconds=100)
    admin = redis.Redis.from_url(REDIS_URL)
    sha256 = uuid.uuid4().hex * 2
    try:
        await store.put(sha256, "{ __typename }")
        await admin.expire(f"apq:{sha256}", 10)
        assert await store.get(sha256) == "{ __typename }"
        assert 90 < await admin.ttl(f"apq:{sha256}") <= 100  # renewed by the read
    finally:
        await admin.delete(f"apq:{sha256}")
        await admin.aclose()
        await store.close()
