"""The audit log: every change through the API and every sign-in leaves one line saying who did
what to which object; owners and agency admins page it newest first, filter it by kind, and
watch the same lines live."""

from __future__ import annotations

import asyncio

import pytest

from domain.events import agency_topic
from resolvers.api_keys import issue_api_key
from resolvers.context import RequestContext
from resolvers.global_id import from_global_id, to_global_id
from schema import build_schema
from tests.api.test_account_manager import make_activity, new_client, transfer_input
from tests.api.test_team import NEW_PASSWORD, invite, join, mail_dir
from tests.factories import PASSWORD, gql, make_agency
from tests.mailbox import latest_token_for
from tests.world import ACTORS, build_world

LOG = """query($first: Int, $after: String, $kinds: [AuditKind!]) { viewer { agency {
  auditLog(first: $first, after: $after, kinds: $kinds) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { sequence kind occurredAt email subjectId summary } } } } } }"""
NODE = "query($id: ID!) { node(id: $id) { __typename id } }"
WHO = "{ viewer { user { id } } }"
LIVE = "subscription { auditEvents { sequence kind occurredAt email subjectId summary } }"

LOGIN = """mutation($email: String!, $password: String!) {
  login(input: {email: $email, password: $password}) { token userErrors { code } } }"""
LOGOUT = "mutation { logout { revoked userErrors { code } } }"
UPDATE_AGENCY = """mutation($i: UpdateAgencyInput!) { updateAgency(input: $i) {
  agency { id } userErrors { code } } }"""
RESEND = """mutation($id: ID!) { resendInvitation(input: {id: $id}) { userErrors { code } } }"""
REVOKE_INVITATION = """mutation($id: ID!) { revokeInvitation(input: {id: $id}) {
  userErrors { code } } }"""
ACCEPT = """mutation($token: String!, $password: String!) {
  acceptInvitation(input: {token: $token, password: $password}) {
    user { id } userErrors { code } } }"""
CHANGE_ROLE = """mutation($i: ChangeUserRoleInput!) { changeUserRole(input: $i) {
  userErrors { code } } }"""
REMOVE_USER = """mutation($id: ID!) { removeUser(input: {userId: $id}) { userErrors { code } } }"""
HAND_OVER = """mutation($id: ID!) { transferOwnership(input: {toUserId: $id}) {
  userErrors { code } } }"""
CREATE_KEY = """mutation($name: String!) { createApiKey(input: {name: $name}) {
  apiKey { id } userErrors { code } } }"""
REVOKE_KEY = """mutation($id: ID!) { revokeApiKey(input: {id: $id}) { userErrors { code } } }"""
UPDATE = """mutation($i: UpdateSubAccountInput!) { updateSubAccount(input: $i) {
  userErrors { code } } }"""
SUSPEND = """mutation($id: ID!, $note: String) { suspendSubAccount(input: {id: $id, note: $note}) {
  userErrors { code } } }"""
RESTORE = """mutation($id: ID!) { restoreSubAccount(input: {id: $id}) { userErrors { code } } }"""
REMOVE = """mutation($id: ID!, $to: ID!) { removeSubAccount(input: {id: $id, minutesToId: $to}) {
  userErrors { code } } }"""
TRANSFER = """mutation($i: TransferMinutesInput!) { transferMinutes(input: $i) {
  transfer { id } userErrors { code } } }"""
CREDITS = """mutation($i: TransferKnowledgePackCreditsInput!) { transferKnowledgePackCredits(
  input: $i) { userErrors { code } } }"""
SOURCE = """mutation($id: ID!) { setBalanceSource(input: {id: $id, source: AGENCY}) {
  userErrors { code } } }"""
ALLOCATE = """mutation($i: SetAutoAllocationInput!) { setAutoAllocation(input: $i) {
  userErrors { code } } }"""
