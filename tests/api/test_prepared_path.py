"""A query text seen before takes the short way (`Schema.execute_prepared`, answered by
`GraphQLApp._answer_prepared`), and its answer is the one strawberry's full path gives: the
same status, body, coded and masked errors, and request log line. Each request below is sent
twice: the first is the full path's answer (the text is new), the second the short way's."""

from __future__ import annotations

import logging
from hashlib import sha256

import orjson
import pytest
from starlette.routing import Route

from resolvers import viewer as reads
from schema.roots import Schema, build_schema
from schema.sharing import SharedEventExecution
from tests.factories import make_agency

VIEWER = "query Who { viewer { user { email role } agency { name primarySubAccount { name } } } }"
TWO_OPERATIONS = "query A { viewer { user { email } } } query B { viewer { agency { name } } }"
NODE = "query Node($id: ID!) { node(id: $id) { id } }"
USERS = (
    "query Users($n: Int) { viewer { agency { users(first: $n) { edges { node { email } } } } } }"
)
TRANSFER = """mutation Send($input: TransferMinutesInput!) { transferMinutes(input: $input) {
  transfer { id } userErrors { code message field } } }"""
LIVE = "subscription { agencyTotalsUpdated { sequence } }"


@pytest.fixture
def short_way(monkeypatch):
    """What each request's `execute_prepared` answered: True when it answered, False when it
    left the request to strawberry's full path."""
    taken: list[bool] = []
    prepared = Schema.execute_prepared

    async def spied(self, *args, **kwargs):
        result = await prepared(self, *args, **kwargs)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(Schema, "execute_prepared", spied)
    return taken


@pytest.fixture
async def owner(app_client, caplog, short_way):
    """A signed-up agency owner; the request log captured; the sign-up's requests forgotten."""
    signed_up = await make_agency(app_client)
    caplog.set_level(logging.INFO)
    short_way.clear()
    return signed_up


