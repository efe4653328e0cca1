"""The per-call list: `SubAccount.calls(range)`, newest first and keyset-paged, each call with
its cost at the client price, its base cost, its overage and who paid; a range's costs add up
exactly to the report's spent for the same range, in any zone and at any markup."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from persistence.ledger import balance_t
from resolvers.global_id import from_global_id
from tests.api.test_account_manager import SOURCE, new_client
from tests.api.test_report_zones import BASE, WEB_WIDGET_BASIC, half_up, midnight, money
from tests.api.test_reports import SUB_REPORT, UPDATE_AGENCY
from tests.api.test_usage import RECORD, call
from tests.factories import gql

CALLS = """query($id: ID!, $from: Date!, $to: Date!, $first: Int, $after: String) {
  node(id: $id) { ... on SubAccount {
    calls(range: {from: $from, to: $to}, first: $first, after: $after) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { cursor node { externalId startedAt durationSeconds direction channel status tier
        overageSeconds cost { amount } baseCost { amount } fundedBy { id } } } } } } }"""
ZONES = ["Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns", "Pacific/Chatham", "UTC"]
DAY0 = date(2026, 10, 28)
DAYS = 5


@dataclass(frozen=True)
class Billed:
    external_id: str
    account: str
    started: datetime
    duration: int
    overage: int
    cost: int
    base: int
    funder: str


def bill(batch: list[dict], markups: dict, funders: dict, balances: dict) -> list[Billed]:
    """The calls billed by hand: in start order, each against what its funder still holds."""
    left = dict(balances)
    out = []
    for c in sorted(batch, key=lambda c: (c["startedAt"], c["externalId"])):
        account, tier, duration = c["subAccountId"], c["tier"], c["durationSeconds"]
        web = c["channel"] == "WEB_WIDGET" and c["direction"] == "INBOUND"
        base = WEB_WIDGET_BASIC if web and tier == "BASIC" else BASE[tier]
        price = Fraction(base) * (1 + Fraction(markups[account]) / 100)
        funder = funders[account]
        paid = min(duration, left[funder, tier])
        left[funder, tier] -= paid
        out.append(
            Billed(
                c["externalId"],
                account,
                datetime.fromisoformat(c["startedAt"]),
                duration,
                duration - paid,
                half_up(price * duration / 60),
                half_up(Fraction(base * duration, 60)),
                funder,
            )
        )
    return out


async def every_call(app_client, token, account: str, dates: dict, size: int) -> list[dict]:
    """The whole list, page by page; checks each page's shape on the way."""
    found: list[dict] = []
    after = None
    while True:
        body = await gql(
            app_client, CALLS, {"id": account, **dates, "first": size, "after": after}, token
        )
        connection = body["data"]["node"]["calls"]
        edges = connection["edges"]
        assert len(edges) <= size
        found.extend(e["node"] for e in edges)
        if not connection["pageInfo"]["hasNextPage"]:
            assert connection["totalCount"] == len(found)
            return found
        assert len(edges) == size
        after = connection["pageInfo"]["endCursor"]
        assert after == edges[-1]["cursor"]


