"""Merging sub-accounts end to end: the request and its decision by another owner or admin,
every refusal's code, what approval moves (minutes by value, credits, lines, activities,
grants), the freed slot, reports that include the source's history, the audit log and
live events, and approval racing transfers and ingestion on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from fractions import Fraction

import pytest
from sqlalchemy import select

from domain.money import Tier
from domain.pricing import client_price_per_minute
from persistence.ledger import ledger_t, mismatches
from persistence.outbox import outbox
from resolvers.api_keys import issue_api_key
from resolvers.global_id import from_global_id
from tests.api.test_account_manager import (
    ACTIVITY,
    CREATE,
    CREDITS,
    SET_STATUS,
    SUSPEND,
    TRANSFER,
    new_client,
    transfer_input,
)
from tests.api.test_lines import add_one, assign, history
from tests.api.test_reports import AGENCY_REPORT, SUB_REPORT
from tests.api.test_team import join
from tests.api.test_transfer_concurrency import total_value
from tests.api.test_usage import RECORD, call
from tests.factories import gql, make_agency

REQUEST = """mutation($i: RequestMergeInput!) { requestMerge(input: $i) {
  mergeRequest { id status note source { id } target { id } requestedBy { email }
                 decidedBy { email } requestedAt decidedAt }
  userErrors { code field } } }"""
APPROVE = """mutation($id: ID!) { approveMerge(input: {id: $id}) {
  mergeRequest { id status decidedBy { email } decidedAt } userErrors { code field } } }"""
REJECT = """mutation($id: ID!) { rejectMerge(input: {id: $id}) {
  mergeRequest { id status decidedBy { email } } userErrors { code field } } }"""
REQUESTS = """query($status: MergeStatus) { viewer { agency { mergeRequests(status: $status) {
  totalCount edges { node { id status source { id } target { id } } } } } } }"""
MERGED = """query($id: ID!) { node(id: $id) { ... on SubAccount { status knowledgePackCredits
  mergedInto { id } balances { tier seconds } lineCount
  campaigns { edges { node { name status } } } automations { edges { node { name status } } }
  } } }"""
GRANTED = "{ viewer { user { subAccounts { id } } } }"
AUDIT = """{ viewer { agency { auditLog(first: 50, kinds: [MERGE_REQUESTED, MERGE_APPROVED,
  MERGE_REJECTED]) { edges { node { kind email subjectId summary } } } } } }"""


def key(global_id):
    return from_global_id(global_id)[1]


async def two_admins(client, plan="Agency Unlimited"):
    """An agency (the owner) and a second person who may decide: an agency admin."""
    owner = await make_agency(client, plan=plan)
    _, admin = await join(client, owner.token, f"admin.{key(owner.id).hex[:8]}@example.com")
    return owner, admin


async def request(client, token, source, target, note=None):
    variables = {"i": {"sourceId": source, "targetId": target, "note": note}}
    body = await gql(client, REQUEST, variables, token)
    assert "errors" not in body, body
    return body["data"]["requestMerge"]


async def decide(client, token, mutation, request_id):
    body = await gql(client, mutation, {"id": request_id}, token)
    assert "errors" not in body, body
    return next(iter(body["data"].values()))


async def requested(client, token, source, target, note=None):
    made = await request(client, token, source, target, note)
    assert made["userErrors"] == [], made
    return made["mergeRequest"]["id"]


async def read(client, token, global_id):
    body = await gql(client, MERGED, {"id": global_id}, token)
    assert "errors" not in body, body
    return body["data"]["node"]


def codes(payload):
    return [(e["code"], e["field"]) for e in payload["userErrors"]]


# ---- the flow ---------------------------------------------------------------------------------


async def test_one_admin_asks_another_approves_and_the_source_is_merged(app_client, database):
    # given two clients with minutes: A at 25 % (480 s), B at 40 % (428 s)
    owner, admin = await two_admins(app_client)
    a = await new_client(app_client, owner, "Acme", markup="25")
    b = await new_client(app_client, owner, "Beta", markup="40")
    for client in (a, b):
        await gql(app_client, TRANSFER, transfer_input(owner.primary_id, client, "10"), owner.token)
    prices = app_client.app.state.services.prices
    value_before = await total_value(database, prices)
    # when the owner asks to merge A into B, and the admin approves
    made = await request(app_client, owner.token, a, b, "same client, two logins")
    assert made["userErrors"] == []
    asked = made["mergeRequest"]
    assert asked["status"] == "PENDING" and asked["note"] == "same client, two logins"
    assert asked["source"] == {"id": a} and asked["target"] == {"id": b}
    assert asked["requestedBy"] == {"email": owner.email} and asked["decidedBy"] is None
    pending = await gql(app_client, REQUESTS, {"status": "PENDING"}, admin)
    assert pending["data"]["viewer"]["agency"]["mergeRequests"]["totalCount"] == 1
    approved = await decide(app_client, admin, APPROVE, asked["id"])
    # then the request is approved, A is MERGED into B and B holds A's minutes by value
    assert approved["userErrors"] == []
    assert approved["mergeRequest"]["status"] == "APPROVED"
    assert approved["mergeRequest"]["decidedAt"] is not None
    source = await read(app_client, owner.token, a)
    assert source["status"] == "MERGED" and source["mergedInto"] == {"id": b}
    assert {x["tier"]: x["seconds"] for x in source["balances"]} == {"BASIC": 0, "PREMIUM": 0}
    target = await read(app_client, owner.token, b)
    assert target["mergedInto"] is None
    # 480 s at $0.375/min arrive at $0.42/min: 428.57… s, rounded down to 428
    assert {x["tier"]: x["seconds"] for x in target["balances"]} == {
        "BASIC": 0,
        "PREMIUM": 428 + 428,
    }
    async with database.read() as conn:
        assert await mismatches(conn) == []
        entries = (
            await conn.execute(
                select(ledger_t.c.sub_account_id, ledger_t.c.delta_seconds, ledger_t.c.kind).where(
                    ledger_t.c.reference == f"merge:{key(asked['id'])}"
                )
            )
        ).all()
    assert sorted(entries, key=lambda e: e.delta_seconds) == [
        (key(a), -480, "MERGE_OUT"),
        (key(b), 428, "MERGE_IN"),
    ]
    # and no value was made: what was lost is under one second at B's price
    value_after = await total_value(database, prices)
    assert value_after <= value_before
    b_price = client_price_per_minute(prices.base_per_minute(Tier.PREMIUM), 4000)
    assert value_before - value_after < b_price  # under one second's worth at B's price
    assert (
        value_before - value_after
        == 480 * client_price_per_minute(prices.base_per_minute(Tier.PREMIUM), 2500) - 428 * b_price
    )
    approved_list = await gql(app_client, REQUESTS, {"status": "APPROVED"}, owner.token)
    edges = approved_list["data"]["viewer"]["agency"]["mergeRequests"]["edges"]
    assert [e["node"]["id"] for e in edges] == [asked["id"]]


async def test_a_rejected_request_changes_nothing_and_can_be_asked_again(app_client):
    owner, admin = await two_admins(app_client)
    a = await new_client(app_client, owner, "Acme")
    b = await new_client(app_client, owner, "Beta")
    first = await requested(app_client, admin, a, b)
    # when the owner rejects it
    rejected = await decide(app_client, owner.token, REJECT, first)
    # then it is REJECTED, A is untouched, and A may be asked about again
    assert rejected["userErrors"] == []
    assert rejected["mergeRequest"]["status"] == "REJECTED"
    assert rejected["mergeRequest"]["decidedBy"] == {"email": owner.email}
    assert (await read(app_client, owner.token, a))["status"] == "ACTIVE"
    assert (await request(app_client, admin, a, b))["userErrors"] == []


# ---- refusals ---------------------------------------------------------------------------------


async def test_whoever_asked_cannot_decide(app_client):
    owner, admin = await two_admins(app_client)
    a = await new_client(app_client, owner, "Acme")
    b = await new_client(app_client, owner, "Beta")
    # an owner's request, and an admin's
    for asker in (owner.token, admin):
        asked = await requested(app_client, asker, a, b)
        for mutation in (APPROVE, REJECT):
            refused = await decide(app_client, asker, mutation, asked)
            assert codes(refused) == [("APPROVER_MUST_DIFFER", ["input", "id"])]
        assert (await read(app_client, owner.token, a))["status"] == "ACTIVE"
        other = admin if asker == owner.token else owner.token
        assert (await decide(app_client, other, REJECT, asked))["userErrors"] == []


async def test_a_decided_request_is_not_pending(app_client):
    owner, admin = await two_admins(app_client)
    a = await new_client(app_client, owner, "Acme")
    b = await new_client(app_client, owner, "Beta")
    c = await new_client(app_client, owner, "Cyan")
    approved = await requested(app_client, owner.token, a, b)
    assert (await decide(app_client, admin, APPROVE, approved))["userErrors"] == []
    rejected = await requested(app_client, owner.token, c, b)
    assert (await decide(app_client, admin, REJECT, rejected))["userErrors"] == []
    for request_id in (approved, rejected):
        for mutation in (APPROVE, REJECT):
            refused = await decide(app_client, admin, mutation, request_id)
            assert codes(refused) == [("MERGE_NOT_PENDING", ["input", "id"])]


async def test_one_pending_request_per_source(app_client):
    owner, admin = await two_admins(app_client)
    a = await new_client(app_client, owner, "Acme")
    b = await new_client(app_client, owner, "Beta")
    c = await new_client(app_client, owner, "Cyan")
    await requested(app_client, owner.token, a, b)
    refused = await request(app_client, admin, a, c)
    assert codes(refused) == [("MERGE_ALREADY_PENDING", ["input", "sourceId"])]
    # another source may still be asked about
    assert (await request(app_client, admin, c, b))["userErrors"] == []


async def test_concurrent_requests_for_one_source_leave_one_pending(app_client):
    owner, admin = await two_admins(app_client)
    a = await new_client(app_client, owner, "Acme")
    targets = [await new_client(app_client, owner, f"Target {n}") for n in range(4)]
    results = await asyncio.gather(*(request(app_client, admin, a, t) for t in targets))
    assert sorted(r["userErrors"][0]["code"] if r["userErrors"] else "OK" for r in results) == [
        "MERGE_ALREADY_PENDING"
    ] * 3 + ["OK"]


async def test_the_primary_cannot_be_merged_either_way(app_client):
    owner = await make_agency(app_client)
    a = await new_client(app_client, owner, "Acme")
    into_primary = await request(app_client, owner.token, a, owner.primary_id)
    assert codes(into_primary) == [("PRIMARY_NOT_MERGEABLE", ["input", "targetId"])]
    from_primary = await request(app_client, owner.token, owner.primary_id, a)
    assert codes(from_primary) == [("PRIMARY_NOT_MERGEABLE", ["input", "sourceId"])]


async def test_only_active_sub_accounts_are_merged(app_client):
    owner, admin = await two_admins(app_client)
    a = await new_client(app_client, owner, "Acme")
    b = await new_client(app_client, owner, "Beta")
    c = await new_client(app_client, owner, "Cyan")
    # a pending request whose target is suspended before the decision
    asked = await requested(app_client, owner.token, a, b)
    await gql(app_client, SUSPEND, {"id": b}, owner.token)
    refused = await decide(app_client, admin, APPROVE, asked)
    assert codes(refused) == [("SUBACCOUNT_NOT_ACTIVE", ["input", "targetId"])]
    assert (await read(app_client, owner.token, a))["status"] == "ACTIVE"
    # and a suspended source cannot be asked about
    refused = await request(app_client, owner.token, b, c)
    assert codes(refused) == [("SUBACCOUNT_NOT_ACTIVE", ["input", "sourceId"])]
    # nor into itself
    same = await request(app_client, owner.token, c, c)
    assert codes(same) == [("SAME_SUBACCOUNT", ["input", "targetId"])]


# ---- what moves -------------------------------------------------------------------------------


async def test_credits_lines_activities_and_grants_go_to_the_target(app_client, database):
    owner, admin = await two_admins(app_client)
    a = await new_client(app_client, owner, "Acme")
    b = await new_client(app_client, owner, "Beta")
    # given A with 3 KP credits, a line, an active campaign, a paused automation, and a
    # Subaccount Member granted A alone
    credits = {"i": {"fromId": owner.primary_id, "toId": a, "credits": 3}}
    assert (await gql(app_client, CREDITS, credits, owner.token))["data"][
        "transferKnowledgePackCredits"
    ]["userErrors"] == []
    line = await add_one(app_client, owner)
    assert (await assign(app_client, owner, line, a))["userErrors"] == []
    for kind, name in (("CAMPAIGN", "Spring"), ("AUTOMATION", "Follow-up")):
        made = await gql(
            app_client, ACTIVITY, {"i": {"subAccountId": a, "kind": kind, "name": name}}, admin
        )
        assert made["data"]["createActivity"]["userErrors"] == [], made
    automation = made["data"]["createActivity"]["activity"]["id"]
    await gql(app_client, SET_STATUS, {"id": automation, "s": "PAUSED"}, admin)
    _, member = await join(
        app_client, owner.token, "member@acme.example", "SUBACCOUNT_MEMBER", subAccountIds=[a]
    )
    # when A merges into B
    asked = await requested(app_client, owner.token, a, b)
    assert (await decide(app_client, admin, APPROVE, asked))["userErrors"] == []
    # then B has them all, with their statuses, and A has none
    target = await read(app_client, owner.token, b)
    assert target["knowledgePackCredits"] == 3
    assert target["lineCount"] == 1
    assert target["campaigns"]["edges"] == [{"node": {"name": "Spring", "status": "ACTIVE"}}]
    assert target["automations"]["edges"] == [{"node": {"name": "Follow-up", "status": "PAUSED"}}]
    source = await read(app_client, owner.token, a)
    assert source["knowledgePackCredits"] == 0 and source["lineCount"] == 0
    assert source["campaigns"]["edges"] == [] and source["automations"]["edges"] == []
    # the line's history: A held it up to the approval day, B from that day
    today = datetime.now(UTC).date()
    assert (await history(app_client, line))[-2:] == [
        (key(a), today, today),
        (key(b), today, None),
    ]
    # the member now works in B instead of A (and reads A no more: merged is admins' only)
    granted = (await gql(app_client, GRANTED, token=member))["data"]["viewer"]["user"]
    assert granted["subAccounts"] == [{"id": b}]
    assert (await gql(app_client, MERGED, {"id": a}, member))["data"]["node"] is None


async def test_merging_frees_the_slot(app_client):
    owner, admin = await two_admins(app_client, plan="Agency Lite")  # 5 secondaries
    clients = [await new_client(app_client, owner, f"Client {n}") for n in range(5)]
    create = {"i": {"name": "Sixth", "loginEmail": "sixth@clients.example"}}
    full = (await gql(app_client, CREATE, create, owner.token))["data"]["createSubAccount"]
    assert [e["code"] for e in full["userErrors"]] == ["PLAN_LIMIT_REACHED"]
    asked = await requested(app_client, owner.token, clients[0], clients[1])
    assert (await decide(app_client, admin, APPROVE, asked))["userErrors"] == []
    made = (await gql(app_client, CREATE, create, owner.token))["data"]["createSubAccount"]
    assert made["userErrors"] == [] and made["subAccount"]["status"] == "ACTIVE"


# ---- history rolls up -------------------------------------------------------------------------


async def test_the_targets_reports_include_the_sources_history(app_client):
    owner, admin = await two_admins(app_client)
    a = await new_client(app_client, owner, "Acme", markup="25")
    b = await new_client(app_client, owner, "Beta", markup="40")
    for client in (a, b):
        await gql(app_client, TRANSFER, transfer_input(owner.primary_id, client, "10"), owner.token)
    services = app_client.app.state.services
    _, api_key = await issue_api_key(services, key(owner.id), "platform", None)
    day = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)  # before the merge
    calls = [call(a, "a1", 60, started=day), call(a, "a2", 30, started=day), call(b, "b1", 90)]
    calls[2]["startedAt"] = day.replace(hour=11).isoformat()
    recorded = (await gql(app_client, RECORD, {"calls": calls}, api_key))["data"]["recordCalls"]
    assert recorded["accepted"] == 3, recorded
    window = {"from": "2026-11-01", "to": "2026-11-30"}

    async def sub_report(account):
        body = await gql(app_client, SUB_REPORT, {"id": account, **window}, owner.token)
        assert "errors" not in body, body
        return body["data"]["node"]["report"]

    async def agency_report():
        body = await gql(app_client, AGENCY_REPORT, window, owner.token)
        assert "errors" not in body, body
        return body["data"]["viewer"]["agency"]["report"]

    before_a, before_b, agency_before = (
        await sub_report(a),
        await sub_report(b),
        await agency_report(),
    )
    # when A merges into B
    asked = await requested(app_client, owner.token, a, b)
    assert (await decide(app_client, admin, APPROVE, asked))["userErrors"] == []
    # then B's report for November (before the merge) counts A's calls and spending too
    after_b = await sub_report(b)
    assert after_b["calls"]["total"] == 3
    spent = Fraction(before_a["spent"]["amount"]) + Fraction(before_b["spent"]["amount"])
    assert Fraction(after_b["spent"]["amount"]) == spent
    assert sum(p["calls"] for p in after_b["days"]) == 3
    # the agency's totals are unchanged; A's row is now part of B's
    agency_after = await agency_report()
    assert agency_after["totalMinutesUsed"] == agency_before["totalMinutesUsed"]
    rows = {
        e["node"]["subAccount"]["name"]: e["node"]["minutesUsed"]
        for e in agency_after["clients"]["edges"]
    }
    assert "Acme" not in rows and Fraction(rows["Beta"]) == Fraction(180, 60)
    # and A's own report (admins may still read it) keeps its own history
    assert (await sub_report(a))["calls"]["total"] == 2


async def test_a_chain_of_merges_rolls_up_into_the_last_target(app_client):
    # given calls of A and of B, A merged into B, then B into C
    owner, admin = await two_admins(app_client)
    a, b, c = [await new_client(app_client, owner, name) for name in ("Acme", "Beta", "Cyan")]
    services = app_client.app.state.services
    _, api_key = await issue_api_key(services, key(owner.id), "platform", None)
    day = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
    calls = [call(a, "a1", 60, started=day), call(b, "b1", 30, started=day)]
    assert (await gql(app_client, RECORD, {"calls": calls}, api_key))["data"]["recordCalls"][
        "accepted"
    ] == 2
    for source, target in ((a, b), (b, c)):
        asked = await requested(app_client, owner.token, source, target)
        assert (await decide(app_client, admin, APPROVE, asked))["userErrors"] == []
    # then C's report counts both calls, and A still points at B, the account it merged into
    window = {"from": "2026-11-01", "to": "2026-11-30"}
    body = await gql(app_client, SUB_REPORT, {"id": c, **window}, owner.token)
    assert body["data"]["node"]["report"]["calls"]["total"] == 2
    assert (await read(app_client, owner.token, a))["mergedInto"] == {"id": b}
    assert (await read(app_client, owner.token, b))["mergedInto"] == {"id": c}


# ---- audit and events -------------------------------------------------------------------------


async def test_requests_and_decisions_are_in_the_audit_log(app_client):
    owner, admin = await two_admins(app_client)
    a = await new_client(app_client, owner, "Acme")
    b = await new_client(app_client, owner, "Beta")
    c = await new_client(app_client, owner, "Cyan")
    rejected = await requested(app_client, owner.token, c, b)
    await decide(app_client, admin, REJECT, rejected)
    approved = await requested(app_client, owner.token, a, b)
    await decide(app_client, admin, APPROVE, approved)
    log = (await gql(app_client, AUDIT, token=owner.token))["data"]["viewer"]["agency"]
    entries = [e["node"] for e in log["auditLog"]["edges"]]
    assert [(e["kind"], e["subjectId"]) for e in entries] == [
        ("MERGE_APPROVED", approved),
        ("MERGE_REQUESTED", approved),
        ("MERGE_REJECTED", rejected),
        ("MERGE_REQUESTED", rejected),
    ]
    assert entries[0]["summary"] == "merged Acme into Beta"
    assert entries[0]["email"] != owner.email and entries[1]["email"] == owner.email
    assert entries[2]["summary"] == "rejected merging Cyan into Beta"


async def test_approval_announces_both_accounts_new_balances(app_client, database):
    owner, admin = await two_admins(app_client)
    a = await new_client(app_client, owner, "Acme", markup="25")
    b = await new_client(app_client, owner, "Beta", markup="40")
    await gql(app_client, TRANSFER, transfer_input(owner.primary_id, a, "10"), owner.token)
    async with database.read() as conn:
        last = await conn.scalar(select(outbox.c.id).order_by(outbox.c.id.desc()).limit(1))
    asked = await requested(app_client, owner.token, a, b)
    assert (await decide(app_client, admin, APPROVE, asked))["userErrors"] == []
    async with database.read() as conn:
        rows = (
            await conn.execute(
                select(outbox.c.key).where(outbox.c.id > last, outbox.c.kind == "BALANCES_CHANGED")
            )
        ).all()
    # one usageUpdated event per account (the agency topic, keyed by the sub-account)
    assert sorted(row.key for row in rows) == sorted([str(key(a)), str(key(b))])


# ---- races (PostgreSQL) -----------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_approval_racing_transfers_and_calls_creates_no_value(app_client, database):
    # given rounds of a merge approved while transfers move minutes into and out of the
    # source and calls are billed to it
    owner, admin = await two_admins(app_client)
    services = app_client.app.state.services
    _, api_key = await issue_api_key(services, key(owner.id), "platform", None)
    prices = services.prices
    for round_ in range(6):
        a = await new_client(app_client, owner, f"Source {round_}", markup="25")
        b = await new_client(app_client, owner, f"Target {round_}", markup="40")
        for client in (a, b):
            await gql(
                app_client, TRANSFER, transfer_input(owner.primary_id, client, "20"), owner.token
            )
        asked = await requested(app_client, owner.token, a, b)
        before = await total_value(database, prices)
        racers = [
            gql(app_client, APPROVE, {"id": asked}, admin),
            gql(app_client, TRANSFER, transfer_input(a, owner.primary_id, "3"), owner.token),
            gql(app_client, TRANSFER, transfer_input(owner.primary_id, a, "2"), owner.token),
            gql(app_client, TRANSFER, transfer_input(b, a, "1"), owner.token),
            gql(
                app_client,
                RECORD,
                {"calls": [call(a, f"r{round_}-{n}", 45) for n in range(5)]},
                api_key,
            ),
        ]
        results = await asyncio.gather(*racers)
        # then nothing failed but by a rule, the merge happened, and no value was made:
        # the ledger equals the balances and the agency's value only fell (calls consume)
        assert all("errors" not in r for r in results), results
        approval = results[0]["data"]["approveMerge"]
        assert approval["userErrors"] == [], approval
        for r in results[1:4]:
            assert {e["code"] for e in r["data"]["transferMinutes"]["userErrors"]} <= {
                "SUBACCOUNT_REMOVED",
                "INSUFFICIENT_MINUTES",
            }, r
        after = await total_value(database, prices)
        assert after <= before
        async with database.read() as conn:
            assert await mismatches(conn) == []
        assert (await read(app_client, owner.token, a))["status"] == "MERGED"


async def test_decisions_at_once_merge_once(app_client, database):
    # given a pending request, decided by two admins at once, twice approve and once reject
    owner, admin = await two_admins(app_client)
    a = await new_client(app_client, owner, "Acme", markup="25")
    b = await new_client(app_client, owner, "Beta", markup="40")
    await gql(app_client, TRANSFER, transfer_input(owner.primary_id, a, "10"), owner.token)
    asked = await requested(app_client, owner.token, a, b)
    _, second = await join(app_client, owner.token, "second.admin@example.com")
    results = await asyncio.gather(
        decide(app_client, admin, APPROVE, asked),
        decide(app_client, second, APPROVE, asked),
        decide(app_client, second, REJECT, asked),
    )
    # then exactly one decision took, the others were told it is not pending
    assert sorted(codes(r)[0][0] if r["userErrors"] else "OK" for r in results) == [
        "MERGE_NOT_PENDING",
        "MERGE_NOT_PENDING",
        "OK",
    ]
    # and the minutes moved at most once
    async with database.read() as conn:
        assert await mismatches(conn) == []
        moved = (
            await conn.execute(select(ledger_t.c.kind).where(ledger_t.c.kind == "MERGE_OUT"))
        ).all()
    assert len(moved) <= 1
