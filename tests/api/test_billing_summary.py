"""The billing summary end to end, on PostgreSQL and SQLite: groups for holders, the pool,
removed and usage-only sub-accounts; prorated line charges; usage at the report's base cost in
a half-hour zone; adjustments in and out of the range; the CSV; errors and statement count."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import event

from tests.api.test_account_manager import REMOVE, UPDATE_AGENCY, new_client
from tests.api.test_lines import add_one, assign
from tests.api.test_reports import SUB_REPORT
from tests.api.test_usage import RECORD, call
from tests.factories import gql, make_agency

SUMMARY = """query($from: Date!, $to: Date!) { viewer { agency {
  billingSummary(range: {from: $from, to: $to}) { from to total { amount } csv
    groups { subAccount { id name status } lineQuantity lineCharges { amount }
      lines { line { number } daysHeld charge { amount } }
      usageCharges { amount } discounts { amount } credits { amount } total { amount } } } } } }"""
ADJUST = """mutation($i: AddBillingAdjustmentInput!) { addBillingAdjustment(input: $i) {
  adjustment { id kind amount { amount } note date } userErrors { code field } } }"""
ADJUSTMENT_NODE = """query($id: ID!) { node(id: $id) { ... on BillingAdjustment {
  kind amount { amount } note date } } }"""
AUDIT = """{ viewer { agency { auditLog(first: 5, kinds: [BILLING_ADJUSTMENT_ADDED]) {
  edges { node { kind subjectId summary } } } } } }"""
ADD_MEMBER = """mutation($i: InviteUserInput!) { inviteUser(input: $i) { userErrors { code } } }"""
KOLKATA = ZoneInfo("Asia/Kolkata")


def local(day: int, hour: int = 10, minute: int = 0, month: int = 10) -> datetime:
    """A moment of 2026 in Kolkata (+5:30), in UTC."""
    return datetime(2026, month, day, hour, minute, tzinfo=KOLKATA).astimezone(UTC)


async def kolkata_agency(client, clock, start=None):
    """Sessions last 14 days: each test's clock stays within them."""
    clock.now = start or local(1, 9)
    owner = await make_agency(client)
    body = await gql(client, UPDATE_AGENCY, {"i": {"timeZone": "Asia/Kolkata"}}, owner.token)
    assert body["data"]["updateAgency"]["userErrors"] == []
    return owner


async def summary(client, owner, first="2026-10-01", last="2026-10-31"):
    body = await gql(client, SUMMARY, {"from": first, "to": last}, owner.token)
    assert "errors" not in body, body
    return body["data"]["viewer"]["agency"]["billingSummary"]


async def record(client, owner, key, calls):
    body = await gql(client, RECORD, {"calls": calls}, key)
    assert body["data"]["recordCalls"]["rejected"] == [], body


async def ingest_key(client, owner):
    from resolvers.api_keys import issue_api_key
    from resolvers.global_id import from_global_id

    services = client.app.state.services
    return (await issue_api_key(services, from_global_id(owner.id)[1], "platform", None))[1]


def by_name(found):
    return {(g["subAccount"] or {"name": "POOL"})["name"]: g for g in found["groups"]}


