"""A seeded usage history for one agency: sub-accounts through the API, calls and rollups by COPY.

    .venv/bin/python bench/dataset.py --database agencyhub_bench_dataset \\
        [--sub-accounts 1000] [--calls 1000000] [--days 90] [--seed 1] [--jobs 2] \\
        [--copiers 2] [--server http://127.0.0.1:8000] [--time-zone UTC] [--output FILE]

Without `--server` the script recreates `--database`, migrates it, starts the app on it
(bench/serve_app.py, one uvicorn process), generates the dataset, stops the app and keeps the
database. With `--server`, the app at that URL must be serving `--database` (migrated).
`bench/report.py` imports `generate()` and does the same against the server it measures.

What it makes (the same random choices for a given --seed, whatever --jobs):

1. Through the API: one agency signed up on "Agency Unlimited" (no sub-account cap) by
   `report@example.com`, its time zone set with `updateAgency` when not UTC, and
   `--sub-accounts - 1` secondaries with `createSubAccount` (markups 0-40 %, subscription start
   dates in the past), a different BASIC markup for every third (`updateSubAccount`), every
   20th paid from the agency's balance (`setBalanceSource`), every 50th suspended
   (`suspendSubAccount`), 4 at a time.
2. Balances: PREMIUM and BASIC minutes for two thirds of the sub-accounts, between 0 and
   30 days of their expected use, as PLAN_GRANT movements through `persistence.ledger.apply`
   (with their ledger entries), so that reports raise LOW_BALANCE for some and not others.
3. History: `--calls` calls over the last `--days` days up to now, one UTC day per chunk, each
   chunk made by a worker process (`--jobs`) and copied in by the main process over `--copiers`
   connections with asyncpg `COPY` (text format) into `call`, `usage_hourly` and `usage_daily`,
   one transaction per day (foreign keys and indexes stay in place, as in production):
   - which sub-account: Zipf-like weights (1 / rank^1.1 over a seeded shuffle, the primary
     included); 3 % churned (stop 10-40 days before now), 3 % new (start 5-40 days before
     now), 1 % never call, suspended ones stop 3-20 days before now;
   - when: days weighted by weekday (weekends lower) and a 30 % growth over the period, hours
     by a US-business-hours curve (UTC), seconds uniform inside the hour; whole seconds;
   - what: PREMIUM share per sub-account 20-90 %; 45 % INBOUND, a third of those on the
     WEB_WIDGET channel, the rest PHONE; status COMPLETED 78 %, FAILED 5 %, NO_ANSWER 9 %,
     BUSY 4 %, VOICEMAIL 4 %, and 2 % "flaky" sub-accounts with 30 % more FAILED; durations
     1-900 s: lognormal (median 2 min) for COMPLETED, short for the others;
   - external ids unique per agency: a bijection of the call's number over 64 bits (an odd
     multiplier, then a seeded XOR), as 16 hex digits;
   - rollups from those same calls with the app's code: `ReportedCall`s per day,
     `domain.usage.bill` with the sub-accounts as the app loads them
     (`persistence.queries.loaders.sub_accounts_by_id`) and a large balance (10^15 s) per
     funding account and tier, except 2 % of the customer-funded secondaries, which get 0 so
     that all their calls are overage; then `persistence.usage.hourly_rows` and `daily_rows`.
     The balance table is not debited by this history (real ingestion would; the billing of
     each call is otherwise what ingestion does).
4. `VACUUM ANALYZE` of the three tables (visibility map and statistics as a steady-state
   database has them), then a consistency check: for 5 random sub-accounts and for the whole
   agency, calls and seconds over raw `call` rows in a 30-day range (in UTC and in
   America/New_York, so whole days and partial days are both read) equal what
   `persistence.queries.reports.usage_by_sub_account` returns.

The dataset's parameters are kept as the database's COMMENT (JSON), so `report.py --reuse`
can tell what a kept database holds. The history is relative to the moment it is made (the
last call starts before "now"), so two runs with the same seed make the same random choices but
not byte-identical tables (day boundaries, the UUIDs the API hands out).

Measured on the 2-vCPU machine of BENCHMARKS.md (app at 8ecab9a): 1,000 sub-accounts and
1,000,000 calls in 37 s (history at ~36,000 calls/s); 10,000,000 calls in ~5.8 min (history
at ~30,000 calls/s: PostgreSQL's COPY with the call table's three indexes and two foreign keys
is then the limit; the database is 3.4 GB).
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
import shutil
import sys
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
import httpx
from _account_manager import global_key, gql, sign_up_on_plan
from _common import (
    BENCH_DIR,
    CALL_COLUMNS,
    DEFAULT_PG,
    PASSWORD,
    app_env,
    app_settings,
    asyncpg_dsn,
    migrate,
    recreate_database,
    run_async,
    sqlalchemy_url,
)

PLAN = "Agency Unlimited"  # no sub-account cap
OWNER_EMAIL = "report@example.com"
AGENCY_NAME = "Report Bench"
LARGE_BALANCE = 10**15  # seconds: no overage
DAY_SECONDS = 86_400
ZIPF_EXPONENT = 1.1
MEAN_SECONDS_PER_CALL = 150  # rough, for sizing the granted balances only

# Calls per UTC hour, relative: agencies mostly in the Americas (busy 13:00-23:00 UTC).
HOUR_WEIGHTS = (4, 3, 2, 2, 1, 1, 1, 1, 2, 3, 4, 6, 9, 14, 18, 20, 20, 19, 18, 18, 16, 13, 9, 6)
WEEKDAY_WEIGHTS = (1.0, 1.05, 1.05, 1.0, 0.95, 0.6, 0.5)  # Monday first
STATUS_WEIGHTS = (
    ("COMPLETED", 78),
    ("FAILED", 5),
    ("NO_ANSWER", 9),
    ("BUSY", 4),
    ("VOICEMAIL", 4),
)
# 64-bit odd multiplier: n -> (n * M mod 2^64) XOR salt is a bijection, so external ids never
# collide.
ID_MULTIPLIER = 0x9E3779B97F4A7C15
ID_MASK = (1 << 64) - 1

CREATE = """mutation($i: CreateSubAccountInput!) { createSubAccount(input: $i) {
  subAccount { id } userErrors { code message } } }"""
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

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        """From a command line with these options' names (`--copiers` is optional)."""
        return cls(
            sub_accounts=args.sub_accounts,
            calls=args.calls,
            days=args.days,
            seed=args.seed,
            jobs=args.jobs,
            copiers=getattr(args, "copiers", cls.copiers),
            time_zone=args.time_zone,
        )


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