SET_STATUS = """mutation($id: ID!, $s: ActivityStatus!) { setActivityStatus(input: {id: $id,
  status: $s}) { userErrors { code } } }"""


async def audit_log(client, token, **variables):
    body = await gql(client, LOG, variables, token)
    assert "errors" not in body, body
    return body["data"]["viewer"]["agency"]["auditLog"]


async def newest(client, token):
    [edge] = (await audit_log(client, token, first=1))["edges"]
    return edge["node"]


async def subject(client, token, entry):
    """The entry's subject as `node(id:)` reads it: (global ID, its type), or (global ID,
    None) for what no longer exists."""
    node = (await gql(client, NODE, {"id": entry["subjectId"]}, token))["data"]["node"]
    assert node is None or node["id"] == entry["subjectId"]
    return entry["subjectId"], None if node is None else node["__typename"]


async def succeeds(client, query, variables, token, field):
    body = await gql(client, query, variables, token)
    payload = body["data"][field]
    assert payload["userErrors"] == [], body
    return payload


async def user_id(client, token):
    return (await gql(client, WHO, token=token))["data"]["viewer"]["user"]["id"]


async def logged_in(client, email, password=PASSWORD):
    body = await gql(client, LOGIN, {"email": email, "password": password})
    return body["data"]["login"]["token"]


# ---- every kind of change says who did what to which object -----------------------------------


async def test_sign_up_is_logged_by_the_new_owner_on_the_agency(app_client):
    # when an agency signs up
    owner = await make_agency(app_client, name="Acme Voice")
    # then its log starts with the sign-up, by the owner
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "AGENCY_SIGNED_UP"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (owner.id, "Agency")
    assert entry["summary"] == "signed up Acme Voice on the Agency Lite plan"


async def test_a_sign_in_names_the_user_signing_in(app_client):
    # given a member of the team
    owner = await make_agency(app_client)
    member_id, _ = await join(app_client, owner.token, "member@team.example", "AGENCY_MEMBER")
    # when the member signs in
    assert await logged_in(app_client, "member@team.example", NEW_PASSWORD)
    # then the owner reads the member's sign-in, on the member
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "USER_SIGNED_IN"
    assert entry["email"] == "member@team.example"
    assert await subject(app_client, owner.token, entry) == (member_id, "User")
    assert entry["summary"] == "member@team.example signed in"


async def test_a_failed_sign_in_is_logged_and_an_unknown_email_is_not(app_client):
    # given a member of the team
    owner = await make_agency(app_client)
    member_id, _ = await join(app_client, owner.token, "member@team.example", "AGENCY_MEMBER")
    # when someone tries the member's email with a wrong password
    assert await logged_in(app_client, "member@team.example", "not-the-password") is None
    # then it is logged on the member
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "SIGN_IN_FAILED"
    assert entry["email"] == "member@team.example"
    assert await subject(app_client, owner.token, entry) == (member_id, "User")
    assert entry["summary"] == "a sign-in as member@team.example failed"
    # and an email nobody has is in no agency's log
    before = (await audit_log(app_client, owner.token))["totalCount"]
    assert await logged_in(app_client, "ghost@team.example") is None
    assert (await audit_log(app_client, owner.token))["totalCount"] == before


async def test_sign_out_is_logged(app_client):
    # given the owner signed in a second time
    owner = await make_agency(app_client)
    second = await logged_in(app_client, owner.email)
    # when that session signs out
    assert (await gql(app_client, LOGOUT, token=second))["data"]["logout"]["revoked"] is True
    # then
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "USER_SIGNED_OUT"
    assert entry["email"] == owner.email
    owner_id = await user_id(app_client, owner.token)
    assert await subject(app_client, owner.token, entry) == (owner_id, "User")
    assert entry["summary"] == f"{owner.email} signed out"