async def test_groups_for_holders_the_pool_a_removed_and_a_usage_only_sub_account(
    app_client, clock
):
    # given, in Kolkata, three $10-a-month lines on Oct 1: one to Acme, one left in the pool,
    # one to Delta, which is removed on Oct 11 (its line released); Gamma only makes calls
    owner = await kolkata_agency(app_client, clock)
    acme = await new_client(app_client, owner, "Acme")
    delta = await new_client(app_client, owner, "Delta")
    gamma = await new_client(app_client, owner, "Gamma")
    await new_client(app_client, owner, "Idle")  # nothing in October: no group
    to_acme = await add_one(app_client, owner, "+14155550100")
    await add_one(app_client, owner, "+14155550101")
    to_delta = await add_one(app_client, owner, "+14155550102")
    for line, holder in ((to_acme, acme), (to_delta, delta)):
        assert (await assign(app_client, owner, line, holder))["userErrors"] == []
    key = await ingest_key(app_client, owner)
    clock.now = local(5)
    await record(app_client, owner, key, [call(gamma, "g1", 60, "BASIC", started=local(4))])
    clock.now = local(11)
    removed = await gql(app_client, REMOVE, {"id": delta, "to": owner.primary_id}, owner.token)
    assert removed["data"]["removeSubAccount"]["userErrors"] == []
    # when October is summarised (its lines still held are billed to the range's end)
    clock.now = local(12)
    found = await summary(app_client, owner)
    # then each holder is billed for its days, the pool last, the removed one kept
    groups = by_name(found)
    assert [g["subAccount"] and g["subAccount"]["name"] for g in found["groups"]] == [
        "Acme",
        "Delta",
        "Gamma",
        None,
    ]
    assert groups["Acme"]["lines"] == [
        {"line": {"number": "+14155550100"}, "daysHeld": 31, "charge": {"amount": "10.000000"}}
    ]
    assert groups["Delta"]["subAccount"]["status"] == "REMOVED"
    assert (groups["Delta"]["lineQuantity"], groups["Delta"]["lineCharges"]) == (
        1,
        {"amount": "3.230000"},  # Oct 1..10: 10 x 10 / 31 = 3.2258
    )
    assert (groups["Gamma"]["lineQuantity"], groups["Gamma"]["usageCharges"]) == (
        0,
        {"amount": "0.180000"},  # a BASIC minute at base cost
    )
    assert (groups["POOL"]["lineQuantity"], groups["POOL"]["total"]) == (1, {"amount": "10.000000"})
    assert found["total"] == {"amount": "23.410000"}
    assert (found["from"], found["to"]) == ("2026-10-01", "2026-10-31")


async def test_a_line_moved_mid_range_is_prorated_half_up_per_group(app_client, clock):
    # given a $1.00 line held by Acme for 10 days of October, then by Beta
    owner = await kolkata_agency(app_client, clock)
    acme = await new_client(app_client, owner, "Acme")
    beta = await new_client(app_client, owner, "Beta")
    line = await add_one(app_client, owner)
    await gql(
        app_client,
        'mutation($n: [String!]!) { addLines(input: {numbers: $n, monthlyPrice: "1"}) '
        "{ userErrors { code } } }",
        {"n": ["+14155550199"]},
        owner.token,
    )
    await assign(app_client, owner, line, acme)
    clock.now = local(11, 1)  # 01:00 on Oct 11 in Kolkata, still Oct 10 in UTC
    await assign(app_client, owner, line, beta)
    # when October is summarised
    groups = by_name(await summary(app_client, owner))
    # then Acme has Oct 1..10 and Beta Oct 11..31 of the $10 line; the $1 pool line 31 days
    assert groups["Acme"]["lines"][0]["daysHeld"] == 10
    assert groups["Acme"]["lineCharges"] == {"amount": "3.230000"}  # 3.2258 -> 3.23
    assert groups["Beta"]["lines"][0]["daysHeld"] == 21
    assert groups["Beta"]["lineCharges"] == {"amount": "6.770000"}  # 6.7741 -> 6.77
    assert groups["POOL"]["lines"][0]["charge"] == {"amount": "1.000000"}


