"""The Account Manager end to end: sub-accounts, prices, transfers, credits, suspension,
removal and the monthly jobs, through the API the dashboards use."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, select

from persistence import agencies
from persistence.ledger import mismatches
from persistence.outbox import outbox
from resolvers import jobs
from resolvers.global_id import from_global_id
from tests.factories import PASSWORD, gql, make_agency

UPDATE_AGENCY = """mutation($i: UpdateAgencyInput!) { updateAgency(input: $i) {
  userErrors { code } } }"""

CREATE = """mutation($i: CreateSubAccountInput!) { createSubAccount(input: $i) {
  subAccount { id name status loginEmail markupPercent(tier: BASIC) }
  userErrors { code field } } }"""
UPDATE = """mutation($i: UpdateSubAccountInput!) { updateSubAccount(input: $i) {
  subAccount { name loginEmail markupPercent(tier: PREMIUM) } userErrors { code } } }"""
SLOTS = "{ viewer { agency { slotsUsed slotsAvailable } } }"
ACCOUNT = """query($id: ID!) { node(id: $id) { ... on SubAccount { id name status balanceSource
  knowledgePackCredits markupPercent(tier: BASIC) balances { tier seconds minutes }
  basic: clientPricePerMinute(tier: BASIC) { amount currency }
  premium: clientPricePerMinute(tier: PREMIUM) { amount }
  walletBalance { amount } banner { active message note since }
  autoAllocation { enabled basicMinutes premiumMinutes }
  campaigns { totalCount edges { node { name status } } }
  automations { totalCount edges { node { name status } } } } } }"""
TRANSFER = """mutation($i: TransferMinutesInput!) { transferMinutes(input: $i) {
  transfer { id sentSeconds receivedSeconds fromPricePerMinute { amount }
             toPricePerMinute { amount } } userErrors { code field } } }"""
PREVIEW = """query($i: TransferMinutesInput!) { previewTransfer(input: $i) {
  sentSeconds receivedSeconds fromPricePerMinute { amount } toPricePerMinute { amount } } }"""
SUSPEND = """mutation($id: ID!, $note: String) { suspendSubAccount(input: {id: $id, note: $note}) {
  subAccount { status banner { active note } } userErrors { code field } } }"""
RESTORE = """mutation($id: ID!) { restoreSubAccount(input: {id: $id}) {
  subAccount { status banner { active } } userErrors { code } } }"""
ACTIVITY = """mutation($i: CreateActivityInput!) { createActivity(input: $i) {
  activity { ... on Campaign { id status } ... on Automation { id status }
             ... on InboundAgent { id status } } userErrors { code } } }"""
SET_STATUS = """mutation($id: ID!, $s: ActivityStatus!) { setActivityStatus(input: {id: $id,
  status: $s}) { userErrors { code } } }"""
CREDITS = """mutation($i: TransferKnowledgePackCreditsInput!) { transferKnowledgePackCredits(
  input: $i) { from { knowledgePackCredits } to { knowledgePackCredits } userErrors { code } } }"""
PREVIEW_REMOVAL = """query($id: ID!) { removalPreview(subAccountId: $id) {
  balances { tier seconds } knowledgePackCredits lineCount } }"""
REMOVE = """mutation($id: ID!, $to: ID!) { removeSubAccount(input: {id: $id, minutesToId: $to}) {
  subAccount { status } userErrors { code field } } }"""
LIST = """query($status: SubAccountStatus) { viewer { agency { subAccounts(status: $status) {
  totalCount edges { node { name status } } } } } }"""
SOURCE = """mutation($id: ID!) { setBalanceSource(input: {id: $id, source: AGENCY}) {
  subAccount { balanceSource } userErrors { code } } }"""
ALLOCATE = """mutation($i: SetAutoAllocationInput!) { setAutoAllocation(input: $i) {
  subAccount { autoAllocation { enabled basicMinutes premiumMinutes } } userErrors { code } } }"""


async def new_client(client, owner, name="Client", email=None, markup="25"):
    email = email or f"{name.lower().replace(' ', '.')}@clients.example"
    body = await gql(
        client,
        CREATE,
        {"i": {"name": name, "loginEmail": email, "markupPercent": markup}},
        owner.token,
    )
    payload = body["data"]["createSubAccount"]
    assert payload["userErrors"] == [], payload
    return payload["subAccount"]["id"]


async def account(client, owner, global_id):
    return (await gql(client, ACCOUNT, {"id": global_id}, owner.token))["data"]["node"]


def seconds(acc, tier="PREMIUM"):
    return {b["tier"]: b["seconds"] for b in acc["balances"]}[tier]


def transfer_input(source, destination, minutes, key=None, tier="PREMIUM"):
    return {
        "i": {
            "fromId": source,
            "toId": destination,
            "tier": tier,
            "minutes": minutes,
            "idempotencyKey": key,
        }
    }


# ---- sub-accounts and the plan's cap ---------------------------------------------------------


async def test_the_plan_cap_refuses_a_sixth_client_and_removal_frees_a_slot(app_client):
    owner = await make_agency(app_client)  # Agency Lite: 5 secondaries
    ids = [await new_client(app_client, owner, f"Client {n}") for n in range(5)]
    assert (await gql(app_client, SLOTS, token=owner.token))["data"]["viewer"]["agency"] == {
        "slotsUsed": 5,
        "slotsAvailable": 0,
    }
    sixth = await gql(
        app_client, CREATE, {"i": {"name": "Six", "loginEmail": "six@c.example"}}, owner.token
    )
    assert sixth["data"]["createSubAccount"]["userErrors"][0]["code"] == "PLAN_LIMIT_REACHED"
    removed = await gql(app_client, REMOVE, {"id": ids[0], "to": owner.primary_id}, owner.token)
    assert removed["data"]["removeSubAccount"]["subAccount"]["status"] == "REMOVED"
    assert (await gql(app_client, SLOTS, token=owner.token))["data"]["viewer"]["agency"][
        "slotsUsed"
    ] == 4
    again = await gql(
        app_client, CREATE, {"i": {"name": "Six", "loginEmail": "six@c.example"}}, owner.token
    )
    assert again["data"]["createSubAccount"]["userErrors"] == []


async def test_login_emails_are_unique_across_the_system(app_client):
    owner = await make_agency(app_client)
    other = await make_agency(app_client)
    first = await new_client(app_client, owner, "First", "same@clients.example")
    clash = await gql(
        app_client,
        CREATE,
        {"i": {"name": "Dup", "loginEmail": "SAME@clients.example"}},
        other.token,
    )
    assert clash["data"]["createSubAccount"]["userErrors"] == [
        {"code": "EMAIL_TAKEN", "field": ["input", "loginEmail"]}
    ]
    await new_client(app_client, owner, "Second", "second@clients.example")
    taken = await gql(
        app_client, UPDATE, {"i": {"id": first, "loginEmail": owner.email}}, owner.token
    )
    assert taken["data"]["updateSubAccount"]["userErrors"] == [{"code": "EMAIL_TAKEN"}]
    renamed = await gql(
        app_client,
        UPDATE,
        {"i": {"id": first, "name": "First Co", "markupPercent": "12.5"}},
        owner.token,
    )
    assert renamed["data"]["updateSubAccount"]["subAccount"] == {
        "name": "First Co",
        "loginEmail": "same@clients.example",
        "markupPercent": "12.50",
    }


async def test_prices_and_wallet_are_exact(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner, markup="25")
    await gql(app_client, TRANSFER, transfer_input(owner.primary_id, client_id, "10"), owner.token)
    acc = await account(app_client, owner, client_id)
    assert acc["basic"] == {"amount": "0.225000", "currency": "USD"}
    assert acc["premium"] == {"amount": "0.375000"}
    # 600 s sent at $0.30 arrive as 480 s at $0.375: a wallet of 8 minutes x $0.375 = $3
    assert seconds(acc) == 480
    assert acc["walletBalance"] == {"amount": "3.000000"}
    assert acc["markupPercent"] == "25.00"


async def test_bad_markups_are_refused(app_client):
    owner = await make_agency(app_client)
    for markup in ("-1", "1000.01", "12.345"):
        body = await gql(
            app_client,
            CREATE,
            {"i": {"name": "X", "loginEmail": "x@c.example", "markupPercent": markup}},
            owner.token,
        )
        assert body["data"]["createSubAccount"]["userErrors"] == [
            {"code": "INVALID_INPUT", "field": ["input", "markupPercent"]}
        ], markup


# ---- transfers -------------------------------------------------------------------------------


async def test_transfer_moves_value_and_the_preview_shows_the_same_figures(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner, markup="25")
    preview = await gql(
        app_client, PREVIEW, transfer_input(owner.primary_id, client_id, "10"), owner.token
    )
    assert preview["data"]["previewTransfer"] == {
        "sentSeconds": 600,
        "receivedSeconds": 480,
        "fromPricePerMinute": {"amount": "0.300000"},
        "toPricePerMinute": {"amount": "0.375000"},
    }
    assert seconds(await account(app_client, owner, owner.primary_id)) == 500 * 60  # unmoved
    done = await gql(
        app_client, TRANSFER, transfer_input(owner.primary_id, client_id, "10"), owner.token
    )
    moved = done["data"]["transferMinutes"]["transfer"]
    assert (moved["sentSeconds"], moved["receivedSeconds"]) == (600, 480)
    assert seconds(await account(app_client, owner, owner.primary_id)) == 500 * 60 - 600
    back = await gql(
        app_client, TRANSFER, transfer_input(client_id, owner.primary_id, "8"), owner.token
    )
    assert back["data"]["transferMinutes"]["transfer"]["receivedSeconds"] == 600


async def test_a_transfer_beyond_the_balance_moves_nothing(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner)
    body = await gql(
        app_client, TRANSFER, transfer_input(owner.primary_id, client_id, "501"), owner.token
    )
    assert body["data"]["transferMinutes"]["userErrors"][0]["code"] == "INSUFFICIENT_MINUTES"
    assert seconds(await account(app_client, owner, owner.primary_id)) == 500 * 60
    assert seconds(await account(app_client, owner, client_id)) == 0


async def test_a_retry_with_the_same_key_moves_nothing_twice(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner)
    request = transfer_input(owner.primary_id, client_id, "5", key="retry-1")
    first = (await gql(app_client, TRANSFER, request, owner.token))["data"]["transferMinutes"]
    second = (await gql(app_client, TRANSFER, request, owner.token))["data"]["transferMinutes"]
    assert first == second and first["userErrors"] == []
    assert seconds(await account(app_client, owner, owner.primary_id)) == 500 * 60 - 300
    other = transfer_input(owner.primary_id, client_id, "6", key="retry-1")
    reused = (await gql(app_client, TRANSFER, other, owner.token))["data"]["transferMinutes"]
    assert reused["userErrors"] == [
        {"code": "IDEMPOTENCY_KEY_REUSED", "field": ["input", "idempotencyKey"]}
    ]
    another_agency = await make_agency(app_client)
    their_client = await new_client(app_client, another_agency, "Theirs")
    theirs = transfer_input(another_agency.primary_id, their_client, "5", key="retry-1")
    assert (await gql(app_client, TRANSFER, theirs, another_agency.token))["data"][
        "transferMinutes"
    ]["userErrors"] == []  # keys are scoped per agency


async def test_transfers_refuse_fractions_of_a_second_and_other_agencies(app_client):
    owner = await make_agency(app_client)
    other = await make_agency(app_client)
    client_id = await new_client(app_client, owner)
    odd = await gql(
        app_client, TRANSFER, transfer_input(owner.primary_id, client_id, "0.001"), owner.token
    )
    assert odd["data"]["transferMinutes"]["userErrors"][0]["code"] == "INVALID_INPUT"
    foreign = await gql(
        app_client, TRANSFER, transfer_input(owner.primary_id, other.primary_id, "1"), owner.token
    )
    assert foreign["data"]["transferMinutes"]["userErrors"] == [
        {"code": "NOT_FOUND", "field": ["input", "toId"]}
    ]


# ---- Knowledge Pack credits, billing source, auto allocation ---------------------------------


async def test_knowledge_pack_credits_move_between_primary_and_a_secondary(app_client):
    owner = await make_agency(app_client)  # Agency Lite: 5 credits
    one, two = (
        await new_client(app_client, owner, "One"),
        await new_client(app_client, owner, "Two"),
    )
    sent = await gql(
        app_client,
        CREDITS,
        {"i": {"fromId": owner.primary_id, "toId": one, "credits": 3}},
        owner.token,
    )
    assert sent["data"]["transferKnowledgePackCredits"] == {
        "from": {"knowledgePackCredits": 2},
        "to": {"knowledgePackCredits": 3},
        "userErrors": [],
    }
    too_many = await gql(
        app_client,
        CREDITS,
        {"i": {"fromId": one, "toId": owner.primary_id, "credits": 4}},
        owner.token,
    )
    assert too_many["data"]["transferKnowledgePackCredits"]["userErrors"] == [
        {"code": "INSUFFICIENT_CREDITS"}
    ]
    sideways = await gql(
        app_client, CREDITS, {"i": {"fromId": one, "toId": two, "credits": 1}}, owner.token
    )
    assert sideways["data"]["transferKnowledgePackCredits"]["userErrors"] == [
        {"code": "INVALID_INPUT"}
    ]


async def test_a_credits_retry_with_the_same_key_moves_the_credits_once(app_client):
    owner = await make_agency(app_client)  # Agency Lite: 5 credits
    client_id = await new_client(app_client, owner)
    request = {"i": {"fromId": owner.primary_id, "toId": client_id, "credits": 2}}
    request["i"]["idempotencyKey"] = "kp-1"
    # when the same request is sent twice
    first = await gql(app_client, CREDITS, request, owner.token)
    second = await gql(app_client, CREDITS, request, owner.token)
    # then both succeed and the credits moved once
    assert first["data"]["transferKnowledgePackCredits"]["userErrors"] == []
    assert second["data"]["transferKnowledgePackCredits"]["userErrors"] == []
    assert (await account(app_client, owner, client_id))["knowledgePackCredits"] == 2
    assert (await account(app_client, owner, owner.primary_id))["knowledgePackCredits"] == 3


async def test_balance_source_and_auto_allocation_are_stored(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner)
    source = await gql(app_client, SOURCE, {"id": client_id}, owner.token)
    assert source["data"]["setBalanceSource"]["subAccount"] == {"balanceSource": "AGENCY"}
    allocation = {
        "subAccountId": client_id,
        "enabled": True,
        "basicMinutes": 100,
        "premiumMinutes": 50,
    }
    await gql(app_client, ALLOCATE, {"i": allocation}, owner.token)
    changed = await gql(
        app_client, ALLOCATE, {"i": {**allocation, "basicMinutes": 120}}, owner.token
    )
    assert changed["data"]["setAutoAllocation"]["subAccount"]["autoAllocation"] == {
        "enabled": True,
        "basicMinutes": 120,
        "premiumMinutes": 50,
    }
    primary = await gql(app_client, SOURCE, {"id": owner.primary_id}, owner.token)
    assert primary["data"]["setBalanceSource"]["userErrors"] == [{"code": "INVALID_INPUT"}]


# ---- suspension --------------------------------------------------------------------------------


async def make_activity(client, owner, sub_account_id, kind, name, status="ACTIVE"):
    body = await gql(
        client,
        ACTIVITY,
        {"i": {"subAccountId": sub_account_id, "kind": kind, "name": name, "status": status}},
        owner.token,
    )
    assert body["data"]["createActivity"]["userErrors"] == [], body
    return body["data"]["createActivity"]["activity"]["id"]


async def test_suspend_and_restore_bring_back_exactly_what_was_active(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner)
    await make_activity(app_client, owner, client_id, "CAMPAIGN", "Running")
    await make_activity(app_client, owner, client_id, "CAMPAIGN", "Already paused", "PAUSED")
    await make_activity(app_client, owner, client_id, "AUTOMATION", "Follow-up")
    # when the agency suspends it with a note
    suspended = await gql(
        app_client, SUSPEND, {"id": client_id, "note": "Invoice 30+ days"}, owner.token
    )
    assert suspended["data"]["suspendSubAccount"]["subAccount"] == {
        "status": "SUSPENDED",
        "banner": {"active": True, "note": "Invoice 30+ days"},
    }
    acc = await account(app_client, owner, client_id)
    assert {e["node"]["status"] for e in acc["campaigns"]["edges"]} == {"PAUSED"}
    assert [e["node"]["status"] for e in acc["automations"]["edges"]] == ["PAUSED"]
    # then restore brings back the two that were running, not the one paused before
    restored = await gql(app_client, RESTORE, {"id": client_id}, owner.token)
    assert restored["data"]["restoreSubAccount"]["subAccount"] == {
        "status": "ACTIVE",
        "banner": {"active": False},
    }
    acc = await account(app_client, owner, client_id)
    assert {e["node"]["name"]: e["node"]["status"] for e in acc["campaigns"]["edges"]} == {
        "Running": "ACTIVE",
        "Already paused": "PAUSED",
    }
    assert [e["node"]["status"] for e in acc["automations"]["edges"]] == ["ACTIVE"]


async def test_every_change_inside_a_suspended_sub_account_is_refused(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner)
    activity = await make_activity(app_client, owner, client_id, "INBOUND_AGENT", "Reception")
    await gql(app_client, SUSPEND, {"id": client_id}, owner.token)
    attempts = {
        "createActivity": (
            ACTIVITY,
            {"i": {"subAccountId": client_id, "kind": "CAMPAIGN", "name": "New"}},
        ),
        "setActivityStatus": (SET_STATUS, {"id": activity, "s": "ACTIVE"}),
        "updateSubAccount": (UPDATE, {"i": {"id": client_id, "name": "Renamed"}}),
        "transferMinutes": (TRANSFER, transfer_input(owner.primary_id, client_id, "1")),
        "setBalanceSource": (SOURCE, {"id": client_id}),
        "setAutoAllocation": (
            ALLOCATE,
            {
                "i": {
                    "subAccountId": client_id,
                    "enabled": True,
                    "basicMinutes": 1,
                    "premiumMinutes": 1,
                }
            },
        ),
        "transferKnowledgePackCredits": (
            CREDITS,
            {"i": {"fromId": owner.primary_id, "toId": client_id, "credits": 1}},
        ),
    }
    for name, (query, variables) in attempts.items():
        body = await gql(app_client, query, variables, owner.token)
        codes = [e["code"] for e in body["data"][name]["userErrors"]]
        assert codes == ["SUBACCOUNT_SUSPENDED"], (name, body)
    # reads keep working, history included
    acc = await account(app_client, owner, client_id)
    assert acc["banner"]["active"] is True and acc["status"] == "SUSPENDED"


async def test_suspension_rules(app_client, database):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner)
    long_note = await gql(app_client, SUSPEND, {"id": client_id, "note": "x" * 151}, owner.token)
    assert long_note["data"]["suspendSubAccount"]["userErrors"] == [
        {"code": "NOTE_TOO_LONG", "field": ["input", "note"]}
    ]
    primary = await gql(app_client, SUSPEND, {"id": owner.primary_id}, owner.token)
    assert primary["data"]["suspendSubAccount"]["userErrors"][0]["code"] == "PRIMARY_NOT_REMOVABLE"
    await gql(app_client, SUSPEND, {"id": client_id, "note": "first"}, owner.token)
    edited = await gql(app_client, SUSPEND, {"id": client_id, "note": "second"}, owner.token)
    assert edited["data"]["suspendSubAccount"]["subAccount"]["banner"]["note"] == "second"
    not_suspended = await gql(app_client, RESTORE, {"id": owner.primary_id}, owner.token)
    assert not_suspended["data"]["restoreSubAccount"]["userErrors"] == [{"code": "NOT_SUSPENDED"}]
    # each change wrote its banner event to the outbox, in the same transaction
    async with database.read() as conn:
        kinds = (
            await conn.execute(select(outbox.c.kind, outbox.c.payload).order_by(outbox.c.id))
        ).all()
    banners = [p for k, p in kinds if k == "BANNER_CHANGED"]
    assert len(banners) == 2 and '"note":"second"' in banners[-1]


# ---- removal -----------------------------------------------------------------------------------


async def test_removal_moves_minutes_and_credits_and_keeps_the_account_readable(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner, markup="0")
    await gql(app_client, TRANSFER, transfer_input(owner.primary_id, client_id, "20"), owner.token)
    await gql(
        app_client,
        CREDITS,
        {"i": {"fromId": owner.primary_id, "toId": client_id, "credits": 2}},
        owner.token,
    )
    await make_activity(app_client, owner, client_id, "AUTOMATION", "Nightly")
    preview = await gql(app_client, PREVIEW_REMOVAL, {"id": client_id}, owner.token)
    assert preview["data"]["removalPreview"] == {
        "balances": [{"tier": "BASIC", "seconds": 0}, {"tier": "PREMIUM", "seconds": 1200}],
        "knowledgePackCredits": 2,
        "lineCount": 0,
    }
    removed = await gql(app_client, REMOVE, {"id": client_id, "to": owner.primary_id}, owner.token)
    assert removed["data"]["removeSubAccount"] == {
        "subAccount": {"status": "REMOVED"},
        "userErrors": [],
    }
    primary = await account(app_client, owner, owner.primary_id)
    assert seconds(primary) == 500 * 60 and primary["knowledgePackCredits"] == 5
    gone = await account(app_client, owner, client_id)
    assert gone["status"] == "REMOVED" and seconds(gone) == 0
    assert [e["node"]["status"] for e in gone["automations"]["edges"]] == ["PAUSED"]
    live = (await gql(app_client, LIST, {}, owner.token))["data"]["viewer"]["agency"]
    assert [e["node"]["status"] for e in live["subAccounts"]["edges"]] == ["ACTIVE"]
    removed_list = (await gql(app_client, LIST, {"status": "REMOVED"}, owner.token))["data"]
    assert removed_list["viewer"]["agency"]["subAccounts"]["totalCount"] == 1
    primary_removal = await gql(
        app_client, REMOVE, {"id": owner.primary_id, "to": client_id}, owner.token
    )
    assert primary_removal["data"]["removeSubAccount"]["userErrors"][0]["code"] == (
        "PRIMARY_NOT_REMOVABLE"
    )


async def test_removed_accounts_are_purged_after_the_retention_period(app_client, clock):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner, email="leaving@clients.example")
    await gql(app_client, REMOVE, {"id": client_id, "to": owner.primary_id}, owner.token)
    services = app_client.app.state.services
    assert await jobs.purge_removed(services) == 0
    clock.advance(timedelta(days=31))
    assert await jobs.purge_removed(services) == 1
    assert await jobs.purge_removed(services) == 0
    login = await gql(
        app_client,
        "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { token } }",
        {"e": owner.email, "p": PASSWORD},
    )
    reused = await gql(
        app_client,
        CREATE,
        {"i": {"name": "New", "loginEmail": "leaving@clients.example"}},
        login["data"]["login"]["token"],
    )
    assert reused["data"]["createSubAccount"]["userErrors"] == []


# ---- the monthly grant -------------------------------------------------------------------------


async def signed_in_again(app_client, owner):
    """The owner with a new token, after the clock moved past the first one's 14 days."""
    body = await gql(
        app_client,
        "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { token } }",
        {"e": owner.email, "p": PASSWORD},
    )
    return replace(owner, token=body["data"]["login"]["token"])