async def test_an_agency_update_says_what_was_set(app_client):
    owner = await make_agency(app_client, name="Old Name")
    # when the owner renames the agency and sets its time zone
    await succeeds(
        app_client,
        UPDATE_AGENCY,
        {"i": {"name": "New Name", "timeZone": "Europe/Paris"}},
        owner.token,
        "updateAgency",
    )
    # then
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "AGENCY_UPDATED"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (owner.id, "Agency")
    assert entry["summary"] == "set the agency's name to New Name, time zone to Europe/Paris"


async def test_an_invitation_is_logged_on_the_invitation(app_client):
    owner = await make_agency(app_client)
    # when the owner invites an admin
    sent = await invite(app_client, owner.token, "new.admin@team.example")
    # then
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "USER_INVITED"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (sent["invitation"]["id"], "Invitation")
    assert entry["summary"] == "invited new.admin@team.example as AGENCY_ADMIN"


async def test_a_resent_invitation_is_logged(app_client):
    owner = await make_agency(app_client)
    sent = await invite(app_client, owner.token, "twice@team.example", "AGENCY_MEMBER")
    # when the owner sends a new link
    await succeeds(
        app_client, RESEND, {"id": sent["invitation"]["id"]}, owner.token, "resendInvitation"
    )
    # then
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "INVITATION_RESENT"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (sent["invitation"]["id"], "Invitation")
    assert entry["summary"] == "sent a new invitation link to twice@team.example"


async def test_a_revoked_invitation_is_logged(app_client):
    owner = await make_agency(app_client)
    sent = await invite(app_client, owner.token, "revoked@team.example")
    # when the owner revokes it
    await succeeds(
        app_client,
        REVOKE_INVITATION,
        {"id": sent["invitation"]["id"]},
        owner.token,
        "revokeInvitation",
    )
    # then the invitation, still readable, is the subject
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "INVITATION_REVOKED"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (sent["invitation"]["id"], "Invitation")
    assert entry["summary"] == "revoked the invitation of revoked@team.example"


async def test_an_accepted_invitation_is_logged_by_the_new_user(app_client):
    owner = await make_agency(app_client)
    await invite(app_client, owner.token, "joiner@team.example", "AGENCY_MEMBER")
    secret = latest_token_for(mail_dir(app_client), "joiner@team.example")
    # when the invitee accepts
    accepted = await succeeds(
        app_client,
        ACCEPT,
        {"token": secret, "password": NEW_PASSWORD},
        None,
        "acceptInvitation",
    )
    # then the new user did it, to themself
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "INVITATION_ACCEPTED"
    assert entry["email"] == "joiner@team.example"
    assert await subject(app_client, owner.token, entry) == (accepted["user"]["id"], "User")
    assert entry["summary"] == (
        "joiner@team.example accepted the invitation and joined as AGENCY_MEMBER"
    )


async def test_a_role_change_says_from_what_to_what(app_client):
    owner = await make_agency(app_client)
    member_id, _ = await join(app_client, owner.token, "admin@team.example", "AGENCY_ADMIN")
    # when the owner makes the admin a member
    await succeeds(
        app_client,
        CHANGE_ROLE,
        {"i": {"userId": member_id, "role": "AGENCY_MEMBER"}},
        owner.token,
        "changeUserRole",
    )
    # then
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "USER_ROLE_CHANGED"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (member_id, "User")
    assert entry["summary"] == (
        "changed the role of admin@team.example from AGENCY_ADMIN to AGENCY_MEMBER"
    )


async def test_a_user_removal_is_logged_on_the_removed_user(app_client):
    owner = await make_agency(app_client)
    leaver_id, _ = await join(app_client, owner.token, "leaver@team.example", "AGENCY_MEMBER")
    # when the owner removes them
    await succeeds(app_client, REMOVE_USER, {"id": leaver_id}, owner.token, "removeUser")
    # then the entry names them (the user itself is gone)
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "USER_REMOVED"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (leaver_id, None)
    assert entry["summary"] == "removed leaver@team.example from the team"