async def test_usage_charges_are_the_report_s_base_cost_of_the_range_in_kolkata(app_client, clock):
    # given calls just inside and just outside October's local edges (Kolkata is +5:30), one
    # of them running past the client's balance
    owner = await kolkata_agency(app_client, clock, local(25))
    client = await new_client(app_client, owner, "Acme", markup="25")
    key = await ingest_key(app_client, owner)
    clock.now = local(2, 12, month=11)
    calls = [
        call(client, "before", 600, started=local(30, 23, 59, month=9)),  # Sep 30 local
        call(client, "first", 90, started=local(1, 0, 0)),  # 18:30 UTC on Sep 30
        call(client, "overage", 300, "PREMIUM", started=local(15, 12)),  # no minutes: overage
        call(client, "basic", 45, "BASIC", "WEB_WIDGET", "INBOUND", started=local(20, 8)),
        call(client, "last", 30, started=local(31, 23, 59)),  # 18:29 UTC on Oct 31
        call(client, "after", 600, started=local(1, 0, 0, month=11)),
    ]
    await record(app_client, owner, key, calls)
    # when the summary and the report read October
    groups = by_name(await summary(app_client, owner))
    report = await gql(
        app_client,
        SUB_REPORT,
        {"id": client, "from": "2026-10-01", "to": "2026-10-31"},
        owner.token,
    )
    figures = report["data"]["node"]["report"]
    # then usage is the base cost of exactly the four October calls, as the report has it
    expected = Decimal("0.45") + Decimal("1.5") + Decimal("0.12") + Decimal("0.15")
    usage = Decimal(groups["Acme"]["usageCharges"]["amount"])
    assert usage == expected
    assert usage == Decimal(figures["spent"]["amount"]) - Decimal(figures["usageMargin"]["amount"])


async def test_adjustments_dated_in_the_range_are_subtracted_and_others_are_not(app_client, clock):
    owner = await kolkata_agency(app_client, clock)
    acme = await new_client(app_client, owner, "Acme")
    line = await add_one(app_client, owner)
    await assign(app_client, owner, line, acme)
    # when a discount and a credit are dated in October and a credit on Nov 1
    added = []
    for kind, amount, day in (
        ("DISCOUNT", "2.5", "2026-10-31"),
        ("CREDIT", "1.25", "2026-10-01"),
        ("CREDIT", "100", "2026-11-01"),
    ):
        body = await gql(
            app_client,
            ADJUST,
            {
                "i": {
                    "subAccountId": acme,
                    "kind": kind,
                    "amount": amount,
                    "note": "goodwill",
                    "date": day,
                }
            },
            owner.token,
        )
        payload = body["data"]["addBillingAdjustment"]
        assert payload["userErrors"] == [], payload
        added.append(payload["adjustment"])
    # then October counts the two dated in it
    groups = by_name(await summary(app_client, owner))
    assert groups["Acme"]["discounts"] == {"amount": "2.500000"}
    assert groups["Acme"]["credits"] == {"amount": "1.250000"}
    assert groups["Acme"]["total"] == {"amount": "6.250000"}  # 10.00 - 2.50 - 1.25
    # and November the third, with Acme's line
    november = by_name(await summary(app_client, owner, "2026-11-01", "2026-11-30"))
    assert november["Acme"]["credits"] == {"amount": "100.000000"}
    # and each is a node, and in the audit log
    node = await gql(app_client, ADJUSTMENT_NODE, {"id": added[0]["id"]}, owner.token)
    assert node["data"]["node"] == {
        "kind": "DISCOUNT",
        "amount": {"amount": "2.500000"},
        "note": "goodwill",
        "date": "2026-10-31",
    }
    edges = (await gql(app_client, AUDIT, token=owner.token))["data"]["viewer"]["agency"][
        "auditLog"
    ]["edges"]
    assert len(edges) == 3
    assert edges[-1]["node"]["subjectId"] == added[0]["id"]
    assert "discount of $2.50 for Acme dated 2026-10-31" in edges[-1]["node"]["summary"]


async def test_the_csv_has_the_same_figures_one_row_per_group(app_client, clock):
    owner = await kolkata_agency(app_client, clock)
    acme = await new_client(app_client, owner, "Acme")
    line = await add_one(app_client, owner)
    await assign(app_client, owner, line, acme)
    await add_one(app_client, owner, "+14155550101")
    await gql(
        app_client,
        ADJUST,
        {
            "i": {
                "subAccountId": acme,
                "kind": "CREDIT",
                "amount": "0.5",
                "note": "x",
                "date": "2026-10-02",
            }
        },
        owner.token,
    )
    found = await summary(app_client, owner)
    rows = list(csv.DictReader(io.StringIO(found["csv"])))
    assert [
        (
            r["sub_account_id"],
            r["sub_account_name"],
            r["line_quantity"],
            r["line_charges"],
            r["usage_charges"],
            r["discounts"],
            r["credits"],
            r["total"],
        )
        for r in rows
    ] == [
        (acme, "Acme", "1", "10.000000", "0.000000", "0.000000", "0.500000", "9.500000"),
        ("", "Available pool", "1", "10.000000", "0.000000", "0.000000", "0.000000", "10.000000"),
    ]
    assert [g["total"]["amount"] for g in found["groups"]] == [r["total"] for r in rows]