async def twice(app_client, caplog, body, token=None):
    """The two answers to the same request, with each one's request log line."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answers = []
    for _ in range(2):
        caplog.clear()
        response = await app_client.post(
            "/graphql",
            content=orjson.dumps(body),
            headers={**headers, "content-type": "application/json"},
        )
        [line] = [r for r in caplog.records if r.name == "agencyhub.request"]
        logged = {key: getattr(line, key, None) for key in ("operation", "outcome", "error_codes")}
        answers.append((response.status_code, response.content, logged))
    return answers


def body_of(answer):
    return orjson.loads(answer[1])


async def test_a_query_seen_before_is_answered_the_short_way_with_the_same_answer(
    app_client, caplog, short_way, owner
):
    first, second = await twice(app_client, caplog, {"query": VIEWER}, owner.token)

    assert short_way == [False, True]
    assert first == second
    assert body_of(second)["data"]["viewer"]["user"]["email"] == owner.email
    assert second[2]["operation"] == "Who"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_errors_are_coded_and_logged_the_same_the_short_way(
    app_client, caplog, short_way, owner
):
    # not signed in: the resolver's NotAuthenticated, coded
    refused = await twice(app_client, caplog, {"query": VIEWER})
    # a variable missing: graphql-core's coercion error, the client's fault
    missing = await twice(app_client, caplog, {"query": NODE, "variables": {}}, owner.token)
    # a rule refusing a mutation (more minutes than the account holds): a user error
    too_many = {
        "query": TRANSFER,
        "variables": {
            "input": {
                "fromId": owner.primary_id,
                "toId": owner.primary_id,
                "tier": "PREMIUM",
                "minutes": "1000000",
            }
        },
    }
    refused_rule = await twice(app_client, caplog, too_many, owner.token)

    assert short_way == [False, True] * 3
    for first, second in (refused, missing, refused_rule):
        assert first == second
    assert body_of(refused[1])["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert refused[1][2]["error_codes"] == ["UNAUTHENTICATED"]
    assert body_of(missing[1])["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert body_of(refused_rule[1])["data"]["transferMinutes"]["userErrors"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_unexpected_error_is_masked_and_logged_the_short_way_too(
    app_client, caplog, short_way, monkeypatch, owner
):
    async def broken(context):
        raise RuntimeError("SELECT secret FROM somewhere")

    monkeypatch.setattr(reads, "viewer", broken)
    first, second = await twice(app_client, caplog, {"query": VIEWER}, owner.token)

    assert short_way == [False, True]
    assert first == second
    error = body_of(second)["errors"][0]
    assert error["message"] == "Unexpected error."
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert b"secret" not in second[1]
    unexpected = [r for r in caplog.records if r.name == "agencyhub.errors"]
    assert unexpected and unexpected[0].exc_info is not None  # the short way logged it too


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_operation_named_is_the_one_run_and_an_unknown_name_is_refused(
    app_client, caplog, short_way, owner
):
    named = await twice(
        app_client, caplog, {"query": TWO_OPERATIONS, "operationName": "B"}, owner.token
    )
    unnamed = await twice(app_client, caplog, {"query": TWO_OPERATIONS}, owner.token)
    unknown = await twice(
        app_client, caplog, {"query": TWO_OPERATIONS, "operationName": "C"}, owner.token
    )

    assert short_way == [False, True, True, True, False, False]  # one text, seen from the 2nd
    for first, second in (named, unnamed, unknown):
        assert first == second
    assert body_of(named[1])["data"]["viewer"].keys() == {"agency"}  # B's, not A's
    assert named[1][2]["operation"] == "B"
    # no name: strawberry runs the first operation, and so does the short way
    assert body_of(unnamed[1])["data"]["viewer"].keys() == {"user"}
    assert unnamed[1][2]["operation"] == "A"
    assert unknown[1][0] == 400


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_text_seen_before_is_still_refused_over_the_cost_limit(
    app_client, caplog, short_way, owner
):
    headers = {"authorization": f"Bearer {owner.token}"}

    within = await app_client.post(
        "/graphql", json={"query": USERS, "variables": {"n": 5}}, headers=headers
    )
    again = await app_client.post(
        "/graphql", json={"query": USERS, "variables": {"n": 5}}, headers=headers
    )
    over = await app_client.post(
        "/graphql", json={"query": USERS, "variables": {"n": 100_000}}, headers=headers
    )

    assert short_way == [False, True, False]
    assert within.json() == again.json() and "errors" not in again.json()
    assert over.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert over.json()["data"] is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_what_the_short_way_does_not_take_is_answered_as_before(
    app_client, caplog, short_way, owner
):
    invalid = await twice(app_client, caplog, {"query": "{ viewer { nope } }"}, owner.token)
    live = await twice(app_client, caplog, {"query": LIVE}, owner.token)
    batch = await twice(app_client, caplog, [{"query": VIEWER}], owner.token)

    assert short_way == [False, False, False, False]  # the batch never reaches it
    for first, second in (invalid, live, batch):
        assert first == second
    assert body_of(invalid[1])["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert batch[1][0] == 400


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_persisted_querys_hash_takes_the_short_way_once_its_text_is_known(
    app_client, short_way, owner
):
    headers = {"authorization": f"Bearer {owner.token}"}
    hashed = {"persistedQuery": {"version": 1, "sha256Hash": sha256(VIEWER.encode()).hexdigest()}}

    # an Apollo client: the hash alone (unknown), then the text with its hash, then the hash
    unknown = await app_client.post("/graphql", json={"extensions": hashed}, headers=headers)
    registered = await app_client.post(
        "/graphql", json={"query": VIEWER, "extensions": hashed}, headers=headers
    )
    by_hash = await app_client.post("/graphql", json={"extensions": hashed}, headers=headers)
    again = await app_client.post("/graphql", json={"extensions": hashed}, headers=headers)

    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    # the text was new when registered (the full way), then known: the hash is run the short way
    assert short_way == [False, True, True]
    assert registered.json() == by_hash.json() == again.json()
    assert "errors" not in by_hash.json()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_known_text_sent_with_its_hash_is_kept_for_the_hash_alone(
    app_client, short_way, owner
):
    headers = {"authorization": f"Bearer {owner.token}"}
    text = "query Known { viewer { agency { name } } }"
    hashed = {"persistedQuery": {"version": 1, "sha256Hash": sha256(text.encode()).hexdigest()}}

    # the text is known before an Apollo client registers its hash, then sends the hash only
    plain = await app_client.post("/graphql", json={"query": text}, headers=headers)
    registered = await app_client.post(
        "/graphql", json={"query": text, "extensions": hashed}, headers=headers
    )
    by_hash = await app_client.post("/graphql", json={"extensions": hashed}, headers=headers)

    # the short way answered the registration, and kept the text for the hash as well
    assert short_way == [False, True, True]
    assert plain.json() == registered.json() == by_hash.json()
    assert "errors" not in by_hash.json()


COSTLY_FIRST = """query Costly { viewer { agency {
  a: subAccounts(first: 500) { edges { node { name } } }
  b: subAccounts(first: 500) { edges { node { name } } } } } }
