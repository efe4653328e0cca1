"""Whatever a client sends, it gets a clear GraphQL error: never a 500, never a stack trace."""

import pytest

from tests.factories import gql, make_agency


async def post(client, body, **kwargs):
    response = await client.post("/graphql", json=body, **kwargs)
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text and "sqlalchemy" not in response.text.lower()
    return response


def codes(body):
    return [e.get("extensions", {}).get("code") for e in body["errors"]]


async def test_malformed_graphql_is_a_syntax_error(app_client):
    response = await post(app_client, {"query": "{ viewer { user { id }"})
    body = response.json()
    assert "Syntax Error" in body["errors"][0]["message"]
    assert codes(body) == ["BAD_REQUEST"]


async def test_unknown_field_is_a_validation_error(app_client):
    body = (await post(app_client, {"query": "{ viewer { password } }"})).json()
    assert "Cannot query field 'password'" in body["errors"][0]["message"]


async def test_unknown_operation_name_is_refused(app_client):
    response = await post(app_client, {"query": "query A { __typename }", "operationName": "B"})
    assert response.status_code == 400
    assert "B" in response.text


async def test_wrong_variable_type_is_refused(app_client):
    query = "mutation($i: SignUpAgencyInput!) { signUpAgency(input: $i) { token } }"
    body = (await post(app_client, {"query": query, "variables": {"i": {"agencyName": 42}}})).json()
    assert any("agencyName" in e["message"] for e in body["errors"])
    assert set(codes(body)) == {"BAD_REQUEST"}


async def test_body_that_is_not_json_is_refused(app_client):
    response = await app_client.post(
        "/graphql", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


async def test_oversized_body_is_refused_with_413(app_client):
    huge = "query { __typename }" + " " * 1_100_000
    response = await app_client.post("/graphql", json={"query": huge})
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"


async def test_oversized_chunked_body_is_refused_with_413(app_client):
    async def chunks():
        for _ in range(30):
            yield b" " * 50_000

    response = await app_client.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


async def test_query_deeper_than_ten_is_refused(app_client):
    def nested(levels):
        return "{ " + "viewer { agency { " * levels + "id" + " } }" * levels + " }"

    assert "exceeds maximum operation depth" not in str(
        (await post(app_client, {"query": nested(4)})).json()
    )
    body = (await post(app_client, {"query": nested(6)})).json()  # depth 12
    assert "exceeds maximum operation depth of 10" in body["errors"][0]["message"]


async def test_more_than_fifteen_aliases_are_refused(app_client):
    query = "{ " + " ".join(f"a{i}: __typename" for i in range(16)) + " }"
    body = (await post(app_client, {"query": query})).json()
    assert "aliases" in body["errors"][0]["message"].lower()


async def test_too_many_tokens_are_refused(app_client):
    query = "{ " + " ".join("__typename" for _ in range(2_100)) + " }"
    body = (await post(app_client, {"query": query})).json()
    assert "token" in body["errors"][0]["message"].lower()


async def test_queries_work_over_get_but_mutations_do_not(app_client):
    ok = await app_client.get("/graphql", params={"query": "{ __typename }"})
    assert ok.json() == {"data": {"__typename": "Query"}}
    refused = await app_client.get("/graphql", params={"query": "mutation { logout { revoked } }"})
    assert refused.status_code == 400
    assert "mutations are not allowed" in refused.text.lower()


async def test_unexpected_errors_are_masked(app_client, monkeypatch):
    agency = await make_agency(app_client)

    async def broken(*args, **kwargs):
        raise RuntimeError('relation "secret_table" does not exist: SELECT password FROM …')

    monkeypatch.setattr("resolvers.viewer.node", broken)
    body = await gql(app_client, '{ node(id: "x") { id } }', token=agency.token)
    assert body["errors"][0]["message"] == "Unexpected error."
    assert codes(body) == ["INTERNAL_SERVER_ERROR"]
    assert "secret_table" not in str(body)


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_endpoints(app_client, path):
    response = await app_client.get(path)
    assert response.status_code == 200
    assert response.json()["status"] in {"ok", "ready"}
