"""Usage ingestion: idempotent batches, per-second billing of the right account, overage,
rejections with a code per call, rollups that equal the raw calls."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from strawberry.utils.str_converters import to_camel_case

from domain.errors import DomainError, ErrorCode
from domain.ledger import LedgerKind, Movement
from domain.live import PeriodUse
from domain.money import Tier
from domain.usage import RollupLine
from persistence import ledger, usage
from persistence.api_keys import add_api_key
from persistence.ledger import mismatches
from persistence.tables import LedgerEntryRow
from persistence.usage import call_t, daily_t, rollup_t
from resolvers.global_id import from_global_id
from tests.api.test_account_manager import (
    ACCOUNT,
    SOURCE,
    SUSPEND,
    account,
    new_client,
    seconds,
)
from tests.api.test_team import KEYS, REVOKE_KEY
from tests.factories import gql, make_agency

ledger_entry_t = LedgerEntryRow.__table__

RECORD = """mutation($calls: [CallInput!]!) { recordCalls(input: {calls: $calls}) {
  accepted duplicates rejected { externalId code message } userErrors { code field } } }"""


def call(
    sub_account_id,
    external_id=None,
    duration=60,
    tier="PREMIUM",
    channel="PHONE",
    direction="OUTBOUND",
    status="COMPLETED",
    started=None,
):
    started = started or datetime.now(UTC) - timedelta(minutes=10)
    return {
        "externalId": external_id or uuid.uuid4().hex,
        "subAccountId": sub_account_id,
        "direction": direction,
        "channel": channel,
        "status": status,
        "tier": tier,
        "startedAt": started.isoformat(),
        "durationSeconds": duration,
    }


async def test_calls_debit_per_second_and_a_retry_is_not_billed_twice(app_client, setup):
    owner, client, key = setup  # the client holds 480 PREMIUM seconds
    batch = [call(client, "c1", 100), call(client, "c2", 30)]
    first = (await gql(app_client, RECORD, {"calls": batch}, key))["data"]["recordCalls"]
    assert (first["accepted"], first["duplicates"], first["rejected"]) == (2, 0, [])
    again = (await gql(app_client, RECORD, {"calls": batch}, key))["data"]["recordCalls"]
    assert (again["accepted"], again["duplicates"]) == (0, 2)
    assert seconds(await account(app_client, owner, client)) == 480 - 130


async def test_running_out_mid_call_records_the_call_as_overage(app_client, setup, database):
    owner, client, key = setup
    body = await gql(app_client, RECORD, {"calls": [call(client, "long", 600)]}, key)
    assert body["data"]["recordCalls"]["accepted"] == 1
    assert seconds(await account(app_client, owner, client)) == 0  # never below zero
    async with database.read() as conn:
        overage = await conn.scalar(select(func.sum(rollup_t.c.overage_seconds)))
        assert overage == 120
        assert await mismatches(conn) == []


@pytest.mark.parametrize("guess", ["empty", "plenty"])
async def test_each_calls_overage_is_exact_whatever_the_balances_seen_last_suggest(
    app_client, setup, database, guess
):
    """Calls are inserted with the overage the balances this process saw last predict, and
    corrected once the balances are locked: a wrong guess either way ends exact."""
    _, client, key = setup  # the client holds 480 PREMIUM seconds
    services = app_client.app.state.services
    funder = (from_global_id(client)[1], Tier.PREMIUM)
    services.last_balances.saw({funder: 0 if guess == "empty" else 10**6})
    run = uuid.uuid4().hex
    start = datetime.now(UTC) - timedelta(hours=1)
    durations = {"a": 200, "b": 200, "c": 200, "d": 50}  # 480 held: c is 120 short, d all
    calls = [
        call(client, run + e, d, started=start + timedelta(minutes=n))
        for n, (e, d) in enumerate(durations.items())
    ]

    body = await gql(app_client, RECORD, {"calls": calls}, key)

    assert body["data"]["recordCalls"]["accepted"] == 4
    async with database.read() as conn:
        rows = await conn.execute(
            select(call_t.c.external_id, call_t.c.overage_seconds).where(
                call_t.c.external_id.startswith(run)
            )
        )
        overage = {e.removeprefix(run): s for e, s in rows.all()}
    assert overage == {"a": 0, "b": 0, "c": 120, "d": 50}
    # and what it saw now is what the next batch is guessed from
    assert services.last_balances.of([funder]) == {funder: 0}


async def test_agency_billed_clients_draw_from_the_primary(app_client, setup):
    owner, client, key = setup
    await gql(app_client, SOURCE, {"id": client}, owner.token)
    await gql(app_client, RECORD, {"calls": [call(client, "x", 60)]}, key)
    assert seconds(await account(app_client, owner, client)) == 480
    assert seconds(await account(app_client, owner, owner.primary_id)) == 500 * 60 - 600 - 60


async def test_each_bad_call_is_rejected_with_its_code_and_the_rest_accepted(app_client, setup):
    owner, client, key = setup
    other = await make_agency(app_client)
    suspended = await new_client(app_client, owner, "Paused")
    await gql(app_client, SUSPEND, {"id": suspended}, owner.token)
    batch = [
        call(client, "good"),
        call(other.primary_id, "foreign"),
        call("garbage", "unknown"),
        call(suspended, "paused"),
        call(client, "negative", duration=-5),
        call(client, "future", started=datetime.now(UTC) + timedelta(hours=1)),
    ]
    result = (await gql(app_client, RECORD, {"calls": batch}, key))["data"]["recordCalls"]
    assert result["accepted"] == 1
    assert {r["externalId"]: r["code"] for r in result["rejected"]} == {
        "foreign": "UNKNOWN_SUBACCOUNT",
        "unknown": "UNKNOWN_SUBACCOUNT",
        "paused": "SUBACCOUNT_SUSPENDED",
        "negative": "INVALID_DURATION",
        "future": "STARTS_IN_FUTURE",
    }


async def test_only_an_ingest_key_may_record_and_batches_are_capped(app_client, setup):
    owner, client, key = setup
    as_user = await gql(app_client, RECORD, {"calls": [call(client)]}, owner.token)
    assert as_user["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    too_many = await gql(app_client, RECORD, {"calls": [call(client) for _ in range(1001)]}, key)
    assert too_many["data"]["recordCalls"]["userErrors"] == [
        {"code": "INVALID_INPUT", "field": ["input", "calls"]}
    ]


async def test_inbound_web_widget_calls_on_basic_cost_the_widget_rate(app_client, setup, database):
    _owner, client, key = setup
    widget = call(client, "w", 60, tier="BASIC", channel="WEB_WIDGET", direction="INBOUND")
    phone = call(client, "p", 60, tier="BASIC")
    await gql(app_client, RECORD, {"calls": [widget, phone]}, key)
    async with database.read() as conn:
        spent, cost = (
            await conn.execute(
                select(func.sum(rollup_t.c.spent_micros), func.sum(rollup_t.c.cost_micros))
            )
        ).one()
    # base: $0.16 + $0.18 for the two minutes; the client pays 25 % more
    assert (cost, spent) == (340_000, 425_000)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(
                st.integers(0, 3),
                st.integers(0, 400),
                st.sampled_from(["BASIC", "PREMIUM"]),
                st.sampled_from(["COMPLETED", "FAILED", "BUSY"]),
                st.integers(0, 47),
            ),
            min_size=1,
            max_size=12,
        ),
        min_size=1,
        max_size=4,
    )
)
async def test_rollups_equal_the_raw_calls_and_balances_equal_grants_minus_debits(
    app_client, clean_setup, database, batches
):
    owner, client, key = await clean_setup()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for batch in batches:
        calls = [
            call(
                client,
                f"{uuid.uuid4().hex}",
                duration,
                tier,
                status=status,
                started=start + timedelta(hours=hour, minutes=n),
            )
            for n, (_, duration, tier, status, hour) in enumerate(batch)
        ]
        body = await gql(app_client, RECORD, {"calls": calls}, key)
        assert body["data"]["recordCalls"]["accepted"] == len(calls)
    async with database.read() as conn:
        raw = (
            await conn.execute(
                select(
                    func.count(),
                    func.sum(call_t.c.duration_seconds),
                    func.sum(call_t.c.overage_seconds),
                )
            )
        ).one()
        rolled = (
            await conn.execute(
                select(
                    func.sum(rollup_t.c.calls),
                    func.sum(rollup_t.c.seconds),
                    func.sum(rollup_t.c.overage_seconds),
                )
            )
        ).one()
        assert tuple(raw) == tuple(rolled)  # each call's overage, as its row keeps it, too
        daily = (
            await conn.execute(
                select(
                    func.sum(daily_t.c.calls),
                    func.sum(daily_t.c.seconds),
                    func.sum(daily_t.c.spent_micros),
                )
            )
        ).one()
        hourly = (
            await conn.execute(
                select(
                    func.sum(rollup_t.c.calls),
                    func.sum(rollup_t.c.seconds),
                    func.sum(rollup_t.c.spent_micros),
                )
            )
        ).one()
        assert tuple(daily) == tuple(hourly)
        assert await mismatches(conn) == []
    node = (await gql(app_client, ACCOUNT, {"id": client}, owner.token))["data"]["node"]
    assert all(b["seconds"] >= 0 for b in node["balances"])


async def test_concurrent_batches_on_one_hot_account_never_overdraw(app_client, setup, database):
    """40 batches at once, all drawing on the same two balances (the client's, and the
    primary's for an agency-billed client): every second is billed once, none below zero."""
    owner, client, key = setup  # the client holds 480 PREMIUM seconds
    billed_by_agency = await new_client(app_client, owner, "Agency billed")
    await gql(app_client, SOURCE, {"id": billed_by_agency}, owner.token)
    primary_before = seconds(await account(app_client, owner, owner.primary_id))

    async def batch(n: int) -> dict:
        calls = [call(client, duration=7) for _ in range(5)]
        calls += [call(billed_by_agency, duration=11) for _ in range(3)]
        return await gql(app_client, RECORD, {"calls": calls}, key)

    results = await asyncio.gather(*(batch(n) for n in range(40)))
    assert all("errors" not in r and r["data"]["recordCalls"]["accepted"] == 8 for r in results)
    assert seconds(await account(app_client, owner, client)) == 0  # 1,400 s asked, 480 held
    assert seconds(await account(app_client, owner, owner.primary_id)) == primary_before - 40 * 33
    async with database.read() as conn:
        assert await mismatches(conn) == []
        overage = await conn.scalar(select(func.sum(rollup_t.c.overage_seconds)))
    assert overage == 40 * 35 - 480


async def test_single_calls_sent_at_once_share_transactions_and_each_is_answered_as_alone(
    app_client, setup, database
):
    """How platforms report calls, one per request as each ends: concurrent requests of one
    agency are billed in shared transactions (resolvers/group_commit.py), yet each answers for
    its own call, a call sent twice at once is billed once, and every second is billed once."""
    owner, client, key = setup  # the client holds 480 PREMIUM seconds
    groups = app_client.app.state.services.ingestion_groups
    groups_before, requests_before = groups.groups_run, groups.items_run
    calls = [call(client, duration=7) for _ in range(40)]
    sent = calls + calls[::4]  # every fourth call twice, at once
    results = await asyncio.gather(*(gql(app_client, RECORD, {"calls": [c]}, key) for c in sent))
    answers: dict[str, list[tuple[int, int]]] = {}
    for sent_call, result in zip(sent, results, strict=True):
        answer = result["data"]["recordCalls"]
        answers.setdefault(sent_call["externalId"], []).append(
            (answer["accepted"], answer["duplicates"])
        )
    for twins in answers.values():  # (accepted, duplicates) of each time the call was sent
        assert sorted(twins) == ([(1, 0)] if len(twins) == 1 else [(0, 1), (1, 0)])
    assert sum(len(a) == 2 for a in answers.values()) == 10
    assert groups.items_run - requests_before == len(sent)
    assert groups.groups_run - groups_before < len(sent) / 2  # they did share transactions
    assert seconds(await account(app_client, owner, client)) == 480 - 40 * 7
    async with database.read() as conn:
        assert await mismatches(conn) == []
        assert await conn.scalar(select(func.count()).select_from(call_t)) == 40
        assert await conn.scalar(select(func.sum(rollup_t.c.calls))) == 40


async def test_a_group_starts_while_the_one_before_commits_and_bills_after_it(
    app_client, setup, database, monkeypatch
):
    """A group lets the next start once it holds the balances (resolvers/group_commit.py,
    `let_next_start`): the next one inserts its calls meanwhile, then waits for the balances.
    Held open here until the next group has started: a call of the first group sent again in
    the second is its duplicate, and the second bills after the first's debits, its overage
    exact."""
    owner, client, key = setup  # the client holds 480 PREMIUM seconds
    groups = app_client.app.state.services.ingestion_groups
    overlapped = groups.groups_overlapped
    real_bill, real_lock = usage.bill, ledger.balances_for_update
    held, second_locking = asyncio.Event(), asyncio.Event()
    locking = 0

    async def lock(*args, **kwargs):
        nonlocal locking
        locking += 1
        if locking == 2:
            second_locking.set()
        return await real_lock(*args, **kwargs)

    async def bill_once_the_next_group_waits(*args, **kwargs):
        if not held.is_set():  # the first group, holding the balances
            held.set()
            async with asyncio.timeout(5):
                while groups.groups_overlapped == overlapped:  # noqa: ASYNC110 (a counter)
                    await asyncio.sleep(0.001)
            # On PostgreSQL the next group reaches the balances meanwhile, and must wait for
            # them; the embedded database runs one writing transaction at a time.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(second_locking.wait(), 1)
                await asyncio.sleep(0.05)
        return await real_bill(*args, **kwargs)

    monkeypatch.setattr(usage, "bill", bill_once_the_next_group_waits)
    monkeypatch.setattr(ledger, "balances_for_update", lock)
    first = call(client, duration=300)
    first_sent = asyncio.create_task(gql(app_client, RECORD, {"calls": [first]}, key))
    await asyncio.wait_for(held.wait(), 5)  # the first group holds the balances
    rest = [call(client, duration=30) for _ in range(10)]
    answers = await asyncio.gather(
        *(gql(app_client, RECORD, {"calls": c}, key) for c in ([first], *([c] for c in rest)))
    )
    assert (await first_sent)["data"]["recordCalls"]["accepted"] == 1
    recorded = [a["data"]["recordCalls"] for a in answers]
    assert (recorded[0]["accepted"], recorded[0]["duplicates"]) == (0, 1)
    assert [(r["accepted"], r["duplicates"]) for r in recorded[1:]] == [(1, 0)] * 10
    assert groups.groups_overlapped > overlapped
    # 480 s: the first call takes 300, the next six 30 each, the last four go over
    assert seconds(await account(app_client, owner, client)) == 0
    async with database.read() as conn:
        assert await mismatches(conn) == []
        assert await conn.scalar(select(func.count()).select_from(call_t)) == 11
        assert await conn.scalar(select(func.sum(call_t.c.overage_seconds))) == 600 - 480
        assert await conn.scalar(select(func.sum(rollup_t.c.overage_seconds))) == 600 - 480


def test_the_call_input_builder_sets_every_field():
    """recordCalls builds CallInput with its own hook (speed); a field added to CallInput
    must be added there too, or it would silently stay unset."""
    from schema.usage import CallInput, _call_from_input

    definition = CallInput.__strawberry_definition__
    value = {to_camel_case(f.python_name): f.python_name for f in definition.fields}
    built = _call_from_input(CallInput, value, None)
    assert {f.python_name: getattr(built, f.python_name) for f in definition.fields} == {
        f.python_name: f.python_name for f in definition.fields
    }
    assert definition.from_input is _call_from_input


async def test_a_revoked_key_bills_nothing_and_its_group_is_refused_at_once(
    app_client, setup, database
):
    """The key is checked in the group's transaction: every request sent with a revoked key
    is told UNAUTHENTICATED, and the group is refused as a whole, not run again request by
    request (which a flood of bad keys would turn into a transaction each)."""
    owner, client, key = setup
    listed = await gql(app_client, KEYS, token=owner.token)
    [edge] = listed["data"]["viewer"]["agency"]["apiKeys"]["edges"]
    await gql(app_client, REVOKE_KEY, {"id": edge["node"]["id"]}, owner.token)
    groups = app_client.app.state.services.ingestion_groups
    groups_before = groups.groups_run
    sent = [[call(client, duration=7)] for _ in range(12)]
    results = await asyncio.gather(*(gql(app_client, RECORD, {"calls": c}, key) for c in sent))
    assert [r["errors"][0]["extensions"]["code"] for r in results] == ["UNAUTHENTICATED"] * 12
    assert groups.groups_run - groups_before < len(sent)
    async with database.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(call_t)) == 0
    assert seconds(await account(app_client, owner, client)) == 480