async def test_an_ownership_transfer_is_logged(app_client):
    owner = await make_agency(app_client)
    heir_id, heir_token = await join(app_client, owner.token, "heir@team.example")
    # when the owner hands the agency over
    await succeeds(app_client, HAND_OVER, {"id": heir_id}, owner.token, "transferOwnership")
    # then the new owner reads that the old one did it
    entry = await newest(app_client, heir_token)
    assert entry["kind"] == "OWNERSHIP_TRANSFERRED"
    assert entry["email"] == owner.email
    assert await subject(app_client, heir_token, entry) == (heir_id, "User")
    assert entry["summary"] == "handed the agency's ownership to heir@team.example"


async def test_an_api_key_is_logged_when_created_and_when_revoked(app_client):
    owner = await make_agency(app_client)
    # when the owner creates a key
    created = await succeeds(
        app_client, CREATE_KEY, {"name": "Voice platform"}, owner.token, "createApiKey"
    )
    key_id = created["apiKey"]["id"]
    # then
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "API_KEY_CREATED"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (key_id, "ApiKey")
    assert entry["summary"] == "created the API key 'Voice platform'"
    # when the owner revokes it
    await succeeds(app_client, REVOKE_KEY, {"id": key_id}, owner.token, "revokeApiKey")
    # then the entry names the key, which no longer resolves
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "API_KEY_REVOKED"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (key_id, None)
    assert entry["summary"] == "revoked the API key 'Voice platform'"


async def test_an_api_key_from_the_command_line_is_logged_without_a_user(app_client):
    owner = await make_agency(app_client)
    services = app_client.app.state.services
    # when the command line issues a key (no user is signed in there)
    key, _ = await issue_api_key(services, from_global_id(owner.id)[1], "platform", None)
    # then
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "API_KEY_CREATED"
    assert entry["email"] is None
    key_id = to_global_id("ApiKey", key.id)
    assert await subject(app_client, owner.token, entry) == (key_id, "ApiKey")
    assert entry["summary"] == "created the API key 'platform' from the command line"


async def test_a_new_sub_account_is_logged(app_client):
    owner = await make_agency(app_client)
    # when the owner adds a client
    client_id = await new_client(app_client, owner, "Acme Dental", "front@acme.example")
    # then
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "SUBACCOUNT_CREATED"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (client_id, "SubAccount")
    assert entry["summary"] == "created the sub-account Acme Dental (login front@acme.example)"


async def test_a_sub_account_update_says_what_changed(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner, "Acme", markup="25")
    # when the owner renames it, changes its login and its markup
    await succeeds(
        app_client,
        UPDATE,
        {
            "i": {
                "id": client_id,
                "name": "Acme Dental",
                "loginEmail": "new@acme.example",
                "markupPercent": "12.5",
            }
        },
        owner.token,
        "updateSubAccount",
    )
    # then
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "SUBACCOUNT_UPDATED"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (client_id, "SubAccount")
    assert entry["summary"] == (
        "updated Acme: name to Acme Dental, login email to new@acme.example, "
        "markup to 12.50 % BASIC and 12.50 % PREMIUM"
    )


async def test_an_update_that_changes_nothing_is_not_logged(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner, "Acme", markup="25")
    before = await audit_log(app_client, owner.token)
    # when the owner saves the same name
    await succeeds(
        app_client,
        UPDATE,
        {"i": {"id": client_id, "name": "Acme"}},
        owner.token,
        "updateSubAccount",
    )
    # then the log is as it was
    assert await audit_log(app_client, owner.token) == before


