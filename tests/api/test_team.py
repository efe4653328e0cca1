"""The Users tab end to end: invitations through real mail, role changes, removal, ownership,
brute-force protection and API keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest

from agencyhub.app import create_app
from tests.conftest import Clock, make_settings
from tests.factories import PASSWORD, gql, make_agency
from tests.mailbox import Collector, invitation_link, latest_token_for, serve

INVITE = """mutation($i: InviteUserInput!) { inviteUser(input: $i) {
  invitation { id email role expiresAt accepted revoked } userErrors { code field } } }"""
RESEND = """mutation($id: ID!) { resendInvitation(input: {id: $id}) {
  invitation { id expiresAt } userErrors { code } } }"""
REVOKE = """mutation($id: ID!) { revokeInvitation(input: {id: $id}) {
  invitation { revoked } userErrors { code } } }"""
ACCEPT = """mutation($token: String!, $password: String!) {
  acceptInvitation(input: {token: $token, password: $password}) {
    token user { id email role allSubAccounts } userErrors { code } } }"""
LOGIN = """mutation($email: String!, $password: String!) {
  login(input: {email: $email, password: $password}) { token userErrors { code message } } }"""
USERS = """query($first: Int, $after: String) { viewer { agency {
  users(first: $first, after: $after) { edges { cursor node { id email role } }
                                        pageInfo { hasNextPage endCursor } } } } }"""
PENDING = """{ viewer { agency { invitations(pendingOnly: true) {
  edges { node { email } } } } } }"""
CHANGE_ROLE = """mutation($i: ChangeUserRoleInput!) { changeUserRole(input: $i) {
  user { role } userErrors { code field } } }"""
REMOVE = """mutation($id: ID!) { removeUser(input: {userId: $id}) {
  user { email } userErrors { code } } }"""
TRANSFER = """mutation($id: ID!) { transferOwnership(input: {toUserId: $id}) {
  user { role } userErrors { code } } }"""
WHO = "{ viewer { user { id email role } } }"
NEW_PASSWORD = "a-brand-new-secret"


def mail_dir(client: httpx.AsyncClient):
    return client.app.state.services.mailer.directory


async def invite(client, token, email, role="AGENCY_ADMIN", **extra):
    variables = {"i": {"email": email, "role": role, **extra}}
    return (await gql(client, INVITE, variables, token))["data"]["inviteUser"]


async def join(client, owner_token, email, role="AGENCY_ADMIN", **extra) -> tuple[str, str]:
    """Invite, read the mail, accept: (user id, session token)."""
    sent = await invite(client, owner_token, email, role, **extra)
    assert sent["userErrors"] == [], sent
    secret = latest_token_for(mail_dir(client), email)
    accepted = (await gql(client, ACCEPT, {"token": secret, "password": NEW_PASSWORD}))["data"][
        "acceptInvitation"
    ]
    assert accepted["userErrors"] == [], accepted
    return accepted["user"]["id"], accepted["token"]


# ---- invitations through a real SMTP server --------------------------------------------------


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
def smtp_port(collector: Collector) -> Iterator[int]:
    yield from serve(collector)


@pytest.fixture
async def smtp_client(
    tmp_path, database_url, smtp_port, clock: Clock
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_path, database_url, mail_url=f"smtp://127.0.0.1:{smtp_port}")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.services.clock = clock
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def test_invitation_lifecycle_through_real_smtp(smtp_client, collector):
    # given an owner who invites an admin
    owner = await make_agency(smtp_client, name="Mailing Agency")
    sent = await invite(smtp_client, owner.token, "New.Admin@Team.example")
    assert sent["userErrors"] == []
    assert sent["invitation"]["email"] == "new.admin@team.example"
    # when the invitee reads the mail delivered over SMTP
    [mail] = collector.messages_to("new.admin@team.example")
    link, secret = invitation_link(mail)
    assert link.startswith("https://app.example/accept-invitation?token=ahi_")
    assert "Mailing Agency" in mail["Subject"]
    # and accepts with a password
    accepted = (await gql(smtp_client, ACCEPT, {"token": secret, "password": NEW_PASSWORD}))[
        "data"
    ]["acceptInvitation"]
    # then they are signed in, can log in again, and the secret is spent
    assert accepted["user"]["role"] == "AGENCY_ADMIN"
    me = await gql(smtp_client, WHO, token=accepted["token"])
    assert me["data"]["viewer"]["user"]["email"] == "new.admin@team.example"
    login = await gql(
        smtp_client, LOGIN, {"email": "new.admin@team.example", "password": NEW_PASSWORD}
    )
    assert login["data"]["login"]["token"]
    again = await gql(smtp_client, ACCEPT, {"token": secret, "password": NEW_PASSWORD})
    assert again["data"]["acceptInvitation"]["userErrors"] == [{"code": "INVITATION_USED"}]


async def test_resend_kills_the_old_link_and_the_new_one_works(smtp_client, collector):
    owner = await make_agency(smtp_client)
    sent = await invite(smtp_client, owner.token, "twice@team.example", "AGENCY_MEMBER")
    old_secret = invitation_link(collector.messages_to("twice@team.example")[0])[1]
    resent = await gql(smtp_client, RESEND, {"id": sent["invitation"]["id"]}, owner.token)
    assert resent["data"]["resendInvitation"]["userErrors"] == []
    new_secret = invitation_link(collector.messages_to("twice@team.example")[1])[1]
    stale = await gql(smtp_client, ACCEPT, {"token": old_secret, "password": NEW_PASSWORD})
    assert stale["data"]["acceptInvitation"]["userErrors"] == [{"code": "INVITATION_SUPERSEDED"}]
    fresh = await gql(smtp_client, ACCEPT, {"token": new_secret, "password": NEW_PASSWORD})
    assert fresh["data"]["acceptInvitation"]["user"]["role"] == "AGENCY_MEMBER"


async def test_mail_that_cannot_be_sent_keeps_the_invitation_and_says_so(tmp_path, database_url):
    settings = make_settings(tmp_path, database_url, mail_url="smtp://127.0.0.1:1")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            owner = await make_agency(client)
            sent = await invite(client, owner.token, "lost@team.example")
            pending = await gql(client, PENDING, token=owner.token)
    assert [e["code"] for e in sent["userErrors"]] == ["MAIL_NOT_SENT"]
    assert sent["invitation"]["email"] == "lost@team.example"
    edges = pending["data"]["viewer"]["agency"]["invitations"]["edges"]
    assert [e["node"]["email"] for e in edges] == ["lost@team.example"]


# ---- invitation rules (mail in the .eml folder) ----------------------------------------------


async def test_an_invitation_expires_after_seven_days(app_client, clock):
    owner = await make_agency(app_client)
    await invite(app_client, owner.token, "late@team.example")
    secret = latest_token_for(mail_dir(app_client), "late@team.example")
    clock.advance(timedelta(days=7, seconds=1))
    body = await gql(app_client, ACCEPT, {"token": secret, "password": NEW_PASSWORD})
    assert body["data"]["acceptInvitation"]["userErrors"] == [{"code": "INVITATION_EXPIRED"}]
    pending = await gql(app_client, PENDING, token=owner.token)
    assert pending["data"]["viewer"]["agency"]["invitations"]["edges"] == []


async def test_revoked_and_unknown_links_have_their_own_codes(app_client):
    owner = await make_agency(app_client)
    sent = await invite(app_client, owner.token, "revoked@team.example")
    secret = latest_token_for(mail_dir(app_client), "revoked@team.example")
    revoked = await gql(app_client, REVOKE, {"id": sent["invitation"]["id"]}, owner.token)
    assert revoked["data"]["revokeInvitation"]["invitation"]["revoked"] is True
    body = await gql(app_client, ACCEPT, {"token": secret, "password": NEW_PASSWORD})
    assert body["data"]["acceptInvitation"]["userErrors"] == [{"code": "INVITATION_REVOKED"}]
    unknown = await gql(app_client, ACCEPT, {"token": "ahi_nope", "password": NEW_PASSWORD})
    assert unknown["data"]["acceptInvitation"]["userErrors"] == [{"code": "INVITATION_NOT_FOUND"}]
    resend = await gql(app_client, RESEND, {"id": sent["invitation"]["id"]}, owner.token)
    assert resend["data"]["resendInvitation"]["userErrors"] == [{"code": "INVITATION_NOT_PENDING"}]


async def test_a_weak_password_is_refused_and_the_link_still_works(app_client):
    owner = await make_agency(app_client)
    await invite(app_client, owner.token, "weak@team.example")
    secret = latest_token_for(mail_dir(app_client), "weak@team.example")
    weak = await gql(app_client, ACCEPT, {"token": secret, "password": "short"})
    assert weak["data"]["acceptInvitation"]["userErrors"] == [{"code": "WEAK_PASSWORD"}]
    good = await gql(app_client, ACCEPT, {"token": secret, "password": NEW_PASSWORD})
    assert good["data"]["acceptInvitation"]["userErrors"] == []


async def test_invitation_input_rules(app_client):
    owner = await make_agency(app_client)
    other = await make_agency(app_client)
    other_primary = other.primary_id
    cases = [
        ({"email": owner.email, "role": "AGENCY_ADMIN"}, "EMAIL_TAKEN"),
        ({"email": "x@team.example", "role": "AGENCY_OWNER"}, "ROLE_NOT_ASSIGNABLE"),
        ({"email": "x@team.example", "role": "SUBACCOUNT_ADMIN"}, "SUBACCOUNTS_REQUIRED"),
        (
            {
                "email": "x@team.example",
                "role": "SUBACCOUNT_MEMBER",
                "subAccountIds": [other_primary],
            },
            "NOT_FOUND",
        ),
        ({"email": "not an email", "role": "AGENCY_ADMIN"}, "INVALID_EMAIL"),
    ]
    for variables, code in cases:
        body = await gql(app_client, INVITE, {"i": variables}, owner.token)
        assert [e["code"] for e in body["data"]["inviteUser"]["userErrors"]] == [code], variables
    await invite(app_client, owner.token, "pending@team.example")
    twice = await invite(app_client, other.token, "pending@team.example")
    assert [e["code"] for e in twice["userErrors"]] == ["EMAIL_TAKEN"]


async def test_a_subaccount_member_sees_only_granted_sub_accounts(app_client):
    owner = await make_agency(app_client)
    _, token = await join(
        app_client,
        owner.token,
        "client@team.example",
        "SUBACCOUNT_MEMBER",
        subAccountIds=[owner.primary_id],
    )
    me = await gql(app_client, "{ viewer { user { role subAccounts { id } } } }", token=token)
    assert me["data"]["viewer"]["user"] == {
        "role": "SUBACCOUNT_MEMBER",
        "subAccounts": [{"id": owner.primary_id}],
    }


# ---- managing users ----------------------------------------------------------------------------


async def test_users_are_listed_in_pages(app_client, clock):
    owner = await make_agency(app_client)
    for n in range(3):
        clock.advance(timedelta(seconds=1))  # pages are in joining order
        await join(app_client, owner.token, f"u{n}@team.example", "AGENCY_MEMBER")
    first = (await gql(app_client, USERS, {"first": 2}, owner.token))["data"]["viewer"]["agency"]
    page1 = first["users"]
    assert [e["node"]["email"] for e in page1["edges"]] == [owner.email, "u0@team.example"]
    assert page1["pageInfo"]["hasNextPage"] is True
    rest = await gql(
        app_client, USERS, {"first": 2, "after": page1["pageInfo"]["endCursor"]}, owner.token
    )
    page2 = rest["data"]["viewer"]["agency"]["users"]
    assert [e["node"]["email"] for e in page2["edges"]] == ["u1@team.example", "u2@team.example"]
    assert page2["pageInfo"]["hasNextPage"] is False
    too_many = await gql(app_client, USERS, {"first": 101}, owner.token)
    assert too_many["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    bad_cursor = await gql(app_client, USERS, {"after": "garbage"}, owner.token)
    assert bad_cursor["errors"][0]["extensions"]["code"] == "INVALID_INPUT"


async def test_a_role_change_takes_effect_on_the_next_request(app_client):
    owner = await make_agency(app_client)
    user_id, token = await join(app_client, owner.token, "admin@team.example", "AGENCY_ADMIN")
    assert "errors" not in await gql(app_client, USERS, token=token)
    changed = await gql(
        app_client,
        CHANGE_ROLE,
        {"i": {"userId": user_id, "role": "SUBACCOUNT_MEMBER", "allSubAccounts": True}},
        owner.token,
    )
    assert changed["data"]["changeUserRole"] == {
        "user": {"role": "SUBACCOUNT_MEMBER"},
        "userErrors": [],
    }
    refused = await gql(app_client, USERS, token=token)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_the_owners_role_cannot_be_changed_nor_the_owner_removed(app_client):
    owner = await make_agency(app_client)
    owner_id = (await gql(app_client, WHO, token=owner.token))["data"]["viewer"]["user"]["id"]
    _, admin_token = await join(app_client, owner.token, "admin@team.example")
    change = await gql(
        app_client, CHANGE_ROLE, {"i": {"userId": owner_id, "role": "AGENCY_MEMBER"}}, admin_token
    )
    assert change["data"]["changeUserRole"]["userErrors"][0]["code"] == "OWNER_ROLE_FIXED"
    remove = await gql(app_client, REMOVE, {"id": owner_id}, admin_token)
    assert remove["data"]["removeUser"]["userErrors"] == [{"code": "OWNER_NOT_REMOVABLE"}]


async def test_a_removed_user_is_signed_out_at_once_and_can_be_invited_again(app_client):
    owner = await make_agency(app_client)
    user_id, token = await join(app_client, owner.token, "leaver@team.example", "AGENCY_MEMBER")
    removed = await gql(app_client, REMOVE, {"id": user_id}, owner.token)
    assert removed["data"]["removeUser"] == {
        "user": {"email": "leaver@team.example"},
        "userErrors": [],
    }
    after = await gql(app_client, WHO, token=token)
    assert after["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    again = await invite(app_client, owner.token, "leaver@team.example")
    assert again["userErrors"] == []
    self_removal = await gql(
        app_client,
        REMOVE,
        {"id": (await gql(app_client, WHO, token=owner.token))["data"]["viewer"]["user"]["id"]},
        owner.token,
    )
    assert self_removal["data"]["removeUser"]["userErrors"] == [{"code": "OWNER_NOT_REMOVABLE"}]


async def test_ownership_moves_to_an_admin_and_there_is_always_one_owner(app_client):
    owner = await make_agency(app_client)
    admin_id, admin_token = await join(app_client, owner.token, "heir@team.example")
    member_id, _ = await join(app_client, owner.token, "m@team.example", "AGENCY_MEMBER")
    to_member = await gql(app_client, TRANSFER, {"id": member_id}, owner.token)
    assert to_member["data"]["transferOwnership"]["userErrors"] == [{"code": "TARGET_NOT_ADMIN"}]
    by_admin = await gql(app_client, TRANSFER, {"id": admin_id}, admin_token)
    assert by_admin["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    moved = await gql(app_client, TRANSFER, {"id": admin_id}, owner.token)
    assert moved["data"]["transferOwnership"] == {
        "user": {"role": "AGENCY_OWNER"},
        "userErrors": [],
    }
    roles = [
        e["node"]["role"]
        for e in (await gql(app_client, USERS, token=admin_token))["data"]["viewer"]["agency"][
            "users"
        ]["edges"]
    ]
    assert sorted(roles) == ["AGENCY_ADMIN", "AGENCY_MEMBER", "AGENCY_OWNER"]
    old_owner = await gql(app_client, WHO, token=owner.token)
    assert old_owner["data"]["viewer"]["user"]["role"] == "AGENCY_ADMIN"


# ---- brute force -------------------------------------------------------------------------------


async def test_repeated_failed_logins_are_refused_for_a_while(app_client, clock):
    owner = await make_agency(app_client)
    for _ in range(10):
        body = await gql(app_client, LOGIN, {"email": owner.email, "password": "wrong-guess-1"})
        assert body["data"]["login"]["userErrors"][0]["code"] == "INVALID_CREDENTIALS"
    # even the right password is refused now, without being checked
    blocked = await gql(app_client, LOGIN, {"email": owner.email, "password": PASSWORD})
    error = blocked["data"]["login"]["userErrors"][0]
    assert error["code"] == "TOO_MANY_ATTEMPTS" and "seconds" in error["message"]
    clock.advance(timedelta(minutes=15))
    allowed = await gql(app_client, LOGIN, {"email": owner.email, "password": PASSWORD})
    assert allowed["data"]["login"]["token"]


async def test_one_client_guessing_many_emails_is_refused_too(app_client):
    for n in range(100):
        await gql(app_client, LOGIN, {"email": f"guess{n}@x.example", "password": "nope-nope"})
    body = await gql(app_client, LOGIN, {"email": "guess-last@x.example", "password": "nope"})
    assert body["data"]["login"]["userErrors"][0]["code"] == "TOO_MANY_ATTEMPTS"


# ---- API keys ----------------------------------------------------------------------------------

CREATE_KEY = """mutation { createApiKey(input: {name: "Voice platform"}) {
  apiKey { id name } secret userErrors { code } } }"""
KEYS = "{ viewer { agency { apiKeys { edges { node { id name scopes } } } } } }"
REVOKE_KEY = """mutation($id: ID!) { revokeApiKey(input: {id: $id}) {
  revokedApiKeyId userErrors { code } } }"""


async def test_api_keys_are_shown_once_listed_and_revoked(app_client):
    owner = await make_agency(app_client)
    created = (await gql(app_client, CREATE_KEY, token=owner.token))["data"]["createApiKey"]
    assert created["secret"].startswith("ahk_")
    listed = (await gql(app_client, KEYS, token=owner.token))["data"]["viewer"]["agency"]
    assert [e["node"] for e in listed["apiKeys"]["edges"]] == [
        {"id": created["apiKey"]["id"], "name": "Voice platform", "scopes": ["ingest"]}
    ]
    # a key is no user session
    as_user = await gql(app_client, WHO, token=created["secret"])
    assert as_user["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    revoked = await gql(app_client, REVOKE_KEY, {"id": created["apiKey"]["id"]}, owner.token)
    assert revoked["data"]["revokeApiKey"]["userErrors"] == []
    listed = (await gql(app_client, KEYS, token=owner.token))["data"]["viewer"]["agency"]
    assert listed["apiKeys"]["edges"] == []
    twice = await gql(app_client, REVOKE_KEY, {"id": created["apiKey"]["id"]}, owner.token)
    assert twice["data"]["revokeApiKey"]["userErrors"] == [{"code": "NOT_FOUND"}]