async def _ok(client: httpx.AsyncClient, query: str, variables: dict, token: str, name: str) -> Any:
    body = await gql(client, query, variables, token)
    payload = body["data"][name]
    if payload.get("userErrors"):
        raise RuntimeError(f"{name} failed: {payload['userErrors']}")
    return payload


async def create_agency(client: httpx.AsyncClient, options: Options, today: date) -> Setup:
    started = time.monotonic()
    rng = random.Random(f"{options.seed}:api")
    agency = await sign_up_on_plan(client, AGENCY_NAME, OWNER_EMAIL, PLAN)
    token = agency.token
    if options.time_zone != "UTC":
        await _ok(
            client, UPDATE_AGENCY, {"i": {"timeZone": options.time_zone}}, token, "updateAgency"
        )
    gate = asyncio.Semaphore(4)
    secondaries = options.sub_accounts - 1
    made: list[str | None] = [None] * secondaries

    async def one(n: int) -> None:
        async with gate:
            start = today - timedelta(days=options.days + rng.randrange(0, 400))
            payload = await _ok(
                client,
                CREATE,
                {
                    "i": {
                        "name": f"Client {n:04d}",
                        "loginEmail": f"client{n:04d}@report.example",
                        "subscriptionStartDate": start.isoformat(),
                        "markupPercent": str((n % 9) * 5),
                    }
                },
                token,
                "createSubAccount",
            )
            gid = payload["subAccount"]["id"]
            made[n] = gid
            if n % 3 == 0:
                await _ok(
                    client,
                    UPDATE,
                    {"i": {"id": gid, "basicMarkupPercent": f"{(n % 9) * 5 + 2.5:.2f}"}},
                    token,
                    "updateSubAccount",
                )
            if n % 20 == 7:
                await _ok(client, SOURCE, {"id": gid}, token, "setBalanceSource")
            if n % 50 == 49:
                await _ok(
                    client,
                    SUSPEND,
                    {"id": gid, "note": f"Invoice {n} is 30+ days overdue"},
                    token,
                    "suspendSubAccount",
                )

    await asyncio.gather(*(one(n) for n in range(secondaries)))
    ids = [global_key(g) for g in made if g is not None]
    return Setup(
        token=token,
        agency_gid=agency.agency_gid,
        agency_id=global_key(agency.agency_gid),
        primary_id=global_key(agency.primary_gid),
        secondary_ids=ids,
        suspended=[ids[n] for n in range(secondaries) if n % 50 == 49],
        agency_funded=[ids[n] for n in range(secondaries) if n % 20 == 7],
        seconds=time.monotonic() - started,
    )