async def test_a_key_without_the_ingest_scope_is_forbidden_and_bills_nothing(
    app_client, setup, database
):
    owner, client, _ = setup
    services = app_client.app.state.services
    secret = services.tokens.new("ahk_")
    async with database.transaction() as conn:
        await add_api_key(
            conn,
            from_global_id(owner.id)[1],
            "read only",
            services.tokens.digest(secret),
            frozenset({"read"}),
            None,
            datetime.now(UTC),
        )
    result = await gql(app_client, RECORD, {"calls": [call(client)]}, secret)
    assert result["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    async with database.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(call_t)) == 0


async def test_a_debit_below_zero_in_the_billing_statement_is_refused_and_nothing_is_kept(
    app_client, setup, database
):
    """`usage.bill` writes the debits, the overage, the rollups and the counters together (one
    statement on PostgreSQL); billing never asks for more than a balance holds, but if it did
    the statement refuses it, and the transaction keeps none of its writes."""
    owner, client, _ = setup  # the client holds 480 PREMIUM seconds
    agency_id, client_id = from_global_id(owner.id)[1], from_global_id(client)[1]
    now = datetime.now(UTC).replace(microsecond=0)
    quarter = now.replace(minute=now.minute - now.minute % 15, second=0)
    day = now.date()
    use = PeriodUse({(client_id, day): (481, 0)}, {day: 481}, {client_id: day}, day)
    debit = Movement(agency_id, client_id, Tier.PREMIUM, -481, LedgerKind.USAGE, "usage:over")
    rollups = [{(client_id, Tier.PREMIUM, quarter): RollupLine(calls=1, seconds=481)}]
    async with database.read() as conn:
        ledger_rows = await conn.scalar(select(func.count()).select_from(ledger_entry_t))
    with pytest.raises(DomainError) as refused:
        async with database.transaction() as conn:
            await usage.bill(conn, agency_id, [debit], {}, {}, rollups, use, now)
    assert refused.value.code == ErrorCode.INSUFFICIENT_MINUTES
    assert seconds(await account(app_client, owner, client)) == 480
    async with database.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(ledger_entry_t)) == ledger_rows
        assert await conn.scalar(select(func.count()).select_from(rollup_t)) == 0