async def test_plan_minutes_are_granted_once_per_period_however_often_the_job_runs(
    app_client, clock, database
):
    owner = await make_agency(app_client, plan="Partner")  # 5,000 BASIC minutes a month
    services = app_client.app.state.services
    assert await jobs.grant_plan_minutes(services) == 0  # sign-up granted it
    clock.advance(timedelta(days=95))  # three renewals later
    assert await jobs.grant_plan_minutes(services) == 3
    assert await jobs.grant_plan_minutes(services) == 0
    primary = await account(app_client, await signed_in_again(app_client, owner), owner.primary_id)
    assert seconds(primary, "BASIC") == 4 * 5000 * 60
    async with database.read() as conn:
        assert await mismatches(conn) == []


@pytest.mark.parametrize("zone", ["Pacific/Auckland", "America/Los_Angeles"])
async def test_the_monthly_grant_comes_at_the_agency_s_local_midnight(app_client, clock, zone):
    """Auckland's 20 Nov begins at 11:00 UTC on the 19th; Los Angeles' at 08:00 UTC on the
    20th. The new period's minutes are granted from then on, not from UTC's midnight."""
    # given an agency that signed up on 20 Oct and keeps its books in `zone`
    clock.now = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)
    owner = await make_agency(app_client, plan="Partner")  # 5,000 BASIC minutes a month
    changed = await gql(app_client, UPDATE_AGENCY, {"i": {"timeZone": zone}}, owner.token)
    assert changed["data"]["updateAgency"]["userErrors"] == []
    services = app_client.app.state.services
    local_midnight = datetime(2026, 11, 20, tzinfo=ZoneInfo(zone)).astimezone(UTC)
    # when the job runs a minute before the renewal's local midnight, then a minute after
    clock.now = local_midnight - timedelta(minutes=1)
    before = await jobs.grant_plan_minutes(services)
    clock.now = local_midnight + timedelta(minutes=1)
    after = await jobs.grant_plan_minutes(services)
    # then November's minutes come with the second run, not the first
    assert (before, after) == (0, 1)
    primary = await account(app_client, await signed_in_again(app_client, owner), owner.primary_id)
    assert seconds(primary, "BASIC") == 2 * 5000 * 60