calls_strategy = st.lists(
    st.tuples(
        st.integers(0, DAYS * 86_400 - 1),  # start, seconds after DAY0's local midnight
        st.integers(0, 900),
        st.sampled_from(["BASIC", "PREMIUM"]),
        st.sampled_from(["PHONE", "WEB_WIDGET"]),
        st.sampled_from(["INBOUND", "OUTBOUND"]),
        st.integers(0, 2),  # whose: the 25 % client, the other client, the primary
    ),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    zone_name=st.sampled_from(ZONES),
    markup=st.sampled_from(["33.33", "0.01", "12.5", "7", "199.99"]),
    raw=calls_strategy,
    first=st.integers(-1, DAYS),
    length=st.integers(0, DAYS),
    size=st.integers(1, 9),
)
@example("Asia/Kolkata", "33.33", [(86_400 - 1, 61, "PREMIUM", "PHONE", "OUTBOUND", 1)], 0, 0, 1)
async def test_a_ranges_calls_cost_exactly_what_its_report_says(
    app_client, clean_setup, database, clock, zone_name, markup, raw, first, length, size
):
    # given an agency in the zone; a client at 25 % with its own minutes, one at a random markup
    # paid by the agency, and the primary; calls of all three over a few days
    zone = ZoneInfo(zone_name)
    clock.now = midnight(DAY0 + timedelta(days=DAYS + 1), zone)
    owner, client, key = await clean_setup()
    await gql(app_client, UPDATE_AGENCY, {"i": {"timeZone": zone_name}}, owner.token)
    other = await new_client(app_client, owner, "Other", markup=markup)
    await gql(app_client, SOURCE, {"id": other}, owner.token)
    accounts = [client, other, owner.primary_id]
    markups = {client: Decimal(25), other: Decimal(markup), owner.primary_id: Decimal(0)}
    funders = {client: client, other: owner.primary_id, owner.primary_id: owner.primary_id}
    batch = [
        call(accounts[whose], None, duration, tier, channel, direction, "COMPLETED", started)
        for at, duration, tier, channel, direction, whose in raw
        for started in [midnight(DAY0, zone) + timedelta(seconds=at)]
    ]
    async with database.read() as conn:
        ids = {from_global_id(g)[1]: g for g in accounts}
        held = await conn.execute(select(balance_t))
        balances = defaultdict(
            int,
            {(ids[b.sub_account_id], b.tier): b.seconds for b in held if b.sub_account_id in ids},
        )
    recorded = await gql(app_client, RECORD, {"calls": batch}, key)
    assert recorded["data"]["recordCalls"]["accepted"] == len(batch), recorded
    expected = bill(batch, markups, funders, balances)

    # when listing each one's calls of a range of local dates, page by page
    start = DAY0 + timedelta(days=first)
    end = start + timedelta(days=length)
    dates = {"from": start.isoformat(), "to": end.isoformat()}
    for account in accounts:
        listed = await every_call(app_client, owner.token, account, dates, size)
        report = (await gql(app_client, SUB_REPORT, {"id": account, **dates}, owner.token))["data"][
            "node"
        ]["report"]

        # then they are exactly its calls started on those dates, newest first, each billed as
        # by hand, and they add up to the report's figures
        mine = {
            b.external_id: b
            for b in expected
            if b.account == account and start <= b.started.astimezone(zone).date() <= end
        }
        assert sorted(c["externalId"] for c in listed) == sorted(mine)
        starts = [datetime.fromisoformat(c["startedAt"]) for c in listed]
        assert starts == sorted(starts, reverse=True)
        for c in listed:
            b = mine[c["externalId"]]
            assert (
                datetime.fromisoformat(c["startedAt"]),
                c["durationSeconds"],
                c["overageSeconds"],
                money(c["cost"]),
                money(c["baseCost"]),
                c["fundedBy"]["id"],
            ) == (b.started, b.duration, b.overage, b.cost, b.base, b.funder)
        assert sum(money(c["cost"]) for c in listed) == money(report["spent"])
        assert sum(money(c["cost"]) - money(c["baseCost"]) for c in listed) == money(
            report["usageMargin"]
        )
        assert len(listed) == report["calls"]["total"]


