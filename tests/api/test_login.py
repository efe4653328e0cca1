from datetime import timedelta

from tests.factories import PASSWORD, gql, make_agency

LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(input: {email: $email, password: $password}) {
    token user { email role } userErrors { code message }
  }
}
"""
LOGOUT = "mutation { logout { revoked userErrors { code } } }"
WHO = "{ viewer { user { email } } }"


async def test_login_returns_a_token_that_identifies_the_user(app_client):
    agency = await make_agency(app_client)
    payload = (await gql(app_client, LOGIN, {"email": agency.email.upper(), "password": PASSWORD}))[
        "data"
    ]["login"]
    assert payload["userErrors"] == []
    assert payload["user"] == {"email": agency.email, "role": "AGENCY_OWNER"}
    who = await gql(app_client, WHO, token=payload["token"])
    assert who["data"]["viewer"]["user"]["email"] == agency.email


async def test_wrong_password_and_unknown_email_get_the_same_answer(app_client):
    agency = await make_agency(app_client)
    wrong = (await gql(app_client, LOGIN, {"email": agency.email, "password": "nope-nope-nope"}))[
        "data"
    ]["login"]
    unknown = (await gql(app_client, LOGIN, {"email": "ghost@x.example", "password": PASSWORD}))[
        "data"
    ]["login"]
    assert (
        wrong
        == unknown
        == {
            "token": None,
            "user": None,
            "userErrors": [{"code": "INVALID_CREDENTIALS", "message": "Wrong email or password."}],
        }
    )


async def test_logout_revokes_the_token_on_the_next_request(app_client):
    agency = await make_agency(app_client)
    assert (await gql(app_client, LOGOUT, token=agency.token))["data"]["logout"]["revoked"]
    body = await gql(app_client, WHO, token=agency.token)
    assert body["data"]["viewer"] is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_an_expired_token_is_refused(app_client):
    agency = await make_agency(app_client)
    clock = app_client.app.state.services.clock
    clock.advance(timedelta(days=15))  # sessions last 14 days
    body = await gql(app_client, WHO, token=agency.token)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "expired" in body["errors"][0]["message"]


async def test_a_forged_token_is_refused_without_detail(app_client):
    await make_agency(app_client)
    body = await gql(app_client, WHO, token="ahs_" + "A" * 43)
    assert body == {
        "data": {"viewer": None},
        "errors": [
            {
                "message": "The token is invalid, expired or revoked; sign in again.",
                "locations": [{"line": 1, "column": 3}],
                "path": ["viewer"],
                "extensions": {"code": "UNAUTHENTICATED"},
            }
        ],
    }


async def test_no_token_is_unauthenticated(app_client):
    body = await gql(app_client, WHO)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert (await gql(app_client, LOGOUT))["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