# ---- a constant number of statements for the dashboard list ------------------------------------

DASHBOARD = """{ viewer { agency { subAccounts(first: 500) { totalCount edges { node {
  id name status balances { tier seconds } walletBalance { amount }
  clientPricePerMinute(tier: PREMIUM) { amount } markupPercent(tier: BASIC)
  banner { active note } autoAllocation { enabled } nextBillingDate } } } } } }"""


async def test_the_client_list_costs_the_same_few_statements_for_500_clients(app_client):
    owner = await make_agency(app_client, plan="Agency Unlimited")
    services = app_client.app.state.services
    agency_id = from_global_id(owner.id)[1]
    now = services.clock()
    async with services.uow() as uow:
        for n in range(499):
            await agencies.add_sub_account(
                uow.conn,
                agency_id,
                agencies.SubAccountKind.SECONDARY,
                f"Client {n:03}",
                f"client{n}@bulk.example",
                now.date(),
                0,
                now,
                markup_bp=1000,
            )
    statements: list[str] = []
    database = services.database
    engines = {database.engine.sync_engine, database._read_engine.sync_engine}

    def count(conn, cursor, statement, *args):
        transaction_control = ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA")
        relay = "outbox" in statement or "advisory" in statement  # the background relay's
        if not relay and not statement.lstrip().upper().startswith(transaction_control):
            statements.append(statement)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        body = await gql(app_client, DASHBOARD, token=owner.token)
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)
    connection = body["data"]["viewer"]["agency"]["subAccounts"]
    assert connection["totalCount"] == 500 and len(connection["edges"]) == 500
    nodes = {e["node"]["id"]: e["node"] for e in connection["edges"]}
    primary = nodes.pop(owner.primary_id)
    assert Decimal(primary["walletBalance"]["amount"]) == Decimal("600")  # 2,000 min x $0.30
    assert {n["clientPricePerMinute"]["amount"] for n in nodes.values()} == {"0.330000"}
    # session, page, count, balances, auto allocations
    assert len(statements) <= 5, statements