async def test_suspension_and_restore_are_logged(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner, "Acme")
    # when the owner suspends the client with a note
    await succeeds(
        app_client,
        SUSPEND,
        {"id": client_id, "note": "Invoice 30+ days"},
        owner.token,
        "suspendSubAccount",
    )
    # then
    suspended = await newest(app_client, owner.token)
    assert suspended["kind"] == "SUBACCOUNT_SUSPENDED"
    assert suspended["email"] == owner.email
    assert await subject(app_client, owner.token, suspended) == (client_id, "SubAccount")
    assert suspended["summary"] == "suspended Acme (note: Invoice 30+ days)"
    # when the owner restores it
    await succeeds(app_client, RESTORE, {"id": client_id}, owner.token, "restoreSubAccount")
    # then
    restored = await newest(app_client, owner.token)
    assert restored["kind"] == "SUBACCOUNT_RESTORED"
    assert restored["email"] == owner.email
    assert await subject(app_client, owner.token, restored) == (client_id, "SubAccount")
    assert restored["summary"] == "restored Acme"


async def test_a_removal_says_where_the_minutes_went(app_client):
    owner = await make_agency(app_client, name="Acme Agency")
    client_id = await new_client(app_client, owner, "Leaving Co", markup="0")
    await succeeds(
        app_client,
        TRANSFER,
        transfer_input(owner.primary_id, client_id, "20"),
        owner.token,
        "transferMinutes",
    )
    # when the owner removes the client, its minutes to the primary
    await succeeds(
        app_client,
        REMOVE,
        {"id": client_id, "to": owner.primary_id},
        owner.token,
        "removeSubAccount",
    )
    # then the removed client, still readable to admins, is the subject
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "SUBACCOUNT_REMOVED"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (client_id, "SubAccount")
    assert entry["summary"] == ("removed Leaving Co; its 20 PREMIUM minutes went to Acme Agency")


async def test_a_minutes_transfer_names_both_accounts_and_the_amounts(app_client):
    owner = await make_agency(app_client, name="Acme Agency")
    client_id = await new_client(app_client, owner, "Beta", markup="25")
    # when the owner moves 10 PREMIUM minutes to a client priced 25 % higher
    await succeeds(
        app_client,
        TRANSFER,
        transfer_input(owner.primary_id, client_id, "10"),
        owner.token,
        "transferMinutes",
    )
    # then
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "MINUTES_TRANSFERRED"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (owner.primary_id, "SubAccount")
    assert entry["summary"] == (
        "moved 10 PREMIUM minutes from Acme Agency to Beta (arrived as 8 minutes)"
    )


async def test_a_transfer_of_part_of_a_minute_shows_the_seconds(app_client):
    owner = await make_agency(app_client, name="Acme Agency")
    client_id = await new_client(app_client, owner, "Beta", markup="0")
    # when the owner moves a minute and a half
    await succeeds(
        app_client,
        TRANSFER,
        transfer_input(owner.primary_id, client_id, "1.5"),
        owner.token,
        "transferMinutes",
    )
    # then
    entry = await newest(app_client, owner.token)
    assert entry["summary"] == (
        "moved 1 min 30 s of PREMIUM from Acme Agency to Beta (arrived as 1 min 30 s)"
    )


async def test_a_credits_transfer_is_logged_on_the_secondary(app_client):
    owner = await make_agency(app_client, name="Acme Agency")
    client_id = await new_client(app_client, owner, "Beta")
    # when the owner moves 3 Knowledge Pack credits to the client
    await succeeds(
        app_client,
        CREDITS,
        {"i": {"fromId": owner.primary_id, "toId": client_id, "credits": 3}},
        owner.token,
        "transferKnowledgePackCredits",
    )
    # then
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "CREDITS_TRANSFERRED"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (client_id, "SubAccount")
    assert entry["summary"] == "moved 3 Knowledge Pack credits from Acme Agency to Beta"


async def test_a_balance_source_change_is_logged(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner, "Beta")
    # when the agency starts paying for the client's calls
    await succeeds(app_client, SOURCE, {"id": client_id}, owner.token, "setBalanceSource")
    # then
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "BALANCE_SOURCE_CHANGED"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (client_id, "SubAccount")
    assert entry["summary"] == "Beta now pays for its calls from the agency"


