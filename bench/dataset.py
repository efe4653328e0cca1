"""A seeded usage history for one agency: the agency and its sub-accounts through the API,
minutes granted through persistence.ledger, then calls and their quarter-hour, hourly and
daily rollups (billed with the app's own code) by COPY, VACUUM ANALYZE and a consistency
check against the app's report query. BENCHMARKS.md, "The dataset generator"; report.py
imports `generate`.

The same --seed makes the same random choices whatever --jobs; the history ends at the moment it
is made. Its parameters are kept as the database's COMMENT, for `report.py --reuse`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import math
import os
import random
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import asyncpg
import harness
import httpx
from harness import CALL_COLUMNS, Session

PLAN = "Agency Unlimited"  # no sub-account cap
OWNER_EMAIL = "report@example.com"
AGENCY_NAME = "Report Bench"
LARGE_BALANCE = 10**15  # seconds: no overage
DAY_SECONDS = 86_400
ZIPF_EXPONENT = 1.1  # who calls: 1 / rank^1.1 over a seeded shuffle
MEAN_SECONDS_PER_CALL = 150  # rough, for sizing the granted balances only
# Calls per UTC hour, relative: agencies mostly in the Americas (busy 13:00-23:00 UTC).
HOUR_WEIGHTS = (4, 3, 2, 2, 1, 1, 1, 1, 2, 3, 4, 6, 9, 14, 18, 20, 20, 19, 18, 18, 16, 13, 9, 6)
WEEKDAY_WEIGHTS = (1.0, 1.05, 1.05, 1.0, 0.95, 0.6, 0.5)  # Monday first
STATUS_WEIGHTS = (("COMPLETED", 78), ("FAILED", 5), ("NO_ANSWER", 9), ("BUSY", 4), ("VOICEMAIL", 4))
# External ids: n -> (n * odd multiplier mod 2^64) XOR a seeded salt is a bijection: no collisions.
ID_MULTIPLIER = 0x9E3779B97F4A7C15
ID_MASK = (1 << 64) - 1
TABLES = ("call", "usage_quarter_hour", "usage_hourly", "usage_daily")

UPDATE = """mutation($i: UpdateSubAccountInput!) { updateSubAccount(input: $i) {
  subAccount { id } userErrors { code message } } }"""
SOURCE = """mutation($id: ID!) { setBalanceSource(input: {id: $id, source: AGENCY}) {
  subAccount { id } userErrors { code message } } }"""
SUSPEND = """mutation($id: ID!, $note: String) { suspendSubAccount(input: {id: $id, note: $note}) {
  subAccount { id } userErrors { code message } } }"""
UPDATE_AGENCY = """mutation($i: UpdateAgencyInput!) { updateAgency(input: $i) {
  agency { timeZone } userErrors { code message } } }"""
LOGIN = """mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) {
  token userErrors { code message } } }"""


@dataclass(frozen=True)
class Options:
    sub_accounts: int = 1000  # the primary included
    calls: int = 1_000_000
    days: int = 90
    seed: int = 1
    jobs: int = 2
    copiers: int = 2
    time_zone: str = "UTC"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--sub-accounts", type=int, default=1000, help="the primary included")
        parser.add_argument("--calls", type=int, default=Options.calls)
        parser.add_argument("--days", type=int, default=Options.days)
        parser.add_argument("--seed", type=int, default=Options.seed)
        parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
        parser.add_argument("--copiers", type=int, default=2, help="COPY connections")
        parser.add_argument("--time-zone", default="UTC", help="the agency's time zone")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        return cls(**{k: getattr(args, k) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Behaviour:
    """How one sub-account calls."""

    weight: float
    premium_share: float
    flaky: bool
    first_day: int  # day chunk index from which it calls
    last_day: int  # ... up to this one, inclusive


@dataclass(frozen=True)
class Day:
    index: int
    day_start: datetime  # midnight UTC
    window_start: int  # seconds after midnight: calls start in [window_start, window_end)
    window_end: int
    calls: int
    first_number: int  # global number of the day's first call (external ids)


@dataclass
class Plan:
    """Everything a worker needs to make any day, pickled once per worker."""

    seed: int
    agency_id: uuid.UUID
    primary_id: uuid.UUID
    accounts: dict[uuid.UUID, Any]  # domain SubAccount objects
    behaviour: dict[uuid.UUID, Behaviour]
    balances: dict[tuple[uuid.UUID, Any], int]
    prices: Any
    now: datetime
    days: list[Day]


@dataclass
class Setup:
    """What the API part made."""

    token: str
    agency_gid: str
    agency_id: uuid.UUID
    primary_id: uuid.UUID
    secondary_ids: list[uuid.UUID]
    suspended: list[uuid.UUID] = field(default_factory=list)
    agency_funded: list[uuid.UUID] = field(default_factory=list)
    seconds: float = 0.0


# ---- 1. the agency and its sub-accounts, through the API ----------------------------------------


async def create_agency(client: httpx.AsyncClient, options: Options, today: date) -> Setup:
    """The agency in its time zone; its secondaries (markups 0-40 %, subscriptions started in
    the past), a different BASIC markup for every third, every 20th paid from the agency's
    balance, every 50th suspended; 4 at a time."""
    started = time.monotonic()
    rng = random.Random(f"{options.seed}:api")
    agency = await harness.sign_up_on_plan(client, AGENCY_NAME, OWNER_EMAIL, PLAN)
    token = agency.token
    if options.time_zone != "UTC":
        zone = {"i": {"timeZone": options.time_zone}}
        await harness.mutate(client, UPDATE_AGENCY, zone, token)
    gate = asyncio.Semaphore(4)
    secondaries = options.sub_accounts - 1
    made: list[str] = [""] * secondaries

    async def one(n: int) -> None:
        async with gate:
            start = today - timedelta(days=options.days + rng.randrange(0, 400))
            name, email = f"Client {n:04d}", f"client{n:04d}@report.example"
            fields = {"subscriptionStartDate": start.isoformat(), "markupPercent": str(n % 9 * 5)}
            gid = made[n] = await harness.create_sub_account(client, token, name, email, **fields)
            if n % 3 == 0:
                markup = {"id": gid, "basicMarkupPercent": f"{(n % 9) * 5 + 2.5:.2f}"}
                await harness.mutate(client, UPDATE, {"i": markup}, token)
            if n % 20 == 7:
                await harness.mutate(client, SOURCE, {"id": gid}, token)
            if n % 50 == 49:
                note = {"id": gid, "note": f"Invoice {n} is 30+ days overdue"}
                await harness.mutate(client, SUSPEND, note, token)

    await asyncio.gather(*(one(n) for n in range(secondaries)))
    ids = [harness.global_key(g) for g in made]
    return Setup(
        token=token,
        agency_gid=agency.agency_gid,
        agency_id=harness.global_key(agency.agency_gid),
        primary_id=harness.global_key(agency.primary_gid),
        secondary_ids=ids,
        suspended=[ids[n] for n in range(secondaries) if n % 50 == 49],
        agency_funded=[ids[n] for n in range(secondaries) if n % 20 == 7],
        seconds=time.monotonic() - started,
    )


async def login(client: httpx.AsyncClient, email: str = OWNER_EMAIL) -> str:
    payload = (await harness.gql(client, LOGIN, {"e": email, "p": harness.PASSWORD}))["data"]
    if payload["login"]["userErrors"] or not payload["login"]["token"]:
        raise RuntimeError(f"login of {email} failed: {payload}")
    return str(payload["login"]["token"])


# ---- 2. who calls how much, the balances ---------------------------------------------------------


def behaviours(options: Options, setup: Setup) -> dict[uuid.UUID, Behaviour]:
    """Zipf-like weights; 3 % churned, 3 % new, 1 % never call; suspended ones stop 3-20 days
    before now; PREMIUM share 20-90 %; 2 % flaky (30 % more FAILED)."""
    rng = random.Random(f"{options.seed}:behaviour")
    ids = [setup.primary_id, *setup.secondary_ids]
    ranks = list(range(1, len(ids) + 1))
    rng.shuffle(ranks)
    last = options.days  # the day chunks are 0 .. days (first and last partial)
    suspended = set(setup.suspended)
    out = {}
    for account_id, rank in zip(ids, ranks, strict=True):
        first_day, last_day = 0, last
        roll = rng.random()
        if account_id in suspended:
            last_day = last - rng.randint(3, 20)
        elif account_id != setup.primary_id:
            if roll < 0.03:
                last_day = last - rng.randint(10, 40)  # churned
            elif roll < 0.06:
                first_day = last - rng.randint(5, 40)  # new
            elif roll < 0.07:
                first_day, last_day = last + 1, last  # never calls
        out[account_id] = Behaviour(
            weight=1.0 / rank**ZIPF_EXPONENT,
            premium_share=rng.uniform(0.2, 0.9),
            flaky=rng.random() < 0.02,
            first_day=max(0, first_day),
            last_day=last_day,
        )
    return out


def billing_balances(
    options: Options, setup: Setup, accounts: dict[uuid.UUID, Any]
) -> dict[tuple[uuid.UUID, Any], int]:
    """What `bill` may take from each funding balance: plenty, except for 2 % of the
    customer-funded secondaries (everything they use is overage). Not debited in the table."""
    from domain.agency import BalanceSource
    from domain.money import Tier

    rng = random.Random(f"{options.seed}:overage")
    balances = {}
    for account_id, account in accounts.items():
        if account.balance_source is BalanceSource.AGENCY:
            continue  # paid from the primary
        short = account_id != setup.primary_id and rng.random() < 0.02
        for tier in Tier:
            balances[(account_id, tier)] = 0 if short else LARGE_BALANCE
    return balances


async def grant_minutes(
    db_url: str, options: Options, setup: Setup, behaviour: dict[uuid.UUID, Behaviour], now: Any
) -> int:
    """PLAN_GRANT movements (with ledger entries) for two thirds of the sub-accounts: 0-30 days
    of their expected use, so that some reports flag LOW_BALANCE and others do not."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from domain.ledger import LedgerKind, Movement
    from domain.money import Tier
    from persistence import ledger

    rng = random.Random(f"{options.seed}:grants")
    total_weight = sum(b.weight for b in behaviour.values())
    per_day = options.calls / max(1, options.days)
    movements = []
    for n, (account_id, b) in enumerate(sorted(behaviour.items())):
        if n % 3 == 2:
            continue
        daily_seconds = per_day * b.weight / total_weight * MEAN_SECONDS_PER_CALL
        for tier, share in ((Tier.PREMIUM, b.premium_share), (Tier.BASIC, 1 - b.premium_share)):
            seconds = int(daily_seconds * share * rng.uniform(0, 30)) // 60 * 60
            if seconds > 0:
                grant = (setup.agency_id, account_id, tier, seconds, LedgerKind.PLAN_GRANT)
                movements.append(Movement(*grant, f"bench:dataset:{n}"))
    engine = create_async_engine(db_url)
    async with engine.begin() as conn:
        await ledger.apply(conn, movements, now)
    await engine.dispose()
    return len(movements)