async def login(client: httpx.AsyncClient, email: str = OWNER_EMAIL) -> str:
    body = await gql(client, LOGIN, {"e": email, "p": PASSWORD})
    payload = body["data"]["login"]
    if payload["userErrors"] or not payload["token"]:
        raise RuntimeError(f"login of {email} failed: {payload}")
    return str(payload["token"])


# ---- 2. who calls how much, the balances ---------------------------------------------------------


def behaviours(options: Options, setup: Setup) -> dict[uuid.UUID, Behaviour]:
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
    customer-funded secondaries (everything they use is overage)."""
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
    db_url: str,
    options: Options,
    setup: Setup,
    behaviour: dict[uuid.UUID, Behaviour],
    now: datetime,
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
                movements.append(
                    Movement(
                        setup.agency_id,
                        account_id,
                        tier,
                        seconds,
                        LedgerKind.PLAN_GRANT,
                        f"bench:dataset:{n}",
                    )
                )
    engine = create_async_engine(db_url)
    try:
        async with engine.begin() as conn:
            await ledger.apply(conn, movements, now)
    finally:
        await engine.dispose()
    return len(movements)


async def load_accounts(db_url: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """The sub-accounts as ingestion loads them."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from persistence.queries.loaders import sub_accounts_by_id

    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            found = await sub_accounts_by_id(conn, ids)
    finally:
        await engine.dispose()
    missing = [i for i, a in zip(ids, found, strict=True) if a is None]
    if missing:
        raise RuntimeError(f"sub-accounts not found: {missing[:3]}")
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
    """The UTC days from now - days to now, each with its share of the calls."""
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
    days = []
    number = 0
    for (index, day_start, lo, hi, _), count in zip(shapes, counts, strict=True):
        days.append(Day(index, day_start, lo, hi, count, number))
        number += count
    return days


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
    """One UTC day: its calls, billed with `domain.usage.bill`, rolled up with
    `persistence.usage.hourly_rows` / `daily_rows`, each table as COPY text."""
    from domain.money import Tier
    from domain.usage import CallChannel, CallDirection, CallStatus, ReportedCall, bill
    from persistence.usage import SUMMED_COLUMNS, daily_rows, hourly_rows

    cpu0 = time.process_time()
    plan = _PLAN
    assert plan is not None
    day = plan.days[index]
    rng = random.Random(f"{plan.seed}:day:{index}")
    n = day.calls
    active = [
        (account_id, b)
        for account_id, b in plan.behaviour.items()
        if b.first_day <= index <= b.last_day
    ]
    if not active or n == 0:
        return {
            "index": index,
            "calls": 0,
            "call": b"",
            "hourly": b"",
            "daily": b"",
            "hourly_rows": 0,
            "daily_rows": 0,
            "cpu": time.process_time() - cpu0,
        }
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
    first_number = day.first_number
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
        external_id = format((((first_number + i) * ID_MULTIPLIER) & ID_MASK) ^ id_salt, "016x")
        calls.append(
            ReportedCall(
                external_id,
                account_id,
                direction,
                channel,
                status,
                tier,
                day_start + timedelta(seconds=offset),
                duration,
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
            f"{recorded_text}\n"
        )
    billed = bill(calls, plan.accounts, plan.primary_id, plan.balances, plan.prices)
    hourly = hourly_rows(plan.agency_id, billed.rollups)
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
        "hourly": rollup_text(hourly, "hour_utc"),
        "daily": rollup_text(daily, "day_utc"),
        "hourly_rows": len(hourly),
        "daily_rows": len(daily),
        "seconds": sum(c.duration_seconds for c in calls),
        "overage_seconds": sum(billed.overage.values()),
        "cpu": time.process_time() - cpu0,
    }


# ---- the main process: COPY as the days come ----------------------------------------------------