async def test_auto_allocation_changes_are_logged(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner, "Beta")
    allocation = {"subAccountId": client_id, "enabled": True, "basicMinutes": 100}
    # when the owner turns it on
    await succeeds(
        app_client,
        ALLOCATE,
        {"i": {**allocation, "premiumMinutes": 50}},
        owner.token,
        "setAutoAllocation",
    )
    # then
    entry = await newest(app_client, owner.token)
    assert entry["kind"] == "AUTO_ALLOCATION_CHANGED"
    assert entry["email"] == owner.email
    assert await subject(app_client, owner.token, entry) == (client_id, "SubAccount")
    assert entry["summary"] == (
        "set the auto allocation of Beta to 100 BASIC and 50 PREMIUM minutes a month"
    )
    # when the owner turns it off
    await succeeds(
        app_client,
        ALLOCATE,
        {"i": {**allocation, "enabled": False, "premiumMinutes": 50}},
        owner.token,
        "setAutoAllocation",
    )
    # then
    assert (await newest(app_client, owner.token))["summary"] == (
        "turned the auto allocation of Beta off"
    )


async def test_activities_are_logged_when_created_and_switched(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner, "Beta")
    # when the owner creates a campaign
    campaign_id = await make_activity(app_client, owner, client_id, "CAMPAIGN", "Spring promo")
    # then
    created = await newest(app_client, owner.token)
    assert created["kind"] == "ACTIVITY_CREATED"
    assert created["email"] == owner.email
    assert await subject(app_client, owner.token, created) == (campaign_id, "Campaign")
    assert created["summary"] == "created the campaign Spring promo in Beta"
    # when the owner pauses it
    await succeeds(
        app_client,
        SET_STATUS,
        {"id": campaign_id, "s": "PAUSED"},
        owner.token,
        "setActivityStatus",
    )
    # then
    switched = await newest(app_client, owner.token)
    assert switched["kind"] == "ACTIVITY_STATUS_CHANGED"
    assert switched["email"] == owner.email
    assert await subject(app_client, owner.token, switched) == (campaign_id, "Campaign")
    assert switched["summary"] == "set the campaign Spring promo in Beta to PAUSED"


# ---- reading the log -----------------------------------------------------------------------------


async def test_the_log_pages_newest_first_with_a_total(app_client):
    # given an agency with five entries: the sign-up and four clients
    owner = await make_agency(app_client, name="Paging Co")
    for n in range(4):
        await new_client(app_client, owner, f"Client {n}")
    # when the owner reads it two at a time
    first = await audit_log(app_client, owner.token, first=2)
    second = await audit_log(app_client, owner.token, first=2, after=first["pageInfo"]["endCursor"])
    third = await audit_log(app_client, owner.token, first=2, after=second["pageInfo"]["endCursor"])
    # then the pages run from the newest change to the sign-up, each line once
    pages = [first, second, third]
    summaries = [[e["node"]["summary"] for e in page["edges"]] for page in pages]
    assert summaries == [
        ["created the sub-account Client 3 (login client.3@clients.example)",
         "created the sub-account Client 2 (login client.2@clients.example)"],
        ["created the sub-account Client 1 (login client.1@clients.example)",
         "created the sub-account Client 0 (login client.0@clients.example)"],
        ["signed up Paging Co on the Agency Lite plan"],
    ]  # fmt: skip
    assert [page["pageInfo"]["hasNextPage"] for page in pages] == [True, True, False]
    assert [page["totalCount"] for page in pages] == [5, 5, 5]
    sequences = [int(e["node"]["sequence"]) for page in pages for e in page["edges"]]
    assert sequences == sorted(sequences, reverse=True)
    assert first["pageInfo"]["endCursor"] == first["edges"][-1]["cursor"]


