"""Events carry the figures as of their own commit: balances right after the change, this
period's use from counters that equal the rollups, the call that raised them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import select

from domain.events import USAGE_KINDS, EventKind
from persistence.ledger import ledger_t, mismatches
from persistence.outbox import outbox
from resolvers.api_keys import issue_api_key
from resolvers.global_id import from_global_id
from tests.api.test_account_manager import TRANSFER, new_client, transfer_input
from tests.api.test_reports import SUB_REPORT
from tests.api.test_usage import RECORD, call
from tests.factories import gql, make_agency


async def usage_events(database, sub_account_id):
    """The sub-account's usage events as written, in commit order (outbox id order: each was
    written while its change held the sub-account's balance rows)."""
    async with database.read() as conn:
        rows = await conn.execute(
            select(outbox.c.kind, outbox.c.payload)
            .where(outbox.c.key == str(sub_account_id))
            .order_by(outbox.c.id)
        )
        return [orjson.loads(r.payload) for r in rows if r.kind in USAGE_KINDS]


async def premium_history(database, sub_account_id):
    """The PREMIUM balance after each ledger entry of the sub-account, in ledger order."""
    async with database.read() as conn:
        deltas = await conn.scalars(
            select(ledger_t.c.delta_seconds)
            .where(ledger_t.c.sub_account_id == sub_account_id, ledger_t.c.tier == "PREMIUM")
            .order_by(ledger_t.c.id)
        )
        running, history = 0, []
        for delta in deltas:
            running += delta
            history.append(running)
        return history


async def test_each_event_shows_the_balance_right_after_its_own_change_under_concurrency(
    app_client, database
):
    # given a client funded by a transfer, and an ingest key
    owner = await make_agency(app_client, plan="Agency Unlimited")
    client = await new_client(app_client, owner, markup="20")
    await gql(app_client, TRANSFER, transfer_input(owner.primary_id, client, "300"), owner.token)
    services = app_client.app.state.services
    _, key = await issue_api_key(services, from_global_id(owner.id)[1], "platform", None)
    # when single calls and transfers into it race each other
    durations = list(range(11, 51))

    async def record(seconds):
        return await gql(app_client, RECORD, {"calls": [call(client, duration=seconds)]}, key)

    async def top_up():
        return await gql(
            app_client, TRANSFER, transfer_input(owner.primary_id, client, "1"), owner.token
        )

    results = await asyncio.gather(*(record(s) for s in durations), *(top_up() for _ in range(10)))
    assert [r for r in results if "errors" in r] == []
    # then the n-th event shows exactly the balance after the n-th change, and each call's
    # event counts every call committed before it in this period
    client_id = from_global_id(client)[1]
    events = await usage_events(database, client_id)
    history = await premium_history(database, client_id)
    assert len(events) == len(history) == 1 + len(durations) + 10
    assert [e["balances"]["PREMIUM"] for e in events] == history
    used = 0
    for event in events:
        if event["last_call"] is not None:
            used += event["last_call"]["duration_seconds"]
        assert event["seconds_this_period"] == used
    assert sorted(e["last_call"]["duration_seconds"] for e in events if e["last_call"]) == durations
    async with database.read() as conn:
        assert await mismatches(conn) == []


async def test_this_periods_figures_equal_the_report_of_the_period(app_client, database):
    # given a client whose billing period started today (it was created today)
    owner = await make_agency(app_client)
    client = await new_client(app_client, owner, markup="33.33")
    await gql(app_client, TRANSFER, transfer_input(owner.primary_id, client, "5"), owner.token)
    services = app_client.app.state.services
    _, key = await issue_api_key(services, from_global_id(owner.id)[1], "platform", None)
    now = datetime.now(UTC)
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # when calls of this period arrive (some running into overage), and one from before it
    batches = [
        [call(client, duration=d, started=start_of_day + timedelta(seconds=d)) for d in (7, 61)],
        [call(client, duration=299, started=start_of_day + timedelta(minutes=3))],
        [call(client, duration=500, started=start_of_day - timedelta(days=3))],  # before it
    ]
    for batch in batches:
        answer = await gql(app_client, RECORD, {"calls": batch}, key)
        assert answer["data"]["recordCalls"]["accepted"] == len(batch)
    # then the last event's "this period" equals the report of today
    events = await usage_events(database, from_global_id(client)[1])
    last = events[-1]
    report = await gql(
        app_client,
        SUB_REPORT,
        {"id": client, "from": str(now.date()), "to": str(now.date())},
        owner.token,
    )
    figures = report["data"]["node"]["report"]
    assert last["seconds_this_period"] == 7 + 61 + 299
    assert last["seconds_this_period"] == sum(m["seconds"] for m in figures["minutesUsed"])
    spent = f"{last['spent_this_period_micros'] / 1_000_000:.6f}"
    assert spent == figures["spent"]["amount"]
    assert last["last_call"]["duration_seconds"] == 500  # the latest-starting of its batch


async def test_agency_totals_events_carry_the_plan_periods_minutes(app_client, setup, database):
    _, client, key = setup
    for seconds in (30, 45):
        await gql(app_client, RECORD, {"calls": [call(client, duration=seconds)]}, key)
    async with database.read() as conn:
        rows = await conn.execute(
            select(outbox.c.payload)
            .where(outbox.c.kind == EventKind.AGENCY_TOTALS_UPDATED)
            .order_by(outbox.c.id)
        )
        totals = [orjson.loads(r.payload) for r in rows]
    assert [t["seconds_this_period"] for t in totals] == [30, 75]
    assert {t["active_sub_accounts"] for t in totals} == {2}  # the primary and the client