async def copy_history(dsn: str, plan: Plan, jobs: int, copiers: int) -> dict[str, Any]:
    """Days made by `jobs` worker processes, copied in by `copiers` connections, one
    transaction per day (its calls and both rollups), at most jobs + copiers + 1 days in
    memory."""
    from persistence.usage import SUMMED_COLUMNS

    rollup_columns = ("sub_account_id", "tier", "{key}", "agency_id", *SUMMED_COLUMNS)
    total = sum(d.calls for d in plan.days)
    made = {"calls": 0, "hourly_rows": 0, "daily_rows": 0, "seconds": 0, "overage_seconds": 0}
    spent = {"worker_cpu": 0.0, "copy": 0.0, "next_report": 0.0}
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(jobs + copiers + 1)
    queue: asyncio.Queue[asyncio.Future[dict[str, Any]] | None] = asyncio.Queue()

    def progress(final: bool = False) -> None:
        elapsed = time.monotonic() - started
        if elapsed < spent["next_report"] and not final:
            return
        rate = made["calls"] / elapsed if elapsed else 0.0
        eta = (total - made["calls"]) / rate if rate else 0.0
        print(
            f"  {made['calls']:>11,} / {total:,} calls ({made['calls'] / max(1, total):6.1%})"
            f"  {rate:9,.0f} calls/s  {elapsed:7.1f} s elapsed, ~{eta:5.0f} s left",
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
                        ("usage_hourly", "hour_utc", "hourly"),
                        ("usage_daily", "day_utc", "daily"),
                    ):
                        await conn.copy_to_table(
                            table,
                            source=io.BytesIO(done[part]),
                            columns=[c.format(key=key) for c in rollup_columns],
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

TABLES = ("call", "usage_hourly", "usage_daily")


async def vacuum_analyze(dsn: str) -> float:
    conn = await asyncpg.connect(dsn)
    started = time.monotonic()
    try:
        for table in TABLES:
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        for table in ("sub_account", "balance", "ledger_entry"):
            await conn.execute(f"ANALYZE {table}")
    finally:
        await conn.close()
    return time.monotonic() - started


RAW_ONE = """
SELECT tier, count(*) AS calls, coalesce(sum(duration_seconds), 0) AS seconds
FROM call WHERE sub_account_id = $1 AND started_at >= $2 AND started_at < $3 GROUP BY tier
"""
RAW_AGENCY = """
SELECT count(*) AS calls, coalesce(sum(duration_seconds), 0) AS seconds
FROM call WHERE agency_id = $1 AND started_at >= $2 AND started_at < $3
"""


async def check_consistency(
    pg: str, database: str, agency_id: uuid.UUID, seed: int, today: date, samples: int = 5
) -> dict[str, Any]:
    """Raw `call` rows against `usage_by_sub_account` for a 30-day range ending today, in UTC
    and in America/New_York: per tier for `samples` random sub-accounts, and the whole agency."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from domain.reporting import local_range
    from persistence.queries.reports import usage_by_sub_account

    rng = random.Random(f"{seed}:check")
    raw = await asyncpg.connect(asyncpg_dsn(pg, database))
    engine = create_async_engine(sqlalchemy_url(pg, database))
    checked = []
    problems = []
    try:
        ids = sorted(
            r["id"]
            for r in await raw.fetch("SELECT id FROM sub_account WHERE agency_id = $1", agency_id)
        )
        chosen = rng.sample(ids, min(samples, len(ids)))
        async with engine.connect() as conn:
            for zone in ("UTC", "America/New_York"):
                window = local_range(today - timedelta(days=29), today, zone)
                start, end = window.start_utc, window.end_utc
                for account_id in chosen:
                    by_tier = {
                        r["tier"]: (int(r["calls"]), int(r["seconds"]))
                        for r in await raw.fetch(RAW_ONE, account_id, start, end)
                    }
                    got = (await usage_by_sub_account(conn, agency_id, start, end, account_id)).get(
                        account_id
                    )
                    want_calls = sum(c for c, _ in by_tier.values())
                    want_seconds = {t: s for t, (_, s) in by_tier.items()}
                    got_calls = got.calls if got else 0
                    got_seconds = (
                        {t.value: s for t, s in got.seconds_by_tier.items()} if got else {}
                    )
                    ok = got_calls == want_calls and got_seconds == want_seconds
                    checked.append(
                        {
                            "zone": zone,
                            "sub_account_id": str(account_id),
                            "calls": want_calls,
                            "seconds": sum(want_seconds.values()),
                            "equal": ok,
                        }
                    )
                    if not ok:
                        problems.append(
                            f"{zone} {account_id}: raw {want_calls} calls {want_seconds},"
                            f" rollups {got_calls} calls {got_seconds}"
                        )
                row = await raw.fetchrow(RAW_AGENCY, agency_id, start, end)
                totals = await usage_by_sub_account(conn, agency_id, start, end)
                got_calls = sum(t.calls for t in totals.values())
                got_seconds = sum(t.seconds for t in totals.values())
                ok = got_calls == row["calls"] and got_seconds == row["seconds"]
                checked.append(
                    {
                        "zone": zone,
                        "sub_account_id": "whole agency",
                        "calls": int(row["calls"]),
                        "seconds": int(row["seconds"]),
                        "equal": ok,
                    }
                )
                if not ok:
                    problems.append(
                        f"{zone} agency: raw {row['calls']} calls {row['seconds']} s,"
                        f" rollups {got_calls} calls {got_seconds} s"
                    )
    finally:
        await raw.close()
        await engine.dispose()
    return {"checked": checked, "problems": problems}


async def table_sizes(pg: str, database: str) -> dict[str, Any]:
    conn = await asyncpg.connect(asyncpg_dsn(pg, database))
    try:
        out = {}
        for table in (*TABLES, "sub_account", "balance", "ledger_entry"):
            out[table] = {
                "rows": int(await conn.fetchval(f"SELECT count(*) FROM {table}")),
                "total_bytes": int(
                    await conn.fetchval(f"SELECT pg_total_relation_size('{table}')")
                ),
            }
        out["database_bytes"] = int(
            await conn.fetchval("SELECT pg_database_size(current_database())")
        )
        return out
    finally:
        await conn.close()


async def set_comment(pg: str, database: str, info: dict[str, Any]) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(pg, database))
    try:
        text = json.dumps(info, default=str).replace("'", "''")
        await conn.execute(f"COMMENT ON DATABASE \"{database}\" IS '{text}'")
    finally:
        await conn.close()


async def read_comment(pg: str, database: str) -> dict[str, Any] | None:
    """The parameters of a generated dataset kept in `database`, or None."""
    conn = await asyncpg.connect(asyncpg_dsn(pg, "postgres"))
    try:
        text = await conn.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            database,
        )
    finally:
        await conn.close()
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    return info if info.get("generator") == "bench/dataset.py" else None


# ---- all of it -----------------------------------------------------------------------------------


def generate(server_url: str, pg: str, database: str, options: Options) -> dict[str, Any]:
    """Makes the dataset through the app at `server_url` (serving `database`) and by COPY;
    returns what it made, the timings and the consistency check. Raises when the check fails."""
    db_url = sqlalchemy_url(pg, database)
    dsn = asyncpg_dsn(pg, database)
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    print(
        f"dataset: {options.sub_accounts:,} sub-accounts, {options.calls:,} calls over"
        f" {options.days} days, seed {options.seed}, {options.jobs} worker(s),"
        f" {options.copiers} COPY connection(s)",
        flush=True,
    )

    async def api() -> Setup:
        async with httpx.AsyncClient(base_url=server_url, timeout=120) as client:
            return await create_agency(client, options, today)

    setup = run_async(api)
    print(
        f"  API: agency and {len(setup.secondary_ids) + 1} sub-accounts in {setup.seconds:.1f} s"
        f" ({len(setup.suspended)} suspended, {len(setup.agency_funded)} agency-funded)",
        flush=True,
    )
    behaviour = behaviours(options, setup)
    t0 = time.monotonic()
    grants = run_async(lambda: grant_minutes(db_url, options, setup, behaviour, now))
    grant_seconds = time.monotonic() - t0
    accounts = run_async(lambda: load_accounts(db_url, [setup.primary_id, *setup.secondary_ids]))
    prices = app_settings(db_url, Path(tempfile.gettempdir())).price_book()
    plan = Plan(
        seed=options.seed,
        agency_id=setup.agency_id,
        primary_id=setup.primary_id,
        accounts=accounts,
        behaviour=behaviour,
        balances=billing_balances(options, setup, accounts),
        prices=prices,
        now=now,
        days=plan_days(options, now),
    )
    print(f"  history: {len(plan.days)} day chunks, COPY as they come", flush=True)
    loaded = run_async(lambda: copy_history(dsn, plan, options.jobs, options.copiers))
    print(
        f"  loaded {loaded['calls']:,} calls, {loaded['hourly_rows']:,} hourly and"
        f" {loaded['daily_rows']:,} daily rollup rows in {loaded['seconds_elapsed']} s"
        f" ({loaded['calls_per_second']:,} calls/s)",
        flush=True,
    )
    vacuum_seconds = run_async(lambda: vacuum_analyze(dsn))
    print(f"  VACUUM ANALYZE in {vacuum_seconds:.1f} s", flush=True)
    t0 = time.monotonic()
    check = run_async(lambda: check_consistency(pg, database, setup.agency_id, options.seed, today))
    check_seconds = time.monotonic() - t0
    print(
        f"  consistency: {sum(c['equal'] for c in check['checked'])} of"
        f" {len(check['checked'])} equal (raw call rows vs usage_by_sub_account, 30 days,"
        f" UTC and America/New_York) in {check_seconds:.1f} s",
        flush=True,
    )
    if check["problems"]:
        raise RuntimeError("rollups differ from raw calls:\n" + "\n".join(check["problems"]))
    sizes = run_async(lambda: table_sizes(pg, database))
    info = {
        "generator": "bench/dataset.py",
        "options": asdict(options),
        "generated_at": now.isoformat(),
        "owner_email": OWNER_EMAIL,
        "agency_id": str(setup.agency_id),
        "primary_id": str(setup.primary_id),
    }
    run_async(lambda: set_comment(pg, database, info))
    return {
        **info,
        "token": setup.token,
        "agency_gid": setup.agency_gid,
        "api_seconds": round(setup.seconds, 1),
        "suspended": len(setup.suspended),
        "agency_funded": len(setup.agency_funded),
        "grant_movements": grants,
        "grant_seconds": round(grant_seconds, 1),
        "overage_accounts": sum(
            1 for (a, _), s in plan.balances.items() if s == 0 and a != setup.primary_id
        )
        // 2,
        "load": loaded,
        "vacuum_analyze_seconds": round(vacuum_seconds, 1),
        "consistency": check,
        "consistency_seconds": round(check_seconds, 1),
        "tables": sizes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pg", default=DEFAULT_PG, help="user@host:port of PostgreSQL")
    parser.add_argument("--database", default="agencyhub_bench_dataset")
    parser.add_argument("--server", help="URL of an app serving --database (else one is started)")
    parser.add_argument("--sub-accounts", type=int, default=Options.sub_accounts)
    parser.add_argument("--calls", type=int, default=Options.calls)
    parser.add_argument("--days", type=int, default=Options.days)
    parser.add_argument("--seed", type=int, default=Options.seed)
    parser.add_argument("--jobs", type=int, default=max(1, len(os.sched_getaffinity(0))))
    parser.add_argument("--copiers", type=int, default=2, help="COPY connections")
    parser.add_argument("--time-zone", default="UTC", help="the agency's time zone")
    parser.add_argument("--output", type=Path, help="write the summary JSON here")
    args = parser.parse_args()
    options = Options.from_args(args)
    started = time.monotonic()
    if args.server:
        summary = generate(args.server, args.pg, args.database, options)
    else:
        from viewer_http import Server

        workdir = Path(tempfile.mkdtemp(prefix="agencyhub-bench-dataset-"))
        server = None
        try:
            print(f"database {args.database}: recreating and migrating", flush=True)
            run_async(lambda: recreate_database(args.pg, args.database))
            db_url = sqlalchemy_url(args.pg, args.database)
            migrate(db_url, workdir)
            server = Server(
                "graphql",
                [sys.executable, str(BENCH_DIR / "serve_app.py")],
                app_env(db_url, workdir),
                workdir,
            )
            server.wait_ready()
            summary = generate(server.url, args.pg, args.database, options)
        except BaseException:
            if server is not None:
                print(f"--- server log (tail) ---\n{server.log_tail()}", file=sys.stderr)
            raise
        finally:
            if server is not None:
                server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    summary["total_seconds"] = round(time.monotonic() - started, 1)
    summary.pop("token", None)
    print(f"done in {summary['total_seconds']} s; database {args.database} kept", flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
