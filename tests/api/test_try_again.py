"""Mutations whose transaction loses a deadlock: run again whole (nothing counted twice), and
after the last attempt answered with TRY_AGAIN, never "Unexpected error" (PostgreSQL)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from persistence import agencies, usage
from persistence.ledger import mismatches
from persistence.usage import call_t, rollup_t
from tests.api.test_account_manager import account, seconds
from tests.api.test_reports import UPDATE_AGENCY
from tests.api.test_usage import RECORD, call
from tests.deadlocks import Opponents
from tests.factories import gql

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
VIEWER_AGENCY = "{ viewer { agency { name } } }"


async def test_a_batch_run_again_after_a_deadlock_is_counted_and_billed_once(
    app_client, setup, database, monkeypatch
):
    # given a batch whose transaction deadlocks once, after its calls and balance locks,
    # before its debits and rollups
    owner, client, key = setup  # the client holds 480 PREMIUM seconds
    opponents = Opponents(database)
    bill = usage.bill

    async def deadlocking_once(conn, *args):
        if opponents.played == 0:
            await opponents.deadlock(conn)
        return await bill(conn, *args)

    monkeypatch.setattr(usage, "bill", deadlocking_once)
    batch = [call(client, "a", 100), call(client, "b", 30), call(client, "a", 100)]

    # when the platform records it
    body = await gql(app_client, RECORD, {"calls": batch}, key)
    await opponents.finished()

    # then the answer counts each call once, and each second was billed once
    assert opponents.played == 1
    assert body["data"]["recordCalls"] == {
        "accepted": 2,
        "duplicates": 1,
        "rejected": [],
        "userErrors": [],
    }
    assert seconds(await account(app_client, owner, client)) == 480 - 130
    async with database.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(call_t)) == 2
        assert await conn.scalar(select(func.sum(rollup_t.c.calls))) == 2
        assert await mismatches(conn) == []


async def test_a_mutation_that_keeps_deadlocking_is_answered_try_again(
    app_client, setup, database, monkeypatch, caplog
):
    # given an agency rename whose transaction loses a deadlock at every attempt
    owner, _client, _key = setup
    before = await gql(app_client, VIEWER_AGENCY, token=owner.token)
    opponents = Opponents(database)
    update_agency = agencies.update_agency

    async def always_deadlocking(conn, *args, **values):
        await opponents.deadlock(conn)
        await update_agency(conn, *args, **values)

    monkeypatch.setattr(agencies, "update_agency", always_deadlocking)
    caplog.set_level(logging.INFO)

    # when the owner renames the agency
    body = await gql(app_client, UPDATE_AGENCY, {"i": {"name": "Renamed"}}, owner.token)
    await opponents.finished()

    # then, after every attempt, the client is told to try again; nothing changed
    [error] = body["errors"]
    assert error["extensions"]["code"] == "TRY_AGAIN"
    assert error["message"] == (
        "The database was too busy to finish this request and nothing was saved; try again."
    )
    assert opponents.played == app_client.app.state.services.retry.attempts == 4
    assert await gql(app_client, VIEWER_AGENCY, token=owner.token) == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no stack trace
