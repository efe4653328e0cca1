"""`agencyhub reconcile --from --to`: purchases beside their PaymentIntents (at a real
Stripe-compatible server) and their ledger credits, payouts beside their Transfers; rows
that disagree are flagged and the exit code says so."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
from datetime import timedelta

from sqlalchemy import update

from persistence.stripe_gateway import StripeGateway
from persistence.tables import PayoutRow, PurchaseRow
from resolvers.global_id import from_global_id
from resolvers.reconciliation import reconcile
from tests.api.test_buy_minutes import buy, paying_client
from tests.api.test_payment_cards import add_card
from tests.api.test_payouts import account, request, settings
from tests.e2e.server import AGENCYHUB
from tests.payment_provider import CARD_DECLINED_AT_CHARGE, SECRET_KEY

purchase_t = PurchaseRow.__table__
payout_t = PayoutRow.__table__


async def lines_of(client, clock):
    services = client.app.state.services
    day = clock().replace(hour=0, minute=0, second=0, microsecond=0)
    return [line async for line in reconcile(services, day, day + timedelta(days=1))]


async def history(client, stripe_server):
    """A purchase that succeeded, one declined, a payout paid."""
    owner, sub_account = await paying_client(client, stripe_server)
    bought = await buy(client, owner.token, sub_account, 10, key="ok")
    assert bought["purchase"]["status"] == "SUCCEEDED"
    await add_card(
        client, owner.token, sub_account, stripe_server, CARD_DECLINED_AT_CHARGE, makeDefault=True
    )
    declined = await buy(client, owner.token, sub_account, 10, key="declined")
    assert declined["purchase"]["status"] == "FAILED"
    await settings(client, owner.token, connectedAccountId=account("recon"))
    paid = await request(client, owner.token)
    assert paid["payout"]["status"] == "PAID", paid
    return owner, bought["purchase"]["id"], paid["payout"]["id"]


async def tamper(client, table, global_id, **values):
    async with client.app.state.services.database.engine.begin() as conn:
        await conn.execute(
            update(table).where(table.c.id == from_global_id(global_id)[1]).values(**values)
        )


async def test_every_record_agrees_until_one_is_changed_behind_stripes_back(
    app_client, stripe_server, clock
):
    # given a purchase that succeeded, one declined and a payout paid
    _, purchase, payout = await history(app_client, stripe_server)
    # then each is a row and each agrees
    lines = await lines_of(app_client, clock)
    assert sorted((line.record, line.status) for line in lines) == [
        ("payout", "PAID"),
        ("purchase", "FAILED"),
        ("purchase", "SUCCEEDED"),
    ]
    assert [line.problems for line in lines] == [(), (), ()]
    succeeded = next(line for line in lines if line.status == "SUCCEEDED")
    assert succeeded.credited_seconds == succeeded.expected_seconds == 600
    assert succeeded.stripe_status == "succeeded"
    assert succeeded.stripe_amount_cents == succeeded.amount_cents == 375
    # when our records of the purchase and the payout stop matching Stripe's
    await tamper(app_client, purchase_t, purchase, amount_micros=4_000_000)
    await tamper(app_client, payout_t, payout, amount_micros=10_000)
    lines = await lines_of(app_client, clock)
    # then both are flagged, saying what differs
    flagged = {line.record: line.problems for line in lines if not line.agrees}
    assert flagged == {
        "purchase": ("charged 375 usd cents at Stripe, 400 usd here",),
        "payout": ("transferred 75 cents, 1 here",),
    }


async def test_a_row_that_cannot_be_checked_is_flagged(app_client, stripe_server, clock):
    await history(app_client, stripe_server)
    services = app_client.app.state.services
    services.stripe = StripeGateway(SECRET_KEY, None, "http://127.0.0.1:9", max_network_retries=0)
    lines = await lines_of(app_client, clock)
    unverified = [line for line in lines if line.stripe_id is not None]
    assert len(unverified) == 2  # the succeeded purchase's intent, the payout's transfer
    for line in unverified:
        assert not line.agrees
        assert line.problems[0].startswith("Stripe could not be asked")


def run_reconcile(database_url, stripe_server, day):
    environment = {
        **os.environ,
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": database_url,
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_API_BASE": stripe_server.url,
    }
    return subprocess.run(
        [AGENCYHUB, "reconcile", "--from", day, "--to", day],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_command_writes_csv_and_fails_on_a_disagreement(
    app_client, stripe_server, database_url, clock
):
    _, purchase, _ = await history(app_client, stripe_server)
    day = clock().date().isoformat()
    done = await asyncio.to_thread(run_reconcile, database_url, stripe_server, day)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["record"], r["status"], r["agrees"]) for r in rows] == [
        ("purchase", "SUCCEEDED", "yes"),
        ("purchase", "FAILED", "yes"),
        ("payout", "PAID", "yes"),
    ]
    assert rows[0]["amount"] == rows[0]["stripe_amount"] == "3.75"
    # a purchase marked FAILED here that Stripe charged
    await tamper(app_client, purchase_t, purchase, status="FAILED")
    done = await asyncio.to_thread(run_reconcile, database_url, stripe_server, day)
    assert done.returncode == 1
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert rows[0]["agrees"] == "no"
    assert rows[0]["problems"] == "charged at Stripe, FAILED here; credited 600 s while FAILED"
    assert "1 disagreeing" in done.stderr
    # a range with nothing in it agrees
    empty = await asyncio.to_thread(run_reconcile, database_url, stripe_server, "2001-01-01")
    assert empty.returncode == 0 and empty.stdout.count("\n") == 1