FRAGMENTED_LIST = """
fragment Money on SubAccount { walletBalance { amount } balances { tier seconds } }
{ viewer { agency { subAccounts(first: 50) { edges { node {
  id ...Money ... on SubAccount { autoAllocation { enabled } } ... { nextBillingDate } } } } } } }"""


async def test_a_page_loads_what_its_nodes_show_up_front_fragments_included(
    app_client, monkeypatch
):
    """The list hands its nodes their balances, auto allocation and today: no node reads them
    on its own, even when they are asked for inside fragments."""
    from resolvers import viewer as reads

    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner, markup="10")
    expected = await gql(app_client, FRAGMENTED_LIST, token=owner.token)
    assert "errors" not in expected, expected

    async def not_per_node(*args, **kwargs):
        raise AssertionError("a node of the page read this on its own")

    monkeypatch.setattr(reads, "balances", not_per_node)
    monkeypatch.setattr(reads, "next_billing_date", not_per_node)
    body = await gql(app_client, FRAGMENTED_LIST, token=owner.token)
    assert body == expected
    nodes = {
        e["node"]["id"]: e["node"] for e in body["data"]["viewer"]["agency"]["subAccounts"]["edges"]
    }
    assert set(nodes) == {owner.primary_id, client_id}
    assert nodes[client_id]["autoAllocation"] == {"enabled": False}