query Cheap { viewer { user { email } } }"""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_first_of_several_operations_is_priced_when_no_name_is_sent(
    app_client, caplog, short_way, owner
):
    first, second = await twice(app_client, caplog, {"query": COSTLY_FIRST}, owner.token)

    # strawberry runs (and prices) the first operation; the short way must not price nothing
    assert short_way == [False, False]  # then known and valid, but over the limit: the full way
    assert first == second
    assert body_of(second)["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


def test_only_operations_the_text_holds_are_remembered():
    documents = build_schema().documents
    prepared = documents.prepared(TWO_OPERATIONS)
    for n in range(100):
        assert prepared.operation(f"Made{n}") is None
    assert prepared.operation("B") is not None and prepared.operation(None) is not None
    assert set(prepared.operations) == {"B", None}


# A default to apply: the short way leaves the variables, and the executor, to graphql-core.
DEFAULTED = USERS.replace("$n: Int)", "$n: Int = 5)").replace("query Users", "query Who")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("text", [VIEWER, DEFAULTED], ids=["planned", "graphql-core-built"])
async def test_what_graphql_core_raises_is_answered_masked_the_short_way(
    app_client, caplog, short_way, owner, monkeypatch, text
):
    headers = {"authorization": f"Bearer {owner.token}"}
    await app_client.post("/graphql", json={"query": text}, headers=headers)

    def raising(*args, **kwargs):
        raise RuntimeError("SELECT secret FROM somewhere")

    monkeypatch.setattr(SharedEventExecution, "execute_operation", raising)
    caplog.clear()
    response = await app_client.post("/graphql", json={"query": text}, headers=headers)

    assert short_way == [False, True]
    assert response.status_code == 200
    assert response.json() == {
        "data": None,
        "errors": [
            {"message": "Unexpected error.", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
        ],
    }
    [line] = [r for r in caplog.records if r.name == "agencyhub.request"]
    assert line.error_codes == ["INTERNAL_SERVER_ERROR"] and line.operation == "Who"
    assert [r for r in caplog.records if r.name == "agencyhub.errors"]  # logged, with its trace


def documents_of(app_client):
    """The app's schema's texts, as its /graphql route holds them."""
    [route] = [r for r in app_client.app.routes if isinstance(r, Route) and r.path == "/graphql"]
    return route.endpoint.schema.documents


SPREAD = """query Spread { viewer { ...Who me: user { email } agency { name } }
  agency: viewer { agency { primarySubAccount { name status } } } }
fragment Who on Viewer { user { email role } agency { primarySubAccount { id } } }"""
INCLUDED = """query Included($role: Boolean!, $agency: Boolean!) {
  viewer { user { email role @include(if: $role) } agency @skip(if: $agency) { id } } }"""


async def test_a_texts_sub_selections_are_collected_once_and_its_answer_unchanged(
    app_client, caplog, short_way, owner
):
    first, second = await twice(app_client, caplog, {"query": SPREAD}, owner.token)

    assert short_way == [False, True]
    assert first == second
    viewer = body_of(second)["data"]["viewer"]
    assert viewer["user"] == {"email": owner.email, "role": "AGENCY_OWNER"}
    assert viewer["me"] == {"email": owner.email} and set(viewer["agency"]) == {
        "name",
        "primarySubAccount",
    }
    # what the short way collected is kept with the text, for the next request
    collections = documents_of(app_client).known(SPREAD).collections
    assert collections is not None and collections._collected


async def test_a_text_whose_variables_choose_its_fields_is_collected_per_request(
    app_client, short_way, owner
):
    headers = {"authorization": f"Bearer {owner.token}"}
    answers = []
    for role, agency in [(True, False), (False, True), (True, True), (False, False)]:
        variables = {"role": role, "agency": agency}
        response = await app_client.post(
            "/graphql", json={"query": INCLUDED, "variables": variables}, headers=headers
        )
        answers.append(response.json()["data"]["viewer"])

    assert short_way == [False, True, True, True]
    assert answers == [
        {"user": {"email": owner.email, "role": "AGENCY_OWNER"}, "agency": {"id": owner.id}},
        {"user": {"email": owner.email}},
        {"user": {"email": owner.email, "role": "AGENCY_OWNER"}},
        {"user": {"email": owner.email}, "agency": {"id": owner.id}},
    ]
    assert documents_of(app_client).known(INCLUDED).collections is None