async def test_a_range_backwards_or_over_a_year_is_refused_like_the_reports(app_client, clock):
    owner = await kolkata_agency(app_client, clock)
    for first, last in (("2026-10-02", "2026-10-01"), ("2026-01-01", "2027-01-02")):
        body = await gql(app_client, SUMMARY, {"from": first, "to": last}, owner.token)
        assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT", body


async def test_a_bad_adjustment_says_which_field_and_adds_nothing(app_client, clock):
    owner = await kolkata_agency(app_client, clock)
    acme = await new_client(app_client, owner, "Acme")
    other = await make_agency(app_client)
    cases = [
        ({"amount": "0"}, ("INVALID_INPUT", ["input", "amount"])),
        ({"amount": "-3"}, ("INVALID_INPUT", ["input", "amount"])),
        ({"note": "  "}, ("INVALID_INPUT", ["input", "note"])),
        ({"note": "n" * 501}, ("NOTE_TOO_LONG", ["input", "note"])),
        ({"subAccountId": other.primary_id}, ("NOT_FOUND", ["input", "subAccountId"])),
    ]
    for change, error in cases:
        good = {
            "subAccountId": acme,
            "kind": "CREDIT",
            "amount": "1",
            "note": "n",
            "date": "2026-10-02",
        }
        body = await gql(app_client, ADJUST, {"i": {**good, **change}}, owner.token)
        payload = body["data"]["addBillingAdjustment"]
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [error]
        assert payload["adjustment"] is None
    assert (await summary(app_client, owner))["groups"] == []


async def test_an_agency_member_may_not_read_the_summary_or_adjust(app_client, clock):
    from tests.world import build_world

    world = await build_world(app_client.app.state.services)
    token = world.tokens["AGENCY_MEMBER"]
    body = await gql(app_client, SUMMARY, {"from": "2026-10-01", "to": "2026-10-31"}, token)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    adjust = {
        "subAccountId": world.gid("SubAccount", world.s1_id),
        "kind": "CREDIT",
        "amount": "1",
        "note": "n",
        "date": "2026-10-02",
    }
    body = await gql(app_client, ADJUST, {"i": adjust}, token)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def count_statements(services, run):
    statements: list[str] = []
    database = services.database
    engines = {database.engine.sync_engine, database._read_engine.sync_engine}

    def count(conn, cursor, statement, *args):
        transaction_control = ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA")
        relay = "outbox" in statement or "advisory" in statement
        if not relay and not statement.lstrip().upper().startswith(transaction_control):
            statements.append(statement)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        await run()
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)
    return statements


async def test_the_statement_count_does_not_grow_with_the_sub_accounts(app_client, clock):
    owner = await kolkata_agency(app_client, clock)
    key = await ingest_key(app_client, owner)
    services = app_client.app.state.services
    clock.now = local(2)
    counts = []
    for n in range(2):
        for i in range(1 + 3 * n):  # 1, then 4 more: the plan allows 5
            client = await new_client(app_client, owner, f"C{n}{i}")
            line = await add_one(app_client, owner, f"+1415555{n}{i:03d}")
            await assign(app_client, owner, line, client)
            await record(app_client, owner, key, [call(client, started=local(1, 10))])
        run = lambda: summary(app_client, owner)
        counts.append(len(await count_statements(services, run)))
    assert counts[0] == counts[1] <= 5, counts