async def test_the_log_filters_by_kind(app_client):
    # given sub-accounts created, one suspended, and a sign-in
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner, "Acme")
    await new_client(app_client, owner, "Beta")
    await gql(app_client, SUSPEND, {"id": client_id}, owner.token)
    await logged_in(app_client, owner.email)
    # when the owner asks for creations and suspensions only
    log = await audit_log(
        app_client, owner.token, kinds=["SUBACCOUNT_CREATED", "SUBACCOUNT_SUSPENDED"]
    )
    # then exactly those, newest first, and the total counts only them
    assert [e["node"]["kind"] for e in log["edges"]] == [
        "SUBACCOUNT_SUSPENDED",
        "SUBACCOUNT_CREATED",
        "SUBACCOUNT_CREATED",
    ]
    assert log["totalCount"] == 3
    assert (await audit_log(app_client, owner.token, kinds=["USER_REMOVED"]))["edges"] == []
    # and an empty filter is no filter
    assert (await audit_log(app_client, owner.token, kinds=[]))["totalCount"] == 5


@pytest.mark.parametrize("cursor", ["garbage", "YXVkaXR8bm9wZQ==", "MjAyNi0wMS0wMXx4"])
async def test_a_bad_cursor_is_refused_with_a_clear_error(app_client, cursor):
    # given cursors that are not base64, "audit|nope", and another list's kind of cursor
    owner = await make_agency(app_client)
    # when the owner pages after one
    body = await gql(app_client, LOG, {"after": cursor}, owner.token)
    # then
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT"
    assert error["message"] == "That cursor is not valid."
    assert error["path"] == ["viewer", "agency", "auditLog"]


async def test_owners_and_agency_admins_read_the_log_and_no_one_else(app_client):
    # given an agency with a user of every role, and an outsider agency
    world = await build_world(app_client.app.state.services)
    answers = {}
    # when each of them reads their agency's log
    for actor in ACTORS:
        body = await gql(app_client, LOG, {}, world.tokens[actor])
        answers[actor] = (
            body["errors"][0]["extensions"]["code"]
            if "errors" in body
            else body["data"]["viewer"]["agency"]["auditLog"]["totalCount"]
        )
    # then (the world is built without the API: its agencies have empty logs)
    assert answers == {
        "AGENCY_OWNER": 0,
        "AGENCY_ADMIN": 0,
        "AGENCY_MEMBER": "FORBIDDEN",
        "SUBACCOUNT_ADMIN": "FORBIDDEN",
        "SUBACCOUNT_MEMBER": "FORBIDDEN",
        "OUTSIDER": 0,
        "ANONYMOUS": "UNAUTHENTICATED",
    }


async def test_the_live_feed_refuses_the_roles_that_may_not_read_the_log(app_client):
    world = await build_world(app_client.app.state.services)
    schema = build_schema()
    for actor in ("AGENCY_MEMBER", "SUBACCOUNT_ADMIN", "SUBACCOUNT_MEMBER"):
        stream = await open_feed(schema, app_client, world.tokens[actor])
        result = await asyncio.wait_for(anext(stream), 10)
        assert result.errors[0].extensions["code"] == "FORBIDDEN", actor
        await stream.aclose()


async def test_another_agencys_entries_never_show(app_client):
    # given two agencies, each changing things
    ours = await make_agency(app_client)
    theirs = await make_agency(app_client)
    await new_client(app_client, ours, "Ours")
    await new_client(app_client, theirs, "Theirs", "theirs@clients.example")
    await logged_in(app_client, theirs.email)
    # when each owner reads the log
    our_log = await audit_log(app_client, ours.token)
    their_log = await audit_log(app_client, theirs.token)
    # then each sees its own entries only
    assert {e["node"]["email"] for e in our_log["edges"]} == {ours.email}
    assert {e["node"]["email"] for e in their_log["edges"]} == {theirs.email}
    assert (our_log["totalCount"], their_log["totalCount"]) == (2, 3)
    # and their agency's log is not reachable through node(id:)
    foreign = "query($id: ID!) { node(id: $id) { ... on Agency { auditLog { totalCount } } } }"
    assert (await gql(app_client, foreign, {"id": theirs.id}, ours.token))["data"]["node"] is None


