import base64
import uuid

from tests.factories import gql, make_agency

NODE = """
query Node($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Agency { name }
    ... on SubAccount { kind }
    ... on User { email }
  }
}
"""
VIEWER_IDS = "{ viewer { user { id } agency { id primarySubAccount { id } } } }"


async def ids_of(client, agency):
    viewer = (await gql(client, VIEWER_IDS, token=agency.token))["data"]["viewer"]
    return [
        viewer["user"]["id"],
        viewer["agency"]["id"],
        viewer["agency"]["primarySubAccount"]["id"],
    ]


async def test_node_fetches_the_viewers_own_objects_by_global_id(app_client):
    agency = await make_agency(app_client, name="Own")
    user_id, agency_id, primary_id = await ids_of(app_client, agency)
    found = [
        (await gql(app_client, NODE, {"id": i}, agency.token))["data"]["node"]
        for i in (user_id, agency_id, primary_id)
    ]
    assert [(n["__typename"], n["id"]) for n in found] == [
        ("User", user_id),
        ("Agency", agency_id),
        ("SubAccount", primary_id),
    ]
    assert found[1]["name"] == "Own" and found[2]["kind"] == "PRIMARY"


async def test_another_agencys_ids_read_as_null(app_client):
    mine = await make_agency(app_client)
    theirs = await make_agency(app_client)
    for foreign_id in await ids_of(app_client, theirs):
        body = await gql(app_client, NODE, {"id": foreign_id}, mine.token)
        assert body == {"data": {"node": None}}


async def test_malformed_and_unknown_ids_read_as_null(app_client):
    agency = await make_agency(app_client)
    unknown = base64.urlsafe_b64encode(f"SubAccount:{uuid.uuid4()}".encode()).decode()
    wrong_type = base64.urlsafe_b64encode(f"Invoice:{uuid.uuid4()}".encode()).decode()
    for bad in ("", "not base64 at all!", "Zm9v", unknown, wrong_type):
        assert (await gql(app_client, NODE, {"id": bad}, agency.token)) == {"data": {"node": None}}


async def test_node_needs_a_signed_in_viewer(app_client):
    agency = await make_agency(app_client)
    (_, agency_id, _) = await ids_of(app_client, agency)
    body = await gql(app_client, NODE, {"id": agency_id})
    assert body["data"] == {"node": None}
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
