"""Ingestion, transfers and removals over the same sub-accounts at once, on PostgreSQL: no
request fails, no transaction deadlocks (PostgreSQL's own count says so), every accepted call
is billed once and every idempotent transfer moves once."""

from __future__ import annotations

import asyncio
import logging
import random
import time

import pytest
from sqlalchemy import func, select, text

from persistence.ledger import ledger_t, mismatches
from persistence.tables import MinuteTransferRow
from persistence.usage import call_t, rollup_t
from resolvers.api_keys import issue_api_key
from resolvers.global_id import from_global_id
from tests.api.test_account_manager import REMOVE, SOURCE, TRANSFER, new_client, transfer_input
from tests.api.test_usage import RECORD, call
from tests.factories import gql, make_agency

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

transfer_t = MinuteTransferRow.__table__
CLIENTS = 8  # 3 of them agency-billed: their calls debit the primary's balance
DOOMED = 2  # also receive calls and transfers, and are removed half-way
BATCHES = 24  # of 50 calls each, every one sent twice in two different orders
TRANSFERS = 60  # with idempotency keys; every third one sent twice at once
USER_ERRORS = {"INSUFFICIENT_MINUTES", "SUBACCOUNT_REMOVED"}


async def deadlocks(database) -> int:
    """PostgreSQL's count of deadlocks in this database, once every backend has reported.

    Backends flush their statistics when idle, at most once a second: read until the count
    has held still for longer than that.
    """
    query = text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    last, since = None, time.monotonic()
    while True:
        async with database.read() as conn:
            await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            count = int(await conn.scalar(query))
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since > 2.5:
            return count
        await asyncio.sleep(0.25)


async def test_ingestion_and_transfers_on_the_same_accounts_never_deadlock(
    app_client, database, caplog
):
    # given an agency whose clients all hold minutes, some billed to the agency's primary
    owner = await make_agency(app_client, plan="Agency Unlimited")  # 2,000 PREMIUM minutes
    clients = [
        await new_client(app_client, owner, f"Client {n}", markup=("0", "12.5", "40")[n % 3])
        for n in range(CLIENTS + DOOMED)
    ]
    for client in clients:
        body = await gql(
            app_client, TRANSFER, transfer_input(owner.primary_id, client, "90"), owner.token
        )
        assert body["data"]["transferMinutes"]["userErrors"] == []
    for client in clients[:3]:
        await gql(app_client, SOURCE, {"id": client}, owner.token)
    services = app_client.app.state.services
    _, key = await issue_api_key(services, from_global_id(owner.id)[1], "platform", None)
    accounts = [owner.primary_id, *clients]
    doomed, keepers = clients[-DOOMED:], accounts[: -DOOMED or None]
    rng = random.Random(11)

    batches = []  # each sent twice at once: the platform re-sends it, reordered
    for n in range(BATCHES):
        # a few clients per batch: the agency-billed ones debit the primary, which the batch
        # itself does not name (its lock is taken late, by the ledger's foreign key)
        some = rng.sample(clients, rng.randint(2, 5))
        calls = [
            call(rng.choice(some), f"b{n}-c{i}", duration=rng.randint(1, 90)) for i in range(50)
        ]
        batches.append([calls, rng.sample(calls, len(calls))])

    transfers = []  # every third one sent twice at once, as a client retrying on a timeout
    for n in range(TRANSFERS):
        source, destination = rng.sample(accounts, 2)
        if n % 2:  # half of them from the primary, which funds the agency-billed clients
            source, destination = owner.primary_id, rng.choice(clients)
        request = transfer_input(source, destination, str(rng.choice((1, 3, 7))), f"t{n}")
        transfers.append([request, request] if n % 3 == 0 else [request])

    async def record(calls: list[dict]) -> tuple[list[dict], dict]:
        return calls, await gql(app_client, RECORD, {"calls": calls}, key)

    async def move(request: dict) -> tuple[dict, dict]:
        return request, await gql(app_client, TRANSFER, request, owner.token)

    async def remove(sub_account: str) -> tuple[str, dict]:
        await asyncio.sleep(0.05 * rng.random())
        variables = {"id": sub_account, "to": rng.choice(keepers)}
        return sub_account, await gql(app_client, REMOVE, variables, owner.token)

    units = [[record(b) for b in twins] for twins in batches]
    units += [[move(t) for t in twins] for twins in transfers]
    rng.shuffle(units)
    work = [request for unit in units for request in unit] + [remove(d) for d in doomed]
    deadlocks_before = await deadlocks(database)
    caplog.set_level(logging.INFO)

    # when all of it runs at once
    results = await asyncio.gather(*work)

    # then no client saw an error and PostgreSQL never had to break a deadlock
    errors = [body["errors"] for _, body in results if "errors" in body]
    new_deadlocks = await deadlocks(database) - deadlocks_before
    assert (len(errors), new_deadlocks) == (0, 0), errors[:3]
    assert [r.getMessage() for r in caplog.records if "40P01" in r.getMessage()] == []
    recorded = [b["data"]["recordCalls"] for _, b in results if "recordCalls" in b["data"]]
    moved = [
        (r, b["data"]["transferMinutes"]) for r, b in results if "transferMinutes" in b["data"]
    ]
    removed = [b["data"]["removeSubAccount"] for _, b in results if "removeSubAccount" in b["data"]]
    assert all(r["userErrors"] == [] for r in recorded + removed)
    assert {e["code"] for _, m in moved for e in m["userErrors"]} <= USER_ERRORS
    assert sum(r["accepted"] + r["duplicates"] + len(r["rejected"]) for r in recorded) == (
        BATCHES * 2 * 50
    )
    assert {j["code"] for r in recorded for j in r["rejected"]} <= {"SUBACCOUNT_REMOVED"}

    # and every accepted call is stored and billed once, every keyed transfer moved once
    accepted = sum(r["accepted"] for r in recorded)
    twins: dict[str, set[str]] = {}
    for request, result in moved:
        if result["transfer"]:
            twins.setdefault(request["i"]["idempotencyKey"], set()).add(result["transfer"]["id"])
    assert all(len(ids) == 1 for ids in twins.values())  # a retried key got the same transfer
    async with database.read() as conn:
        assert await mismatches(conn) == []
        assert await conn.scalar(select(func.count()).select_from(call_t)) == accepted
        assert await conn.scalar(select(func.sum(rollup_t.c.calls))) == accepted
        call_seconds = await conn.scalar(select(func.sum(call_t.c.duration_seconds)))
        debited = await conn.scalar(
            select(-func.sum(ledger_t.c.delta_seconds)).where(ledger_t.c.kind == "USAGE")
        )
        overage = await conn.scalar(select(func.sum(rollup_t.c.overage_seconds)))
        assert debited + overage == call_seconds  # each second billed, or overage, once
        transfer_rows = await conn.scalar(select(func.count()).select_from(transfer_t))
    assert transfer_rows == len(clients) + len(twins)  # the seed transfers, then one per key