TIER_MARKUPS = """mutation($i: UpdateSubAccountInput!) { updateSubAccount(input: $i) {
  subAccount { basic: markupPercent(tier: BASIC) premium: markupPercent(tier: PREMIUM) }
  userErrors { code field } } }"""


async def test_markups_can_differ_per_tier(app_client):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner, markup="10")
    body = await gql(
        app_client,
        TIER_MARKUPS,
        {"i": {"id": client_id, "premiumMarkupPercent": "35"}},
        owner.token,
    )
    assert body["data"]["updateSubAccount"]["subAccount"] == {"basic": "10.00", "premium": "35.00"}
    bad = await gql(
        app_client, TIER_MARKUPS, {"i": {"id": client_id, "basicMarkupPercent": "-2"}}, owner.token
    )
    assert bad["data"]["updateSubAccount"]["userErrors"] == [
        {"code": "INVALID_INPUT", "field": ["input", "basicMarkupPercent"]}
    ]


async def test_a_suspended_clients_own_users_still_read_everything(app_client):
    from tests.api.test_team import join

    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner)
    await make_activity(app_client, owner, client_id, "CAMPAIGN", "History")
    _, member_token = await join(
        app_client,
        owner.token,
        "reader@client.example",
        "SUBACCOUNT_MEMBER",
        subAccountIds=[client_id],
    )
    await gql(app_client, SUSPEND, {"id": client_id, "note": "Overdue"}, owner.token)
    seen = await gql(app_client, ACCOUNT, {"id": client_id}, member_token)
    assert "errors" not in seen
    node = seen["data"]["node"]
    assert node["banner"]["note"] == "Overdue" and node["campaigns"]["totalCount"] == 1


START = """query($id: ID!) { node(id: $id) { ... on SubAccount { subscriptionStartDate } } }"""


async def test_a_new_client_starts_on_the_agencys_local_date(app_client, clock):
    # given an agency in Auckland, at an hour when Auckland is a day ahead of UTC
    owner = await make_agency(app_client)
    zone = {"i": {"timeZone": "Pacific/Auckland"}}
    assert (await gql(app_client, UPDATE_AGENCY, zone, owner.token))["data"]["updateAgency"][
        "userErrors"
    ] == []
    clock.now = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)  # 09:00 on Dec 1 in Auckland
    # when a client is created without a start date
    client = await new_client(app_client, owner, "Kiwi")
    # then its billing cycle starts on Auckland's date, not UTC's
    found = await gql(app_client, START, {"id": client}, owner.token)
    assert found["data"]["node"]["subscriptionStartDate"] == "2026-12-01"