async def test_started_at_is_read_in_every_iso_form_and_a_bad_one_is_refused_by_name(
    app_client, setup, database
):
    """DateTime goes through schema.dates.parse_datetime: the standard library's reading, and
    dateutil's for what only it reads (`T24:00`: midnight of the next day)."""
    _, client, key = setup
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    forms = {
        "zulu": (today - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "offset": (today - timedelta(hours=2))
        .astimezone(timezone(timedelta(hours=-5)))
        .isoformat(),
        "t24": (today - timedelta(days=1)).strftime("%Y-%m-%dT24:00:00Z"),
    }
    batch = [{**call(client, name), "startedAt": text} for name, text in forms.items()]
    result = (await gql(app_client, RECORD, {"calls": batch}, key))["data"]["recordCalls"]
    assert result["accepted"] == 3, result
    async with database.read() as conn:
        stored = dict((await conn.execute(select(call_t.c.external_id, call_t.c.started_at))).all())
    assert stored["zulu"] == today - timedelta(hours=1)
    assert stored["offset"] == today - timedelta(hours=2)
    assert stored["t24"] == today

    bad = {**call(client, "bad"), "startedAt": "yesterday"}
    answer = await gql(app_client, RECORD, {"calls": [bad]}, key)
    assert answer.get("data") is None
    [error] = answer["errors"]
    assert 'Value cannot represent a DateTime: "yesterday"' in error["message"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
