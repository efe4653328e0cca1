"""Every report figure counts exactly the calls whose start falls in the inclusive local dates,
in any zone: half- and quarter-hour offsets, and ranges across a change of offset."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from domain.money import seconds_to_minutes
from domain.reporting import HealthInputs, health_flags
from persistence.ledger import balance_t
from resolvers.global_id import from_global_id
from tests.api.test_reports import SUB_REPORT, UPDATE_AGENCY
from tests.api.test_usage import RECORD, call
from tests.factories import gql

BASE = {"BASIC": 180_000, "PREMIUM": 300_000}  # micro-dollars a minute (the SPEC's defaults)
WEB_WIDGET_BASIC = 160_000
# Each zone with a date a few days before one of its changes of offset, so ranges from there
# cross it; Kolkata and Kathmandu never change.
ZONES = {
    "Asia/Kolkata": date(2026, 10, 30),  # +5:30
    "Asia/Kathmandu": date(2026, 10, 30),  # +5:45
    "America/St_Johns": date(2026, 10, 30),  # -2:30 -> -3:30 on 1 Nov
    "Australia/Adelaide": date(2026, 10, 1),  # +9:30 -> +10:30 on 4 Oct
    "Pacific/Chatham": date(2027, 4, 1),  # +13:45 -> +12:45 on 4 Apr: 02:45-03:45 twice
    "America/Los_Angeles": date(2026, 10, 30),  # -7 -> -8 on 1 Nov: 01:00-02:00 twice
    "Australia/Lord_Howe": date(2027, 4, 1),  # +11 -> +10:30 on 4 Apr, at 02:00
}
DAYS = 7  # calls start within DAYS local days from the zone's date
STATUSES = ["COMPLETED", "FAILED", "NO_ANSWER", "BUSY", "VOICEMAIL"]
AGENCY_REPORT = """query($from: Date!, $to: Date!) { viewer { agency {
  report(range: {from: $from, to: $to}) { totalMinutesUsed usageMargin { amount }
    clients(first: 10) { edges { node { subAccount { id } minutesUsed spent { amount }
      usageMargin { amount } health { kind } } } } } } } }"""

calls_strategy = st.lists(
    st.tuples(
        st.one_of(
            st.integers(0, DAYS * 86_400 - 1).map(lambda s: ("any", s)),
            # near a local midnight or hour, where a cut at the wrong place shows
            st.tuples(st.integers(0, DAYS - 1), st.integers(0, 23), st.integers(-1_200, 1_200)).map(
                lambda t: ("near", t)
            ),
        ),
        st.integers(0, 900),  # duration
        st.sampled_from(["BASIC", "PREMIUM"]),
        st.sampled_from(["PHONE", "WEB_WIDGET"]),
        st.sampled_from(["INBOUND", "OUTBOUND"]),
        st.sampled_from(STATUSES),
        st.booleans(),  # the client's call (or the primary's)
    ),
    min_size=1,
    max_size=60,
)


@dataclass
class Figures:
    """One sub-account's figures over some calls, computed call by call."""

    calls: int = 0
    inbound: int = 0
    outbound: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    seconds: dict[str, int] = field(default_factory=lambda: {"BASIC": 0, "PREMIUM": 0})
    overage: int = 0
    spent: int = 0
    cost: int = 0

    def add(self, c: RawCall) -> None:
        self.calls += 1
        self.inbound += c.direction == "INBOUND"
        self.outbound += c.direction == "OUTBOUND"
        self.by_status[c.status] += 1
        self.seconds[c.tier] += c.duration
        self.overage += c.overage
        self.spent += c.spent
        self.cost += c.cost


@dataclass(frozen=True)
class RawCall:
    account: str  # global id
    started: datetime
    duration: int
    tier: str
    direction: str
    status: str
    overage: int
    spent: int  # micro-dollars, rounded half up per call
    cost: int


def half_up(amount: Fraction) -> int:
    return int(amount + Fraction(1, 2)) if amount >= 0 else -int(-amount + Fraction(1, 2))


