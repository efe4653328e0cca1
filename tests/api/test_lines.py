"""Phone lines and the Available pool end to end: adding (E.164, unique, all or nothing),
assigning, moving, returning, releasing, the history of holdings in agency-local days,
removal with DELETE and TO_POOL, and two assignments of one line at once."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

from persistence import lines as store
from resolvers.global_id import from_global_id
from tests.api.test_account_manager import SUSPEND, UPDATE_AGENCY, new_client
from tests.factories import gql, make_agency

ADD = """mutation($i: AddLinesInput!) { addLines(input: $i) {
  lines { id number monthlyPrice { amount currency } subAccount { id } createdAt }
  userErrors { code message field } } }"""
ASSIGN = """mutation($line: ID!, $to: ID) { assignLine(input: {lineId: $line, subAccountId: $to}) {
  line { id number subAccount { id name } } userErrors { code field } } }"""
RELEASE = """mutation($line: ID!) { releaseLine(input: {lineId: $line}) {
  releasedLineId userErrors { code field } } }"""
POOL = """{ viewer { agency { availableLines { totalCount edges { node { number } } } } } }"""
POOL_PAGE = """query($first: Int, $after: String) { viewer { agency {
  availableLines(first: $first, after: $after) { totalCount edges { node { number } cursor }
  pageInfo { hasNextPage endCursor } } } } }"""
HELD = """query($id: ID!) { node(id: $id) { ... on SubAccount { lineCount
  lines { totalCount edges { node { number subAccount { id } } } }
  report(range: {from: "2026-11-01", to: "2026-11-30"}) { lineCount } } } }"""
LINE = """query($id: ID!) { node(id: $id) { ... on PhoneLine { number subAccount { id } } } }"""
PREVIEW_REMOVAL = """query($id: ID!) { removalPreview(subAccountId: $id) { lineCount } }"""
REMOVE = """mutation($i: RemoveSubAccountInput!) { removeSubAccount(input: $i) {
  subAccount { status } userErrors { code field } } }"""
AUDIT = """{ viewer { agency { auditLog(first: 20) { edges { node {
  kind subjectId summary } } } } } }"""


async def add(client, owner, numbers, price="10"):
    body = await gql(client, ADD, {"i": {"numbers": numbers, "monthlyPrice": price}}, owner.token)
    return body["data"]["addLines"]


async def add_one(client, owner, number="+14155550100"):
    payload = await add(client, owner, [number])
    assert payload["userErrors"] == [], payload
    return payload["lines"][0]["id"]


async def assign(client, owner, line, to):
    body = await gql(client, ASSIGN, {"line": line, "to": to}, owner.token)
    assert "errors" not in body, body
    return body["data"]["assignLine"]


async def pool(client, owner):
    return (await gql(client, POOL, token=owner.token))["data"]["viewer"]["agency"][
        "availableLines"
    ]


async def held(client, owner, sub_account):
    return (await gql(client, HELD, {"id": sub_account}, owner.token))["data"]["node"]


async def history(client, line):
    """The line's holdings, oldest first, as (holder's key or None for the pool, from, to)."""
    services = client.app.state.services
    async with services.database.read() as conn:
        found = await store.holdings_of(conn, from_global_id(line)[1])
    return [(h.sub_account_id, h.from_date, h.to_date) for h in found]


def key(global_id):
    return from_global_id(global_id)[1]


# ---- adding lines ----------------------------------------------------------------------------


async def test_new_lines_are_stored_as_e164_in_the_pool(app_client):
    owner = await make_agency(app_client)
    # when two numbers are added, written the way people write them
    payload = await add(app_client, owner, ["+1 (415) 555-0100", "+44 20 7183 8750"], "12.5")
    # then they are E.164, at the price, in the pool
    assert payload["userErrors"] == []
    assert [(line["number"], line["subAccount"]) for line in payload["lines"]] == [
        ("+14155550100", None),
        ("+442071838750", None),
    ]
    assert payload["lines"][0]["monthlyPrice"] == {"amount": "12.500000", "currency": "USD"}
    assert (await pool(app_client, owner))["totalCount"] == 2


@pytest.mark.parametrize(
    "number",
    ["4155550101", "abc", "+1555", "+1 415 555 0101 ext 3", "00 44 20 7183 8750", ""],
)
async def test_an_invalid_number_refuses_the_whole_call_naming_its_item(app_client, number):
    owner = await make_agency(app_client)
    # when the second number has no country code (or is no number at all)
    payload = await add(app_client, owner, ["+14155550100", number])
    # then nothing is added and the error names the offending item
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("INVALID_PHONE_NUMBER", ["input", "numbers", "1"])
    ]
    assert payload["lines"] == []
    assert (await pool(app_client, owner))["totalCount"] == 0


async def test_a_number_twice_in_one_call_is_taken_and_nothing_is_added(app_client):
    owner = await make_agency(app_client)
    payload = await add(app_client, owner, ["+14155550100", "+14155550101", "+1 415 555 0100"])
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("LINE_NUMBER_TAKEN", ["input", "numbers", "2"])
    ]
    assert (await pool(app_client, owner))["totalCount"] == 0


async def test_a_live_number_is_taken_a_released_one_may_return(app_client):
    owner = await make_agency(app_client)
    other = await make_agency(app_client)
    line = await add_one(app_client, owner, "+14155550100")
    # an unreleased line's number is taken (in any spelling) ...
    again = await add(app_client, owner, ["+14155550199", "+1 415-555-0100"])
    assert [(e["code"], e["field"]) for e in again["userErrors"]] == [
        ("LINE_NUMBER_TAKEN", ["input", "numbers", "1"])
    ]
    # ... in this agency only
    assert (await add(app_client, other, ["+14155550100"]))["userErrors"] == []
    # and once released it may be added again, as a new line
    released = await gql(app_client, RELEASE, {"line": line}, owner.token)
    assert released["data"]["releaseLine"]["userErrors"] == []
    back = await add(app_client, owner, ["+14155550100"])
    assert back["userErrors"] == []
    assert back["lines"][0]["id"] != line


async def test_at_most_100_lines_per_call(app_client):
    owner = await make_agency(app_client)
    numbers = [f"+1415200{n:04d}" for n in range(101)]
    too_many = await add(app_client, owner, numbers)
    assert [(e["code"], e["field"]) for e in too_many["userErrors"]] == [
        ("INVALID_INPUT", ["input", "numbers"])
    ]
    assert (await add(app_client, owner, numbers[:100]))["userErrors"] == []
    assert (await pool(app_client, owner))["totalCount"] == 100
    assert [(e["code"]) for e in (await add(app_client, owner, []))["userErrors"]] == [
        "INVALID_INPUT"
    ]


@pytest.mark.parametrize("price", ["-0.01", "1.0000001"])
async def test_a_monthly_price_is_zero_or_more_to_the_micro_dollar(app_client, price):
    owner = await make_agency(app_client)
    payload = await add(app_client, owner, ["+14155550100"], price)
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("INVALID_INPUT", ["input", "monthlyPrice"])
    ]
    assert (await add(app_client, owner, ["+14155550100"], "0"))["userErrors"] == []


async def test_the_pool_pages_by_keyset(app_client):
    owner = await make_agency(app_client)
    await add(app_client, owner, [f"+1415200{n:04d}" for n in range(5)])
    seen, after = [], None
    while True:
        body = await gql(app_client, POOL_PAGE, {"first": 2, "after": after}, owner.token)
        page = body["data"]["viewer"]["agency"]["availableLines"]
        assert page["totalCount"] == 5
        seen += [e["node"]["number"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    # each line once (lines added together share their creation time; the id orders them)
    assert sorted(seen) == [f"+1415200{n:04d}" for n in range(5)]


# ---- assigning, moving, returning, releasing -------------------------------------------------


async def test_a_line_is_assigned_moved_and_returned_to_the_pool(app_client):
    owner = await make_agency(app_client)
    a = await new_client(app_client, owner, "Acme")
    b = await new_client(app_client, owner, "Beta")
    line = await add_one(app_client, owner)
    # from the pool to Acme
    payload = await assign(app_client, owner, line, a)
    assert payload == {
        "line": {"id": line, "number": "+14155550100", "subAccount": {"id": a, "name": "Acme"}},
        "userErrors": [],
    }
    assert (await pool(app_client, owner))["totalCount"] == 0
    assert await held(app_client, owner, a) == {
        "lineCount": 1,
        "lines": {
            "totalCount": 1,
            "edges": [{"node": {"number": "+14155550100", "subAccount": {"id": a}}}],
        },
        "report": {"lineCount": 1},
    }
    # from Acme to Beta
    await assign(app_client, owner, line, b)
    assert (await held(app_client, owner, a))["lineCount"] == 0
    assert (await held(app_client, owner, b))["lineCount"] == 1
    # back to the pool
    back = await assign(app_client, owner, line, None)
    assert back["line"]["subAccount"] is None
    assert (await held(app_client, owner, b))["lineCount"] == 0
    assert (await pool(app_client, owner))["totalCount"] == 1
    found = (await gql(app_client, LINE, {"id": line}, owner.token))["data"]["node"]
    assert found == {"number": "+14155550100", "subAccount": None}


async def test_assigning_to_where_it_is_changes_nothing(app_client):
    owner = await make_agency(app_client)
    a = await new_client(app_client, owner, "Acme")
    line = await add_one(app_client, owner)
    await assign(app_client, owner, line, a)
    again = await assign(app_client, owner, line, a)
    assert again["userErrors"] == [] and again["line"]["subAccount"]["id"] == a
    assert len(await history(app_client, line)) == 2


async def test_no_line_moves_into_or_out_of_a_suspended_sub_account(app_client):
    owner = await make_agency(app_client)
    a = await new_client(app_client, owner, "Acme")
    b = await new_client(app_client, owner, "Beta")
    in_pool = await add_one(app_client, owner, "+14155550100")
    in_a = await add_one(app_client, owner, "+14155550101")
    await assign(app_client, owner, in_a, a)
    await gql(app_client, SUSPEND, {"id": a}, owner.token)
    # not into it
    into = await assign(app_client, owner, in_pool, a)
    assert into["userErrors"] == [
        {"code": "SUBACCOUNT_SUSPENDED", "field": ["input", "subAccountId"]}
    ]
    # not out of it, to another sub-account or to the pool, nor released
    for target in (b, None):
        out = await assign(app_client, owner, in_a, target)
        assert out["userErrors"] == [{"code": "SUBACCOUNT_SUSPENDED", "field": ["input", "lineId"]}]
    released = await gql(app_client, RELEASE, {"line": in_a}, owner.token)
    assert released["data"]["releaseLine"]["userErrors"] == [
        {"code": "SUBACCOUNT_SUSPENDED", "field": ["input", "lineId"]}
    ]
    assert (await held(app_client, owner, a))["lineCount"] == 1
    assert len(await history(app_client, in_a)) == 2


async def test_no_line_moves_into_a_removed_sub_account(app_client):
    owner = await make_agency(app_client)
    a = await new_client(app_client, owner, "Acme")
    line = await add_one(app_client, owner)
    removed = await gql(
        app_client, REMOVE, {"i": {"id": a, "minutesToId": owner.primary_id}}, owner.token
    )
    assert removed["data"]["removeSubAccount"]["userErrors"] == []
    into = await assign(app_client, owner, line, a)
    assert into["userErrors"] == [
        {"code": "SUBACCOUNT_REMOVED", "field": ["input", "subAccountId"]}
    ]
    assert (await pool(app_client, owner))["totalCount"] == 1


async def test_a_released_line_is_gone_but_its_history_stays(app_client, clock):
    owner = await make_agency(app_client)
    a = await new_client(app_client, owner, "Acme")
    line = await add_one(app_client, owner)
    await assign(app_client, owner, line, a)
    body = await gql(app_client, RELEASE, {"line": line}, owner.token)
    assert body["data"]["releaseLine"] == {"releasedLineId": line, "userErrors": []}
    assert (await gql(app_client, LINE, {"id": line}, owner.token))["data"]["node"] is None
    assert (await held(app_client, owner, a))["lineCount"] == 0
    rows = await history(app_client, line)
    assert len(rows) == 2 and all(to is not None for _, _, to in rows)
    # released once: a second release, or an assignment, finds no line
    again = await gql(app_client, RELEASE, {"line": line}, owner.token)
    assert again["data"]["releaseLine"]["userErrors"] == [
        {"code": "NOT_FOUND", "field": ["input", "lineId"]}
    ]
    moved = await assign(app_client, owner, line, a)
    assert moved["userErrors"] == [{"code": "NOT_FOUND", "field": ["input", "lineId"]}]


async def test_the_history_keeps_every_holding_in_the_agencys_local_days(app_client, clock):
    # given an agency in New York and a line added on Nov 10 (local)
    clock.now = datetime(2026, 11, 10, 17, 0, tzinfo=UTC)
    owner = await make_agency(app_client)
    await gql(app_client, UPDATE_AGENCY, {"i": {"timeZone": "America/New_York"}}, owner.token)
    a = await new_client(app_client, owner, "Acme")
    b = await new_client(app_client, owner, "Beta")
    line = await add_one(app_client, owner)
    # when it goes to Acme at 02:30 UTC on Nov 12, still Nov 11 in New York
    clock.now = datetime(2026, 11, 12, 2, 30, tzinfo=UTC)
    await assign(app_client, owner, line, a)
    # to Beta and back to the pool on Nov 15 (local), and released on Nov 20
    clock.now = datetime(2026, 11, 15, 15, 0, tzinfo=UTC)
    await assign(app_client, owner, line, b)
    clock.advance(timedelta(hours=1))
    await assign(app_client, owner, line, None)
    clock.now = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    await gql(app_client, RELEASE, {"line": line}, owner.token)
    # then each holding is a row of local days, [from, to), none rewritten
    assert await history(app_client, line) == [
        (None, date(2026, 11, 10), date(2026, 11, 11)),
        (key(a), date(2026, 11, 11), date(2026, 11, 15)),
        (key(b), date(2026, 11, 15), date(2026, 11, 15)),
        (None, date(2026, 11, 15), date(2026, 11, 20)),
    ]


async def test_moves_are_in_the_audit_log(app_client):
    owner = await make_agency(app_client)
    a = await new_client(app_client, owner, "Acme")
    line = await add_one(app_client, owner)
    await assign(app_client, owner, line, a)
    await gql(app_client, RELEASE, {"line": line}, owner.token)
    edges = (await gql(app_client, AUDIT, token=owner.token))["data"]["viewer"]["agency"][
        "auditLog"
    ]["edges"]
    entries = [e["node"] for e in edges][:3]
    assert entries == [
        {
            "kind": "LINE_RELEASED",
            "subjectId": line,
            "summary": "released the line +14155550100 from Acme",
        },
        {
            "kind": "LINE_ASSIGNED",
            "subjectId": line,
            "summary": "moved the line +14155550100 from the Available pool to Acme",
        },
        {
            "kind": "LINES_ADDED",
            "subjectId": line,
            "summary": "added 1 line to the Available pool at $10.00 a month: +14155550100",
        },
    ]


# ---- removal -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [None, "DELETE", "TO_POOL"])
async def test_removal_releases_the_lines_or_pools_them(app_client, mode):
    owner = await make_agency(app_client)
    a = await new_client(app_client, owner, "Acme")
    lines = [await add_one(app_client, owner, f"+1415555010{n}") for n in range(2)]
    for line in lines:
        await assign(app_client, owner, line, a)
    preview = await gql(app_client, PREVIEW_REMOVAL, {"id": a}, owner.token)
    assert preview["data"]["removalPreview"] == {"lineCount": 2}
    # when Acme is removed
    removal = {"id": a, "minutesToId": owner.primary_id}
    if mode is not None:
        removal["lines"] = mode
    body = await gql(app_client, REMOVE, {"i": removal}, owner.token)
    assert body["data"]["removeSubAccount"]["userErrors"] == []
    # then its lines are in the pool (TO_POOL) or gone (DELETE, the default)
    to_pool = mode == "TO_POOL"
    assert (await pool(app_client, owner))["totalCount"] == (2 if to_pool else 0)
    assert (await held(app_client, owner, a))["lineCount"] == 0
    for line in lines:
        rows = await history(app_client, line)
        assert [holder for holder, _, _ in rows] == (
            [None, key(a), None] if to_pool else [None, key(a)]
        )
        assert [to is None for _, _, to in rows][-1] is to_pool
    entry = (await gql(app_client, AUDIT, token=owner.token))["data"]["viewer"]["agency"][
        "auditLog"
    ]["edges"][0]["node"]
    assert entry["kind"] == "SUBACCOUNT_REMOVED"
    assert entry["summary"].endswith(
        "; its 2 lines went to the Available pool" if to_pool else "; its 2 lines were released"
    )


# ---- concurrency ---------------------------------------------------------------------------


async def test_simultaneous_assignments_of_one_line_keep_one_unbroken_history(app_client):
    owner = await make_agency(app_client)
    targets = [await new_client(app_client, owner, f"Client {n}") for n in range(3)] + [None]
    line = await add_one(app_client, owner)
    # when eight assignments of the one line run at once
    answers = await asyncio.gather(
        *(assign(app_client, owner, line, targets[n % 4]) for n in range(8))
    )
    # then each one worked
    assert all(answer["userErrors"] == [] for answer in answers), answers
    # and the history is one chain: each holding ends where the next begins, one is open,
    # and it is the line's holder now
    rows = await history(app_client, line)
    assert [to for _, _, to in rows[:-1]] == [start for _, start, _ in rows[1:]]
    assert [to is None for _, _, to in rows] == [False] * (len(rows) - 1) + [True]
    holders = [holder for holder, _, _ in rows]
    assert all(x != y for x, y in itertools.pairwise(holders))  # every row a move
    now = (await gql(app_client, LINE, {"id": line}, owner.token))["data"]["node"]["subAccount"]
    assert holders[-1] == (None if now is None else key(now["id"]))
    # and every move is in the audit log once
    edges = (await gql(app_client, AUDIT, token=owner.token))["data"]["viewer"]["agency"][
        "auditLog"
    ]["edges"]
    assert sum(e["node"]["kind"] == "LINE_ASSIGNED" for e in edges) == len(rows) - 1


# ---- tenant isolation ----------------------------------------------------------------------


async def test_another_agencys_lines_and_sub_accounts_read_as_absent(app_client):
    owner = await make_agency(app_client)
    other = await make_agency(app_client)
    theirs = await add_one(app_client, other, "+14155550100")
    their_client = await new_client(app_client, other, "Theirs", "theirs@c.example")
    await assign(app_client, other, theirs, their_client)
    mine = await add_one(app_client, owner, "+14155550101")
    # their line cannot be read, moved, pooled or released by us
    assert (await gql(app_client, LINE, {"id": theirs}, owner.token))["data"]["node"] is None
    for target in (owner.primary_id, None):
        moved = await assign(app_client, owner, theirs, target)
        assert moved["userErrors"] == [{"code": "NOT_FOUND", "field": ["input", "lineId"]}]
    released = await gql(app_client, RELEASE, {"line": theirs}, owner.token)
    assert released["data"]["releaseLine"]["userErrors"][0]["code"] == "NOT_FOUND"
    # nor can our line go to their sub-account
    into = await assign(app_client, owner, mine, their_client)
    assert into["userErrors"] == [{"code": "NOT_FOUND", "field": ["input", "subAccountId"]}]
    # and theirs is where it was, its history untouched
    assert (await held(app_client, other, their_client))["lineCount"] == 1
    assert len(await history(app_client, theirs)) == 2


async def test_no_line_is_left_in_a_sub_account_removed_while_it_was_assigned(app_client):
    owner = await make_agency(app_client, plan="Agency Unlimited")
    for n in range(4):
        client = await new_client(app_client, owner, f"Client {n}", f"c{n}@clients.example")
        line = await add_one(app_client, owner, f"+1415555010{n}")
        # when the line is assigned to the client while the client is being removed
        removal = {"i": {"id": client, "minutesToId": owner.primary_id}}
        answer, removed = await asyncio.gather(
            assign(app_client, owner, line, client), gql(app_client, REMOVE, removal, owner.token)
        )
        # then either the assignment came first and the removal released the line, or the
        # removal came first and the assignment was refused
        assert removed["data"]["removeSubAccount"]["userErrors"] == []
        assert answer["userErrors"] in (
            [],
            [{"code": "SUBACCOUNT_REMOVED", "field": ["input", "subAccountId"]}],
        )
        assert (await held(app_client, owner, client))["lineCount"] == 0
        rows = await history(app_client, line)
        assert all(to is not None for _, _, to in rows) or rows[-1][0] is None
