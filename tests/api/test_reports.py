"""Reports over date ranges read the rollups that ingestion maintains."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from agencyhub.settings import Settings
from domain.reporting import local_range
from persistence.queries.reports import usage_in_windows
from persistence.usage import call_t
from resolvers.context import RequestContext
from schema import build_schema
from tests.api.test_account_manager import SUSPEND, TRANSFER, new_client, transfer_input
from tests.api.test_usage import RECORD, call
from tests.factories import gql

SUB_REPORT = """query($id: ID!, $from: Date!, $to: Date!) { node(id: $id) { ... on SubAccount {
  report(range: {from: $from, to: $to}) {
    calls { total inbound outbound byStatus { status count } }
    minutesUsed { tier seconds } spent { amount } usageMargin { amount }
    walletBalance { amount } nextBillingDate
    hours: series(granularity: HOUR) { start calls seconds spent { amount } }
    days: series(granularity: DAY) { start calls seconds }
    health { kind message runwayDays } } } } }"""
AGENCY_REPORT = """query($from: Date!, $to: Date!, $order: ClientOrder, $first: Int,
  $after: String) { viewer { agency { report(range: {from: $from, to: $to}) {
  totalMinutesUsed usageMargin { amount }
  clients(first: $first, after: $after, orderBy: $order) { totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { subAccount { name } minutesUsed spent { amount } usageMargin { amount }
                   health { kind } } } } } } } }"""

DAY1 = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
DAY2 = datetime(2026, 11, 3, 17, 40, tzinfo=UTC)


async def test_a_sub_account_report_sums_its_calls_for_the_range(app_client, setup):
    owner, client, key = setup  # client at 25 % markup, 480 PREMIUM seconds
    calls = [
        call(client, "a", 60, started=DAY1, direction="INBOUND"),
        call(client, "b", 120, started=DAY1.replace(minute=40)),
        call(client, "c", 30, started=DAY2, status="FAILED"),
        call(client, "outside", 600, started=datetime(2026, 10, 1, tzinfo=UTC)),
    ]
    await gql(app_client, RECORD, {"calls": calls}, key)
    body = await gql(
        app_client,
        SUB_REPORT,
        {"id": client, "from": "2026-11-02", "to": "2026-11-03"},
        owner.token,
    )
    report = body["data"]["node"]["report"]
    assert report["calls"]["total"] == 3 and report["calls"]["inbound"] == 1
    assert {s["status"]: s["count"] for s in report["calls"]["byStatus"]}["FAILED"] == 1
    assert report["minutesUsed"] == [
        {"tier": "BASIC", "seconds": 0},
        {"tier": "PREMIUM", "seconds": 210},
    ]
    # 210 s at $0.375/min (client price) = $1.3125; base $0.30/min: margin $0.2625
    assert report["spent"] == {"amount": "1.312500"}
    assert report["usageMargin"] == {"amount": "0.262500"}
    assert [(h["calls"], h["seconds"]) for h in report["hours"]] == [(2, 180), (1, 30)]
    assert [d["start"][:10] for d in report["days"]] == ["2026-11-02", "2026-11-03"]
    kinds = {f["kind"] for f in report["health"]}
    # the October call used the whole balance, so November's calls ran as overage
    assert "OVERAGE" in kinds


async def test_health_flags_overage_and_suspension(app_client, setup):
    owner, client, key = setup
    await gql(app_client, RECORD, {"calls": [call(client, "big", 900, started=DAY1)]}, key)
    await gql(app_client, SUSPEND, {"id": client}, owner.token)
    body = await gql(
        app_client,
        SUB_REPORT,
        {"id": client, "from": "2026-11-01", "to": "2026-11-30"},
        owner.token,
    )
    kinds = {f["kind"] for f in body["data"]["node"]["report"]["health"]}
    assert {"OVERAGE", "SUSPENDED"} <= kinds


async def test_the_agency_report_sorts_and_pages_its_clients(app_client, setup):
    owner, client, key = setup
    second = await new_client(app_client, owner, "Second", markup="0")
    await gql(
        app_client,
        RECORD,
        {"calls": [call(client, "x", 60, started=DAY1), call(second, "y", 300, started=DAY1)]},
        key,
    )
    variables = {
        "from": "2026-11-01",
        "to": "2026-11-30",
        "order": {"field": "SPENT", "direction": "DESC"},
        "first": 2,
    }
    report = (await gql(app_client, AGENCY_REPORT, variables, owner.token))["data"]["viewer"][
        "agency"
    ]["report"]
    assert report["totalMinutesUsed"] == "6"
    clients = report["clients"]
    assert clients["totalCount"] == 3
    assert [e["node"]["subAccount"]["name"] for e in clients["edges"]] == ["Second", "Client"]
    assert clients["pageInfo"]["hasNextPage"] is True
    rest = await gql(
        app_client,
        AGENCY_REPORT,
        {**variables, "after": clients["pageInfo"]["endCursor"]},
        owner.token,
    )
    names = [
        e["node"]["subAccount"]["name"]
        for e in rest["data"]["viewer"]["agency"]["report"]["clients"]["edges"]
    ]
    assert len(names) == 1


async def test_a_backwards_range_is_refused(app_client, setup):
    owner, client, _ = setup
    body = await gql(
        app_client,
        SUB_REPORT,
        {"id": client, "from": "2026-11-03", "to": "2026-11-01"},
        owner.token,
    )
    assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT"


ZONES = ["UTC", "America/New_York", "Asia/Tokyo", "Europe/Berlin", "Australia/Sydney"]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    calls=st.lists(
        st.tuples(st.integers(0, 8 * 24 - 1), st.integers(0, 59), st.integers(0, 900)),
        min_size=1,
        max_size=40,
    ),
    first=st.integers(0, 8),
    length=st.integers(0, 8),
    zone=st.sampled_from(ZONES),
)
async def test_range_totals_equal_the_raw_calls_in_any_zone(
    app_client, clean_setup, database, calls, first, length, zone
):
    """Whole UTC days come from the daily rollup, partial days from the hourly one: together
    they count each call of the local range exactly once."""
    _, client, key = await clean_setup()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    batch = [
        call(client, duration=duration, started=start + timedelta(hours=hour, minutes=minute))
        for hour, minute, duration in calls
    ]
    assert (await gql(app_client, RECORD, {"calls": batch}, key))["data"]["recordCalls"][
        "accepted"
    ] == len(batch)
    day = date(2026, 10, 31) + timedelta(days=first)
    window = local_range(day, day + timedelta(days=length), zone)
    previous = window.previous(zone)
    burn = local_range(day + timedelta(days=length // 2), day + timedelta(days=length), zone)

    async def raw(conn, r):
        inside = (call_t.c.started_at >= r.start_utc) & (call_t.c.started_at < r.end_utc)
        row = await conn.execute(
            select(func.count(), func.coalesce(func.sum(call_t.c.duration_seconds), 0)).where(
                inside
            )
        )
        return tuple(row.one())

    async with database.read() as conn:
        agency_id = await conn.scalar(select(call_t.c.agency_id).limit(1))
        totals, others = await usage_in_windows(
            conn,
            agency_id,
            (window.start_utc, window.end_utc),
            {
                "before": (previous.start_utc, previous.end_utc),
                "recent": (burn.start_utc, burn.end_utc),
            },
        )
        expected = [await raw(conn, r) for r in (window, previous, burn)]
    assert (
        sum(t.calls for t in totals.values()),
        sum(t.seconds for t in totals.values()),
    ) == expected[0]
    assert sum(t.seconds for t in others["before"].values()) == expected[1][1]
    assert sum(t.seconds for t in others["recent"].values()) == expected[2][1]


async def test_health_thresholds_come_from_settings(app_client, setup, monkeypatch):
    monkeypatch.setenv("HEALTH_FAILURE_MIN_CALLS", "2")
    monkeypatch.setenv("HEALTH_FAILURE_RATE", "0.5")
    thresholds = Settings().health_thresholds()
    assert (thresholds.failure_min_calls, thresholds.failure_rate) == (2, Decimal("0.5"))

    owner, client, key = setup
    failed = [call(client, duration=5, started=DAY1, status="FAILED") for _ in range(2)]
    await gql(app_client, RECORD, {"calls": failed}, key)
    variables = {"id": client, "from": "2026-11-02", "to": "2026-11-02"}

    async def kinds() -> set[str]:
        body = await gql(app_client, SUB_REPORT, variables, owner.token)
        return {f["kind"] for f in body["data"]["node"]["report"]["health"]}

    assert "HIGH_FAILURE_RATE" not in await kinds()  # the default wants 10 calls
    app_client.app.state.services.health = thresholds
    assert "HIGH_FAILURE_RATE" in await kinds()


UPDATE_AGENCY = """mutation($i: UpdateAgencyInput!) { updateAgency(input: $i) {
  agency { name timeZone } userErrors { code field message } } }"""


async def test_reports_cut_days_in_the_agency_time_zone(app_client, setup):
    owner, client, key = setup
    # 23:30 UTC on 2 Nov is 08:30 on 3 Nov in Tokyo
    late = datetime(2026, 11, 2, 23, 30, tzinfo=UTC)
    await gql(app_client, RECORD, {"calls": [call(client, duration=42, started=late)]}, key)
    variables = {"id": client, "from": "2026-11-03", "to": "2026-11-03"}

    async def seconds_on_3_november() -> int:
        body = await gql(app_client, SUB_REPORT, variables, owner.token)
        return sum(m["seconds"] for m in body["data"]["node"]["report"]["minutesUsed"])

    assert await seconds_on_3_november() == 0  # UTC: the call was on the 2nd
    body = await gql(app_client, UPDATE_AGENCY, {"i": {"timeZone": "Asia/Tokyo"}}, owner.token)
    payload = body["data"]["updateAgency"]
    assert (payload["agency"]["timeZone"], payload["userErrors"]) == ("Asia/Tokyo", [])
    assert await seconds_on_3_november() == 42


async def test_an_unknown_time_zone_or_blank_name_is_refused(app_client, setup):
    owner, _, _ = setup
    for change, field in (({"timeZone": "Mars/Olympus"}, "timeZone"), ({"name": " "}, "name")):
        body = await gql(app_client, UPDATE_AGENCY, {"i": change}, owner.token)
        payload = body["data"]["updateAgency"]
        assert payload["agency"] is None
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
            ("INVALID_INPUT", ["input", field])
        ]


async def test_the_burn_window_ends_on_the_agency_s_own_today(app_client, setup, clock):
    """19:00 on 22 Nov in Los Angeles is already the 23rd in UTC: the last 7 days are 16-22
    Nov there, so a big call on the 16th (local) still counts towards the burn rate."""
    owner, client, key = setup  # the client holds 480 PREMIUM seconds
    await gql(app_client, UPDATE_AGENCY, {"i": {"timeZone": "America/Los_Angeles"}}, owner.token)
    clock.now = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    noon_16th_local = datetime(2026, 11, 16, 20, 0, tzinfo=UTC)
    big = call(client, duration=420, started=noon_16th_local)
    await gql(app_client, RECORD, {"calls": [big]}, key)
    variables = {"id": client, "from": "2026-11-01", "to": "2026-11-22"}
    body = await gql(app_client, SUB_REPORT, variables, owner.token)
    flags = {f["kind"]: f for f in body["data"]["node"]["report"]["health"]}
    assert "LOW_BALANCE" in flags  # 60 s left at 60 s a day
    assert Decimal(flags["LOW_BALANCE"]["runwayDays"]) == 1


async def test_billing_dates_turn_over_at_midnight_where_the_agency_is(app_client, setup, clock):
    owner, _, _ = setup
    clock.now = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)
    client = await new_client(app_client, owner, "Anniversary")  # billing anchor: 20 Oct
    query = "query($id: ID!) { node(id: $id) { ... on SubAccount { nextBillingDate } } }"

    async def next_billing() -> str:
        body = await gql(app_client, query, {"id": client}, owner.token)
        return body["data"]["node"]["nextBillingDate"]

    clock.now = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)  # 19 Nov, 19:00 in Los Angeles
    assert await next_billing() == "2026-12-20"  # UTC: the 20th has come
    await gql(app_client, UPDATE_AGENCY, {"i": {"timeZone": "America/Los_Angeles"}}, owner.token)
    assert await next_billing() == "2026-11-20"  # not yet there


LIVE_BILLING_DATE = """subscription($id: ID, $after: String) { usageUpdated(subAccountId: $id,
  afterSequence: $after) { subAccount { nextBillingDate } } }"""


async def test_a_live_screen_shows_billing_dates_in_the_agency_s_zone_of_now(
    app_client, setup, clock
):
    """A socket signs in once; its agency's zone must come with the data it is shown, not
    with the session it signed in with (that session still says UTC)."""
    owner, _, _ = setup
    services = app_client.app.state.services
    clock.now = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)
    client = await new_client(app_client, owner, "Kiwi")  # billing anchor: 20 Oct
    # given a live screen signed in while the agency was on UTC (connection_init)
    context = RequestContext(services, None, long_lived=True)
    context.connection_params = {"authorization": f"Bearer {owner.token}"}
    assert (await context.session()).agency.time_zone == "UTC"
    # when the agency moves to Auckland, where 19 Nov 12:00 UTC is already 20 Nov 01:00
    await gql(app_client, UPDATE_AGENCY, {"i": {"timeZone": "Pacific/Auckland"}}, owner.token)
    clock.now = datetime(2026, 11, 19, 12, 0, tzinfo=UTC)
    moved = await gql(
        app_client, TRANSFER, transfer_input(owner.primary_id, client, "1"), owner.token
    )
    assert moved["data"]["transferMinutes"]["userErrors"] == []
    # then the transfer's event, replayed to the screen, shows Auckland's next anniversary
    stream = await build_schema().subscribe(
        LIVE_BILLING_DATE, variable_values={"id": client, "after": "0"}, context_value=context
    )
    try:
        result = await asyncio.wait_for(anext(stream), 10)
    finally:
        await stream.aclose()
    assert result.errors is None, result.errors
    assert result.data["usageUpdated"]["subAccount"] == {"nextBillingDate": "2026-12-20"}