def priced(calls: list[dict], markups: dict[str, int], balances: dict) -> list[RawCall]:
    """Each call's cost and overage, billed in start order against the balances it drew on."""
    left = dict(balances)
    out = []
    for c in sorted(calls, key=lambda c: (c["startedAt"], c["externalId"])):
        web = c["channel"] == "WEB_WIDGET" and c["direction"] == "INBOUND"
        base = WEB_WIDGET_BASIC if web and c["tier"] == "BASIC" else BASE[c["tier"]]
        price = Fraction(base) * (1 + Fraction(markups[c["subAccountId"]], 100))
        duration = c["durationSeconds"]
        paid = min(duration, left[c["subAccountId"], c["tier"]])
        left[c["subAccountId"], c["tier"]] -= paid
        out.append(
            RawCall(
                c["subAccountId"],
                datetime.fromisoformat(c["startedAt"]),
                duration,
                c["tier"],
                c["direction"],
                c["status"],
                duration - paid,
                half_up(price * duration / 60),
                half_up(Fraction(base * duration, 60)),
            )
        )
    return out


def hour_start(moment: datetime, zone: ZoneInfo) -> datetime:
    """Where the local hour of `moment` began: minute by minute back while the wall clock shows
    the same date and hour at the same offset (a slow way, on purpose)."""

    def key(t: datetime) -> tuple:
        local = t.astimezone(zone)
        return local.date(), local.hour, local.utcoffset()

    start = moment.replace(second=0, microsecond=0)
    while key(start - timedelta(minutes=1)) == key(moment):
        start -= timedelta(minutes=1)
    return start


def money(amount: dict) -> int:
    return int(Decimal(amount["amount"]) * 1_000_000)


def midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    zone_name=st.sampled_from(sorted(ZONES)),
    raw=calls_strategy,
    first=st.integers(-1, DAYS),
    length=st.integers(0, DAYS),
    today=st.integers(0, DAYS + 3),
)
# every zone at least once, with a range across its change of offset
@example(
    "Asia/Kolkata",
    [(("near", (1, 0, -60)), 60, "PREMIUM", "PHONE", "OUTBOUND", "COMPLETED", True)],
    1,
    2,
    3,
)
@example(
    "Asia/Kathmandu",
    [(("near", (2, 0, 30)), 50, "BASIC", "WEB_WIDGET", "INBOUND", "FAILED", True)],
    1,
    2,
    3,
)
@example(
    "America/St_Johns",
    [(("near", (2, 1, 900)), 70, "PREMIUM", "PHONE", "INBOUND", "BUSY", True)],
    1,
    3,
    4,
)
@example(
    "Australia/Adelaide",
    [(("near", (3, 3, 10)), 80, "PREMIUM", "PHONE", "OUTBOUND", "COMPLETED", False)],
    2,
    3,
    5,
)
@example(
    "Pacific/Chatham",
    [(("near", (3, 2, 2_000)), 90, "BASIC", "PHONE", "OUTBOUND", "VOICEMAIL", True)],
    2,
    3,
    5,
)
@example(
    "America/Los_Angeles",
    [(("near", (2, 1, 1_800)), 100, "PREMIUM", "PHONE", "OUTBOUND", "NO_ANSWER", True)],
    1,
    3,
    4,
)
@example(
    "Australia/Lord_Howe",
    [(("near", (3, 1, 1_900)), 110, "PREMIUM", "PHONE", "OUTBOUND", "FAILED", True)],
    2,
    3,
    5,
)
async def test_every_report_figure_equals_the_raw_calls_of_the_local_dates(
    app_client, clean_setup, database, clock, zone_name, raw, first, length, today
):
    zone = ZoneInfo(zone_name)
    day0 = ZONES[zone_name]
    # given an agency in the zone, a client at 25 % and its primary, and calls around day0
    clock.now = midnight(day0 + timedelta(days=DAYS + 1), zone)  # after every call
    owner, client, key = await clean_setup()
    await gql(app_client, UPDATE_AGENCY, {"i": {"timeZone": zone_name}}, owner.token)
    accounts = {True: client, False: owner.primary_id}
    markups = {client: 25, owner.primary_id: 0}
    batch = []
    for (kind, at), duration, tier, channel, direction, status, mine in raw:
        if kind == "any":
            started = midnight(day0, zone) + timedelta(seconds=at)
        else:
            day, hour, delta = at
            local = datetime.combine(day0 + timedelta(days=day), time(hour), tzinfo=zone)
            started = local.astimezone(UTC) + timedelta(seconds=delta)
        batch.append(
            call(accounts[mine], None, duration, tier, channel, direction, status, started)
        )
    async with database.read() as conn:
        ids = {from_global_id(g)[1]: g for g in accounts.values()}
        held = await conn.execute(select(balance_t))
        balances = defaultdict(int, {(ids[b.sub_account_id], b.tier): b.seconds for b in held})
    recorded = await gql(app_client, RECORD, {"calls": batch}, key)
    assert recorded["data"]["recordCalls"]["accepted"] == len(batch), recorded
    calls = priced(batch, markups, balances)
    clock.now = midnight(day0 + timedelta(days=today), zone) + timedelta(hours=13)

    # when reading both reports for a range of local dates
    start = day0 + timedelta(days=first)
    end = start + timedelta(days=length)
    dates = {"from": start.isoformat(), "to": end.isoformat()}
    report = (await gql(app_client, SUB_REPORT, {"id": client, **dates}, owner.token))["data"][
        "node"
    ]["report"]
    agency = (await gql(app_client, AGENCY_REPORT, dates, owner.token))["data"]["viewer"]["agency"][
        "report"
    ]

    # then each figure is the calls' own, taken by their local date
    def within(c: RawCall, lo: date, hi: date) -> bool:
        return lo <= c.started.astimezone(zone).date() <= hi

    def figures(account: str, lo: date, hi: date) -> Figures:
        found = Figures()
        for c in calls:
            if c.account == account and within(c, lo, hi):
                found.add(c)
        return found

    mine = figures(client, start, end)
    assert report["calls"] == {
        "total": mine.calls,
        "inbound": mine.inbound,
        "outbound": mine.outbound,
        "byStatus": [{"status": s, "count": mine.by_status[s]} for s in STATUSES],
    }
    assert report["minutesUsed"] == [
        {"tier": t, "seconds": mine.seconds[t]} for t in ("BASIC", "PREMIUM")
    ]
    assert money(report["spent"]) == mine.spent
    assert money(report["usageMargin"]) == mine.spent - mine.cost

    hours: dict[datetime, list[int]] = defaultdict(lambda: [0, 0, 0])
    days: dict[datetime, list[int]] = defaultdict(lambda: [0, 0, 0])
    for c in calls:
        if c.account == client and within(c, start, end):
            for point in (
                hours[hour_start(c.started, zone)],
                days[midnight(c.started.astimezone(zone).date(), zone)],
            ):
                point[0] += 1
                point[1] += c.duration
                point[2] += c.spent
    assert [
        (datetime.fromisoformat(p["start"]), p["calls"], p["seconds"], money(p["spent"]))
        for p in report["hours"]
    ] == [(at, *hours[at]) for at in sorted(hours)]
    assert [
        (datetime.fromisoformat(p["start"]), p["calls"], p["seconds"]) for p in report["days"]
    ] == [(at, *days[at][:2]) for at in sorted(days)]

    thresholds = app_client.app.state.services.health
    local_today = clock.now.astimezone(zone).date()
    burn_from = local_today - timedelta(days=thresholds.burn_window_days - 1)
    span = length + 1

    async def balance_of(account: str) -> int:
        async with database.read() as conn:
            rows = await conn.execute(
                select(balance_t.c.seconds).where(
                    balance_t.c.sub_account_id == from_global_id(account)[1]
                )
            )
            return sum(r.seconds for r in rows)

    async def flags_of(account: str) -> list[dict]:
        now = figures(account, start, end)
        before = figures(account, start - timedelta(days=span), start - timedelta(days=1))
        recent = figures(account, burn_from, local_today)
        found = health_flags(
            HealthInputs(
                suspended=False,
                balance_seconds=await balance_of(account),
                recent_burn_seconds=sum(recent.seconds.values()),
                overage_seconds=now.overage,
                seconds=sum(now.seconds.values()),
                previous_seconds=sum(before.seconds.values()),
                calls=now.calls,
                failed_calls=now.by_status["FAILED"],
            ),
            thresholds,
        )
        return [
            {
                "kind": f.kind.value,
                "message": f.message,
                "runwayDays": None if f.runway_days is None else str(f.runway_days),
            }
            for f in found
        ]

    assert report["health"] == await flags_of(client)

    theirs = {a: figures(a, start, end) for a in accounts.values()}
    total = sum(sum(f.seconds.values()) for f in theirs.values())
    assert Decimal(agency["totalMinutesUsed"]) == seconds_to_minutes(total)
    assert money(agency["usageMargin"]) == sum(f.spent - f.cost for f in theirs.values())
    rows = {e["node"]["subAccount"]["id"]: e["node"] for e in agency["clients"]["edges"]}
    assert set(rows) == set(theirs)
    for account, f in theirs.items():
        row = rows[account]
        assert Decimal(row["minutesUsed"]) == seconds_to_minutes(sum(f.seconds.values()))
        assert money(row["spent"]) == f.spent
        assert money(row["usageMargin"]) == f.spent - f.cost
        assert [h["kind"] for h in row["health"]] == [h["kind"] for h in await flags_of(account)]