async def test_pages_follow_each_other_without_gaps_or_repeats_when_calls_share_a_start(
    app_client, setup
):
    owner, client, key = setup
    at = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    batch = [call(client, f"c{n:02}", 1, started=at + timedelta(minutes=n // 4)) for n in range(12)]
    assert (await gql(app_client, RECORD, {"calls": batch}, key))["data"]["recordCalls"][
        "accepted"
    ] == 12
    dates = {"from": "2026-11-20", "to": "2026-11-20"}
    listed = await every_call(app_client, owner.token, client, dates, 5)
    assert sorted(c["externalId"] for c in listed) == [f"c{n:02}" for n in range(12)]
    assert [c["startedAt"] for c in listed] == sorted(
        (c["startedAt"] for c in listed), reverse=True
    )


async def test_a_bad_cursor_or_page_size_or_range_is_refused(app_client, setup):
    owner, client, _ = setup
    dates = {"from": "2026-11-20", "to": "2026-11-21"}
    for variables in [
        {"after": "not-a-cursor"},
        {"first": 0},
        {"first": 101},
        {"from": "2026-11-22", "to": "2026-11-21"},
        {"from": "2025-01-01", "to": "2026-11-21"},
    ]:
        body = await gql(app_client, CALLS, {"id": client, **dates, **variables}, owner.token)
        assert body["data"]["node"] is None, body
        [error] = body["errors"]
        assert error["extensions"]["code"] == "INVALID_INPUT", (variables, error)


@pytest.mark.parametrize("dates", [{"from": "2026-11-20", "to": "2026-11-20"}])
async def test_a_call_past_an_empty_balance_lists_its_overage(app_client, setup, dates):
    # the client holds 480 PREMIUM seconds: a 300 s call, then one of 400 s (220 s over)
    owner, client, key = setup
    at = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    batch = [
        call(client, "first", 300, started=at),
        call(client, "second", 400, started=at + timedelta(minutes=10)),
    ]
    await gql(app_client, RECORD, {"calls": batch}, key)
    listed = await every_call(app_client, owner.token, client, dates, 10)
    assert [(c["externalId"], c["overageSeconds"]) for c in listed] == [
        ("second", 220),
        ("first", 0),
    ]
    # at 25 % over 0.30 a minute: 300 s cost 1.875, 400 s cost 2.50; the overage call costs
    # its full duration
    assert [(c["cost"]["amount"], c["baseCost"]["amount"]) for c in listed] == [
        ("2.500000", "2.000000"),
        ("1.875000", "1.500000"),
    ]


async def test_after_a_merge_the_targets_calls_and_messaging_include_the_sources(app_client):
    from resolvers.api_keys import issue_api_key
    from tests.api.test_account_manager import TRANSFER, transfer_input
    from tests.api.test_merge import APPROVE, decide, key, requested, two_admins
    from tests.api.test_messaging import RECORD as RECORD_MESSAGES
    from tests.api.test_messaging import STATS, message

    owner, admin = await two_admins(app_client)
    a = await new_client(app_client, owner, "Acme", markup="25")
    b = await new_client(app_client, owner, "Beta", markup="33.33")
    for client in (a, b):
        await gql(app_client, TRANSFER, transfer_input(owner.primary_id, client, "1"), owner.token)
    services = app_client.app.state.services
    _, api_key = await issue_api_key(services, key(owner.id), "platform", None)
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    # calls of both, interleaved in time, with the same start across the two accounts
    batch = [
        call(a if n % 2 else b, f"k{n:02}", 20 + n, started=at + timedelta(minutes=n // 3))
        for n in range(14)
    ]
    assert (await gql(app_client, RECORD, {"calls": batch}, api_key))["data"]["recordCalls"][
        "accepted"
    ] == 14
    texts = [
        message(a, "ma", "thread-a", "OUTBOUND", at),
        message(a, "mr", "thread-a", "INBOUND", at + timedelta(hours=1)),
        message(b, "mb", "thread-b", "OUTBOUND", at),
    ]
    await gql(app_client, RECORD_MESSAGES, {"m": texts}, api_key)
    dates = {"from": "2026-11-02", "to": "2026-11-02"}
    before = {c["externalId"]: c for c in await every_call(app_client, owner.token, a, dates, 4)}
    before |= {c["externalId"]: c for c in await every_call(app_client, owner.token, b, dates, 4)}

    # when A merges into B
    asked = await requested(app_client, owner.token, a, b)
    assert (await decide(app_client, admin, APPROVE, asked))["userErrors"] == []

    # then B's list holds both accounts' calls, newest first across both, with the costs they
    # had, adding up to B's report; and B's messaging figures count A's conversation
    listed = await every_call(app_client, owner.token, b, dates, 4)
    assert sorted(c["externalId"] for c in listed) == sorted(before)
    assert [(c["startedAt"]) for c in listed] == sorted(
        (c["startedAt"] for c in listed), reverse=True
    )
    assert all(c == before[c["externalId"]] for c in listed)
    report = (await gql(app_client, SUB_REPORT, {"id": b, **dates}, owner.token))["data"]["node"][
        "report"
    ]
    assert sum(money(c["cost"]) for c in listed) == money(report["spent"])
    stats = (await gql(app_client, STATS, {"id": b, **dates}, owner.token))["data"]["node"][
        "messaging"
    ]
    assert (stats["sent"], stats["received"], stats["newConversations"]) == (2, 1, 2)
    assert stats["respondedConversations"] == 1
    # A keeps its own list for the admins who read it
    assert len(await every_call(app_client, owner.token, a, dates, 10)) == 7