async def load_accounts(db_url: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """The sub-accounts as ingestion loads them."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from persistence.queries.loaders import sub_accounts_by_id

    engine = create_async_engine(db_url)
    async with engine.connect() as conn:
        found = await sub_accounts_by_id(conn, ids)
    await engine.dispose()
    if any(a is None for a in found):
        raise RuntimeError("sub-accounts not found")
    return {a.id: a for a in found if a is not None}


# ---- 3. the days ---------------------------------------------------------------------------------


def _clipped_hours(window_start: int, window_end: int) -> list[tuple[int, int, float]]:
    """(start second, end second, weight) of each hour of a day inside the window."""
    hours = []
    for hour, weight in enumerate(HOUR_WEIGHTS):
        lo, hi = max(hour * 3600, window_start), min((hour + 1) * 3600, window_end)
        if lo < hi:
            hours.append((lo, hi, weight * (hi - lo) / 3600))
    return hours


def plan_days(options: Options, now: datetime) -> list[Day]:
    """The UTC days from now - days to now, each with its share of the calls (weekdays busier,
    30 % growth over the period)."""
    rng = random.Random(f"{options.seed}:days")
    begin = now - timedelta(days=options.days)
    first_midnight = begin.replace(hour=0, minute=0, second=0, microsecond=0)
    shapes = []
    for index in range(options.days + 1):
        day_start = first_midnight + timedelta(days=index)
        lo = max(0, math.ceil((begin - day_start).total_seconds()))
        hi = min(DAY_SECONDS, math.floor((now - day_start).total_seconds()))
        covered = sum(w for _, _, w in _clipped_hours(lo, hi)) if lo < hi else 0.0
        weight = (
            covered
            * WEEKDAY_WEIGHTS[day_start.weekday()]
            * (1 + 0.3 * index / options.days)
            * rng.uniform(0.9, 1.1)
        )
        shapes.append((index, day_start, lo, hi, weight))
    total = sum(s[4] for s in shapes)
    exact = [options.calls * s[4] / total for s in shapes]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: options.calls - sum(counts)]:
        counts[i] += 1
    starts = itertools.accumulate(counts, initial=0)
    return [
        Day(index, day_start, lo, hi, count, first)
        for (index, day_start, lo, hi, _), count, first in zip(shapes, counts, starts, strict=False)
    ]


# ---- the worker: one day's calls, billed, as COPY text -------------------------------------------

_PLAN: Plan | None = None


def _init_worker(plan: Plan) -> None:
    global _PLAN
    _PLAN = plan


def _stamp(day: str, second: int) -> str:
    h, rest = divmod(second, 3600)
    m, s = divmod(rest, 60)
    return f"{day} {h:02d}:{m:02d}:{s:02d}+00"


def make_day(index: int) -> dict[str, Any]:
    """One UTC day: its calls (45 % INBOUND, a third of those on the web widget; durations
    lognormal around 2 min when COMPLETED, short otherwise), billed with `domain.usage.bill`,
    rolled up with `persistence.usage.quarter_rows` / `hourly_rows` / `daily_rows`, each table as
    COPY text."""
    from domain.money import Tier
    from domain.usage import (
        CallChannel,
        CallDirection,
        CallStatus,
        Pricer,
        ReportedCall,
        bill,
    )
    from persistence.usage import SUMMED_COLUMNS, daily_rows, hourly_rows, quarter_rows

    cpu0 = time.process_time()
    plan = _PLAN
    assert plan is not None
    day = plan.days[index]
    rng = random.Random(f"{plan.seed}:day:{index}")
    n = day.calls
    active = [(a, b) for a, b in plan.behaviour.items() if b.first_day <= index <= b.last_day]
    if not active or n == 0:
        empty = {"call": b"", "quarter": b"", "hourly": b"", "daily": b""}
        empty |= {"quarter_rows": 0, "hourly_rows": 0, "daily_rows": 0}
        return {"index": index, "calls": 0, **empty, "cpu": time.process_time() - cpu0}
    cum = list(itertools.accumulate(b.weight for _, b in active))
    who = rng.choices(range(len(active)), cum_weights=cum, k=n)
    hours = _clipped_hours(day.window_start, day.window_end)
    hour_cum = list(itertools.accumulate(w for _, _, w in hours))
    which_hour = rng.choices(range(len(hours)), cum_weights=hour_cum, k=n)
    status_cum = list(itertools.accumulate(w for _, w in STATUS_WEIGHTS))
    statuses = [CallStatus(s) for s, _ in STATUS_WEIGHTS]
    status_of = rng.choices(statuses, cum_weights=status_cum, k=n)

    rnd, randint, lognorm = rng.random, rng.randint, rng.lognormvariate
    completed, failed = CallStatus.COMPLETED, CallStatus.FAILED
    inbound, outbound = CallDirection.INBOUND, CallDirection.OUTBOUND
    widget, phone = CallChannel.WEB_WIDGET, CallChannel.PHONE
    premium, basic = Tier.PREMIUM, Tier.BASIC
    short = {
        CallStatus.FAILED: (1, 20),
        CallStatus.NO_ANSWER: (20, 45),
        CallStatus.BUSY: (1, 5),
        CallStatus.VOICEMAIL: (15, 120),
    }
    day_start = day.day_start
    day_text = day_start.date().isoformat()
    next_day_text = (day_start + timedelta(days=1)).date().isoformat()
    now_offset = int((plan.now - day_start).total_seconds())
    agency = str(plan.agency_id)
    ids = {account_id: str(account_id) for account_id, _ in active}
    calls = []
    lines = []
    id_salt = random.Random(f"{plan.seed}:ids").getrandbits(64)
    for i in range(n):
        account_id, b = active[who[i]]
        lo, hi, _ = hours[which_hour[i]]
        offset = lo + int(rnd() * (hi - lo))
        tier = premium if rnd() < b.premium_share else basic
        if rnd() < 0.45:
            direction = inbound
            channel = widget if rnd() < 1 / 3 else phone
        else:
            direction, channel = outbound, phone
        status = failed if b.flaky and rnd() < 0.3 else status_of[i]
        if status is completed:
            duration = min(900, max(1, int(lognorm(4.8, 0.8))))
        else:
            duration = randint(*short[status])
        number = day.first_number + i
        external_id = format(((number * ID_MULTIPLIER) & ID_MASK) ^ id_salt, "016x")
        started = day_start + timedelta(seconds=offset)
        calls.append(
            ReportedCall(
                external_id, account_id, direction, channel, status, tier, started, duration
            )
        )
        recorded = min(offset + duration + 1 + (i % 30), now_offset)
        recorded_text = (
            _stamp(day_text, recorded)
            if recorded < DAY_SECONDS
            else _stamp(next_day_text, recorded - DAY_SECONDS)
        )
        lines.append(
            f"{agency}\t{external_id}\t{ids[account_id]}\t{direction.value}\t{channel.value}\t"
            f"{status.value}\t{tier.value}\t{_stamp(day_text, offset)}\t{duration}\t"
            f"{recorded_text}"
        )
    charges = Pricer(plan.accounts, plan.primary_id, plan.prices).charges(calls)
    billed = bill(calls, plan.balances, charges)
    short = billed.short_calls
    lines = [
        f"{line}\t{c.spent_micros}\t{c.cost_micros}\t{short.get(call.external_id, 0)}\t"
        f"{c.funded_by}\n"
        for line, call in zip(lines, calls, strict=True)
        for c in [charges[call.external_id]]
    ]
    quarters = quarter_rows(plan.agency_id, billed.rollups)
    hourly = hourly_rows(quarters)
    daily = daily_rows(hourly)

    def rollup_text(rows: list[dict[str, Any]], key: str) -> bytes:
        return "".join(
            f"{r['sub_account_id']}\t{r['tier']}\t{r[key].isoformat()}\t{r['agency_id']}\t"
            + "\t".join(str(r[c]) for c in SUMMED_COLUMNS)
            + "\n"
            for r in rows
        ).encode()

    return {
        "index": index,
        "calls": n,
        "call": "".join(lines).encode(),
        "quarter": rollup_text(quarters, "quarter_utc"),
        "hourly": rollup_text(hourly, "hour_utc"),
        "daily": rollup_text(daily, "day_utc"),
        "quarter_rows": len(quarters),
        "hourly_rows": len(hourly),
        "daily_rows": len(daily),
        "seconds": sum(c.duration_seconds for c in calls),
        "overage_seconds": sum(billed.overage.values()),
        "cpu": time.process_time() - cpu0,
    }


# ---- the main process: COPY as the days come ----------------------------------------------------


async def copy_history(dsn: str, plan: Plan, jobs: int, copiers: int) -> dict[str, Any]:
    """Days made by `jobs` worker processes, copied in by `copiers` connections, one
    transaction per day (its calls and the rollups; indexes and foreign keys in place, as in
    production), at most jobs + copiers + 1 days in memory."""
    from persistence.usage import SUMMED_COLUMNS

    total = sum(d.calls for d in plan.days)
    made = {"calls": 0, "quarter_rows": 0, "hourly_rows": 0, "daily_rows": 0}
    made |= {"seconds": 0, "overage_seconds": 0}
    spent = {"worker_cpu": 0.0, "copy": 0.0, "next_report": 0.0}
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(jobs + copiers + 1)
    queue: asyncio.Queue[asyncio.Future[dict[str, Any]] | None] = asyncio.Queue()

    def progress(final: bool = False) -> None:
        elapsed = time.monotonic() - started
        if elapsed >= spent["next_report"] or final:
            rate = made["calls"] / elapsed if elapsed else 0.0
            print(
                f"  {made['calls']:>11,} / {total:,} calls  {rate:9,.0f} calls/s"
                f"  {elapsed:7.1f} s elapsed",
                flush=True,
            )
            spent["next_report"] = elapsed + 15

    async def copier(conn: asyncpg.Connection) -> None:
        while (future := await queue.get()) is not None:
            done = await future
            t0 = time.monotonic()
            if done["calls"]:
                async with conn.transaction():
                    await conn.copy_to_table(
                        "call", source=io.BytesIO(done["call"]), columns=CALL_COLUMNS
                    )
                    for table, key, part in (
                        ("usage_quarter_hour", "quarter_utc", "quarter"),
                        ("usage_hourly", "hour_utc", "hourly"),
                        ("usage_daily", "day_utc", "daily"),
                    ):
                        columns = ("sub_account_id", "tier", key, "agency_id", *SUMMED_COLUMNS)
                        await conn.copy_to_table(
                            table, source=io.BytesIO(done[part]), columns=columns
                        )
            spent["copy"] += time.monotonic() - t0
            spent["worker_cpu"] += done["cpu"]
            for k in made:
                made[k] += done.get(k, 0)
            slots.release()
            progress()

    connections = [await asyncpg.connect(dsn) for _ in range(copiers)]
    try:
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=get_context("spawn"),
            initializer=_init_worker,
            initargs=(plan,),
        ) as pool:
            tasks = [asyncio.create_task(copier(conn)) for conn in connections]
            try:
                for index in range(len(plan.days)):
                    await slots.acquire()
                    await queue.put(loop.run_in_executor(pool, make_day, index))
                    if any(t.done() for t in tasks):
                        break  # a copier failed: stop feeding, its error is raised below
                for _ in tasks:
                    await queue.put(None)
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()
    finally:
        for conn in connections:
            await conn.close()
    progress(final=True)
    elapsed = time.monotonic() - started
    return {
        **made,
        "days": len(plan.days),
        "seconds_elapsed": round(elapsed, 1),
        "calls_per_second": round(made["calls"] / elapsed, 1) if elapsed else None,
        "worker_cpu_seconds": round(spent["worker_cpu"], 1),
        "copy_seconds_summed": round(spent["copy"], 1),
        "jobs": jobs,
        "copiers": copiers,
    }


# ---- 4. after the load ---------------------------------------------------------------------------

RAW_BY_TIER = """
SELECT tier, count(*) AS calls, sum(duration_seconds) AS seconds FROM call
WHERE agency_id = $1 AND started_at >= $2 AND started_at < $3
  AND ($4::uuid IS NULL OR sub_account_id = $4) GROUP BY tier
"""


async def check_consistency(
    pg: str, database: str, agency_id: uuid.UUID, seed: int, today: date, samples: int = 5
) -> dict[str, Any]:
    """Raw `call` rows against `usage_by_sub_account` over the 30 days to today, in UTC, in
    America/New_York and in Asia/Kathmandu (whole days, partial days, quarter hours): per tier
    for `samples` random sub-accounts, and for the whole agency."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from domain.reporting import local_range
    from persistence.queries.reports import usage_by_sub_account

    rng = random.Random(f"{seed}:check")
    engine = create_async_engine(harness.sqlalchemy_url(pg, database))
    checked, problems = [], []
    async with harness.connect(pg, database) as raw, engine.connect() as conn:
        rows = await raw.fetch("SELECT id FROM sub_account WHERE agency_id = $1", agency_id)
        chosen = rng.sample(sorted(r["id"] for r in rows), min(samples, len(rows)))
        for zone in ("UTC", "America/New_York", "Asia/Kathmandu"):
            window = local_range(today - timedelta(days=29), today, zone)
            span = (window.start_utc, window.end_utc)
            for account_id in (*chosen, None):
                rows = await raw.fetch(RAW_BY_TIER, agency_id, *span, account_id)
                want_calls = sum(int(r["calls"]) for r in rows)
                want: Any = {r["tier"]: int(r["seconds"]) for r in rows}
                only = [account_id] if account_id else []
                found = (await usage_by_sub_account(conn, agency_id, *span, *only)).values()
                got_calls = sum(t.calls for t in found)
                if account_id:  # by tier
                    got: Any = {t.value: s for one in found for t, s in one.seconds_by_tier.items()}
                else:  # the whole agency's total
                    got, want = sum(t.seconds for t in found), sum(want.values())
                name = str(account_id) if account_id else "whole agency"
                equal = got_calls == want_calls and got == want
                seconds = sum(want.values()) if account_id else want
                checked.append(
                    {"zone": zone, "sub_account_id": name, "calls": want_calls}
                    | {"seconds": seconds, "equal": equal}
                )
                if not equal:
                    problems.append(
                        f"{zone} {name}: raw {want_calls} {want}, rollups {got_calls} {got}"
                    )
    await engine.dispose()
    return {"checked": checked, "problems": problems}


async def table_sizes(pg: str, database: str) -> dict[str, Any]:
    async with harness.connect(pg, database) as conn:
        out: dict[str, Any] = {
            t: {
                "rows": await conn.fetchval(f"SELECT count(*) FROM {t}"),
                "total_bytes": await conn.fetchval(f"SELECT pg_total_relation_size('{t}')"),
            }
            for t in (*TABLES, "sub_account", "balance", "ledger_entry")
        }
        out["database_bytes"] = await conn.fetchval("SELECT pg_database_size(current_database())")
        return out


async def set_comment(pg: str, database: str, info: dict[str, Any]) -> None:
    async with harness.connect(pg, database) as conn:
        text = json.dumps(info, default=str).replace("'", "''")
        await conn.execute(f"COMMENT ON DATABASE \"{database}\" IS '{text}'")


async def read_comment(pg: str, database: str) -> dict[str, Any] | None:
    """The parameters of the dataset kept in `database`: None when there is no such database,
    {} when it holds no dataset."""
    async with harness.connect(pg) as conn:
        row = await conn.fetchrow(
            "SELECT shobj_description(oid, 'pg_database') AS text FROM pg_database"
            " WHERE datname = $1",
            database,
        )
    if row is None:
        return None
    try:
        info = json.loads(row["text"] or "{}")
    except ValueError:
        return {}
    return info if info.get("generator") == "bench/dataset.py" else {}


# ---- all of it -----------------------------------------------------------------------------------


def generate(server_url: str, pg: str, database: str, options: Options) -> dict[str, Any]:
    """Makes the dataset through the app at `server_url` (serving `database`) and by COPY;
    returns what it made, the timings and the consistency check. Raises when the check fails."""
    db_url, dsn = harness.sqlalchemy_url(pg, database), harness.asyncpg_dsn(pg, database)
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    print(
        f"dataset: {options.sub_accounts:,} sub-accounts, {options.calls:,} calls over"
        f" {options.days} days, seed {options.seed}, {options.jobs} worker(s),"
        f" {options.copiers} COPY connection(s)",
        flush=True,
    )
    setup = harness.over_api(server_url, lambda client: create_agency(client, options, today))
    print(
        f"  API: agency and {len(setup.secondary_ids) + 1} sub-accounts in {setup.seconds:.1f} s"
        f" ({len(setup.suspended)} suspended, {len(setup.agency_funded)} agency-funded)",
        flush=True,
    )
    behaviour = behaviours(options, setup)
    t0 = time.monotonic()
    grants = harness.run_async(lambda: grant_minutes(db_url, options, setup, behaviour, now))
    grant_seconds = time.monotonic() - t0
    ids = [setup.primary_id, *setup.secondary_ids]
    accounts = harness.run_async(lambda: load_accounts(db_url, ids))
    plan = Plan(
        seed=options.seed,
        agency_id=setup.agency_id,
        primary_id=setup.primary_id,
        accounts=accounts,
        behaviour=behaviour,
        balances=billing_balances(options, setup, accounts),
        prices=harness.app_settings(db_url, Path(tempfile.gettempdir())).price_book(),
        now=now,
        days=plan_days(options, now),
    )
    print(f"  history: {len(plan.days)} day chunks, COPY as they come", flush=True)
    loaded = harness.run_async(lambda: copy_history(dsn, plan, options.jobs, options.copiers))
    print(
        f"  loaded {loaded['calls']:,} calls, {loaded['quarter_rows']:,} quarter-hour,"
        f" {loaded['hourly_rows']:,} hourly and"
        f" {loaded['daily_rows']:,} daily rollup rows in {loaded['seconds_elapsed']} s",
        flush=True,
    )
    t0 = time.monotonic()

    async def vacuum_analyze() -> None:
        async with harness.connect(pg, database) as conn:
            for table in TABLES:
                await conn.execute(f"VACUUM (ANALYZE) {table}")
            for table in ("sub_account", "balance", "ledger_entry"):
                await conn.execute(f"ANALYZE {table}")

    harness.run_async(vacuum_analyze)
    vacuum_seconds = time.monotonic() - t0
    print(f"  VACUUM ANALYZE in {vacuum_seconds:.1f} s", flush=True)
    t0 = time.monotonic()
    check = harness.run_async(
        lambda: check_consistency(pg, database, setup.agency_id, options.seed, today)
    )
    check_seconds = time.monotonic() - t0
    print(
        f"  consistency: {sum(c['equal'] for c in check['checked'])} of {len(check['checked'])}"
        " equal (raw call rows vs usage_by_sub_account, 30 days, UTC, America/New_York,"
        " Asia/Kathmandu)",
        flush=True,
    )
    if check["problems"]:
        raise RuntimeError("rollups differ from raw calls:\n" + "\n".join(check["problems"]))
    info = {
        "generator": "bench/dataset.py",
        "options": asdict(options),
        "generated_at": now.isoformat(),
        "owner_email": OWNER_EMAIL,
        "agency_id": str(setup.agency_id),
        "primary_id": str(setup.primary_id),
    }
    harness.run_async(lambda: set_comment(pg, database, info))
    overage = sum(1 for (a, _), s in plan.balances.items() if s == 0 and a != setup.primary_id)
    return {
        **info,
        "token": setup.token,
        "agency_gid": setup.agency_gid,
        "api_seconds": round(setup.seconds, 1),
        "suspended": len(setup.suspended),
        "agency_funded": len(setup.agency_funded),
        "grant_movements": grants,
        "grant_seconds": round(grant_seconds, 1),
        "overage_accounts": overage // 2,
        "load": loaded,
        "vacuum_analyze_seconds": round(vacuum_seconds, 1),
        "consistency": check,
        "consistency_seconds": round(check_seconds, 1),
        "tables": harness.run_async(lambda: table_sizes(pg, database)),
    }


def main() -> int:
    parser = harness.arguments(__doc__, "agencyhub_bench_dataset", keep_option=False)
    parser.add_argument("--server", help="URL of an app serving --database (else one is started)")
    Options.add_arguments(parser)
    args = parser.parse_args()
    options = Options.from_args(args)
    started = time.monotonic()
    if args.server:
        summary = generate(args.server, args.pg, args.database, options)
    else:
        args.keep_database = True
        with Session("dataset", args) as session:
            [server] = session.start("graphql")
            summary = generate(server.url, args.pg, args.database, options)
    summary["total_seconds"] = round(time.monotonic() - started, 1)
    summary.pop("token", None)
    print(f"done in {summary['total_seconds']} s", flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