# ---- live, failures and replays --------------------------------------------------------------


async def open_feed(schema, client, token):
    context = RequestContext(client.app.state.services, None, long_lived=True)
    context.connection_params = {"authorization": f"Bearer {token}"}
    return await schema.subscribe(LIVE, context_value=context)


async def watching(client, owner):
    """Until the stream has subscribed: an entry relayed before would not reach it (the feed
    has no afterSequence to resume from)."""
    fanout = client.app.state.services.broker._fanout
    topic = agency_topic(from_global_id(owner.id)[1])
    for _ in range(1000):
        if fanout.subscribers(topic):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the feed never subscribed")


async def first_after(stream, sequence):
    """The first entry the feed delivers past `sequence` (the sign-up's own entry may still be
    on its way through the relay when the feed opens)."""
    async for result in stream:
        assert result.errors is None, result.errors
        entry = result.data["auditEvents"]
        if int(entry["sequence"]) > int(sequence):
            return entry
    raise AssertionError("the feed ended")


async def test_the_live_feed_delivers_the_entry_the_log_shows(app_client):
    # given the owner watching the feed
    owner = await make_agency(app_client)
    signed_up = await newest(app_client, owner.token)
    stream = await open_feed(build_schema(), app_client, owner.token)
    waiting = asyncio.ensure_future(
        asyncio.wait_for(first_after(stream, signed_up["sequence"]), 10)
    )
    await watching(app_client, owner)
    # when a change is made
    await new_client(app_client, owner, "Live Co")
    # then the feed and the log show one and the same entry
    live = await waiting
    logged = await newest(app_client, owner.token)
    assert live == logged
    assert live["kind"] == "SUBACCOUNT_CREATED" and "Live Co" in live["summary"]
    await stream.aclose()


async def test_a_failed_mutation_writes_no_entry(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner)
    before = await audit_log(app_client, owner.token)
    # when a transfer asks for more minutes than the primary holds
    body = await gql(
        app_client, TRANSFER, transfer_input(owner.primary_id, client_id, "501"), owner.token
    )
    # then it is refused and the log is as it was
    assert body["data"]["transferMinutes"]["userErrors"] == [{"code": "INSUFFICIENT_MINUTES"}]
    assert await audit_log(app_client, owner.token) == before


async def test_a_replayed_transfer_writes_no_second_entry(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner)
    request = transfer_input(owner.primary_id, client_id, "5", key="once")
    await succeeds(app_client, TRANSFER, request, owner.token, "transferMinutes")
    after_first = await audit_log(app_client, owner.token)
    # when the client retries with the same key
    await succeeds(app_client, TRANSFER, request, owner.token, "transferMinutes")
    # then the log holds the first transfer only
    assert await audit_log(app_client, owner.token) == after_first
    assert after_first["edges"][0]["node"]["kind"] == "MINUTES_TRANSFERRED"


async def test_a_replayed_credits_transfer_writes_no_second_entry(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner)
    request = {"i": {"fromId": owner.primary_id, "toId": client_id, "credits": 1}}
    request["i"]["idempotencyKey"] = "once"
    await succeeds(app_client, CREDITS, request, owner.token, "transferKnowledgePackCredits")
    after_first = await audit_log(app_client, owner.token)
    # when the client retries with the same key
    await succeeds(app_client, CREDITS, request, owner.token, "transferKnowledgePackCredits")
    # then
    assert await audit_log(app_client, owner.token) == after_first
    assert after_first["edges"][0]["node"]["kind"] == "CREDITS_TRANSFERRED"
