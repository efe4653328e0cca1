"""Spending caps: reaching the cap pauses exactly the active campaigns (marked as the cap's),
shows a banner, raises SPENDING_CAP_REACHED and an alert; calls are still recorded; a higher
cap, no cap or a new billing period brings back exactly those. Suspension and the cap overlap
in every order without one undoing the other."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from domain.banner import CAPPED_MESSAGE, SUSPENDED_MESSAGE
from persistence.tables import ActivityRow, AlertRow, CapCheckRow, OutboxRow, SubAccountRow
from resolvers import jobs
from resolvers.global_id import from_global_id
from tests.api.conftest import make_setup
from tests.api.test_account_manager import RESTORE, SUSPEND, make_activity
from tests.api.test_usage import RECORD, call
from tests.factories import gql

SET_CAP = """mutation($i: SetSpendingCapInput!) { setSpendingCap(input: $i) {
  subAccount { spendingCap { amount { amount } spentThisPeriod { amount } reached } }
  userErrors { code field } } }"""
STATE = """query($id: ID!) { node(id: $id) { ... on SubAccount {
  status banner { active message }
  spendingCap { reached }
  campaigns(first: 10) { edges { node { name status } } }
  automations(first: 10) { edges { node { name status } } }
  report(range: {from: "2026-11-01", to: "2027-03-01"}) { health { kind } } } } }"""

alert_t = AlertRow.__table__
check_t = CapCheckRow.__table__
activity_t = ActivityRow.__table__
outbox_t = OutboxRow.__table__
sub_account_t = SubAccountRow.__table__


async def capped_world(app_client):
    """A client at 25 % (PREMIUM at $0.375 a minute) with 480 seconds, a running campaign, one
    paused before, a running automation, and an ingest key."""
    owner, client, key = await make_setup(app_client)
    await make_activity(app_client, owner, client, "CAMPAIGN", "Running")
    await make_activity(app_client, owner, client, "CAMPAIGN", "Already paused", "PAUSED")
    await make_activity(app_client, owner, client, "AUTOMATION", "Follow-up")
    return owner, client, key


async def set_cap(app_client, owner, client, amount):
    body = await gql(
        app_client, SET_CAP, {"i": {"subAccountId": client, "amount": amount}}, owner.token
    )
    return body["data"]["setSpendingCap"]


async def spend(app_client, key, client, seconds=240):
    body = await gql(app_client, RECORD, {"calls": [call(client, None, seconds)]}, key)
    assert body["data"]["recordCalls"]["accepted"] == 1, body


async def state(app_client, owner, client):
    body = await gql(app_client, STATE, {"id": client}, owner.token)
    assert body["data"]["node"] is not None, body
    node = body["data"]["node"]
    return {
        "campaigns": {e["node"]["name"]: e["node"]["status"] for e in node["campaigns"]["edges"]},
        "automations": [e["node"]["status"] for e in node["automations"]["edges"]],
        "banner": node["banner"]["message"] if node["banner"]["active"] else None,
        "flags": {f["kind"] for f in node["report"]["health"]},
        "status": node["status"],
    }


RUNNING = {"Running": "ACTIVE", "Already paused": "PAUSED"}
HELD = {"Running": "PAUSED", "Already paused": "PAUSED"}


async def test_reaching_the_cap_pauses_the_active_campaigns_until_a_higher_cap(app_client):
    owner, client, key = await capped_world(app_client)
    services = app_client.app.state.services
    # given a cap of $0.50 a month
    set_ = await set_cap(app_client, owner, client, "0.50")
    assert set_["userErrors"] == [] and set_["subAccount"]["spendingCap"]["reached"] is False
    # when a call costs $1.50: ingestion asks for a check, and the cap job caps
    await spend(app_client, key, client, 240)
    async with services.database.read() as conn:
        assert len((await conn.execute(select(check_t))).all()) == 1
    assert services.wakeup("apply-spending-caps").is_set()
    assert await jobs.apply_spending_caps(services) == 1
    # then the running campaign is paused, not the automation; banner, flag and alert say so
    now = await state(app_client, owner, client)
    assert now["campaigns"] == HELD and now["automations"] == ["ACTIVE"]
    assert now["banner"] == CAPPED_MESSAGE
    assert "SPENDING_CAP_REACHED" in now["flags"]
    async with services.database.read() as conn:
        assert (await conn.execute(select(alert_t.c.kind))).scalars().all() == [
            "SPENDING_CAP_REACHED"
        ]
        assert (await conn.execute(select(check_t))).all() == []
    # and the banner went out live (bannerChanged)
    async with services.database.read() as conn:
        banner = await conn.scalar(
            select(outbox_t.c.payload)
            .where(outbox_t.c.kind == "BANNER_CHANGED")
            .order_by(outbox_t.c.id.desc())
            .limit(1)
        )
    assert json.loads(banner)["message"] == CAPPED_MESSAGE
    # and calls still reported are recorded and billed
    await spend(app_client, key, client, 60)
    assert await jobs.apply_spending_caps(services) == 0
    # when the cap goes up past what was spent: exactly what the cap paused comes back
    raised = await set_cap(app_client, owner, client, "5")
    assert raised["subAccount"]["spendingCap"] == {
        "amount": {"amount": "5.000000"},
        "spentThisPeriod": {"amount": "1.875000"},  # 5 minutes at $0.375
        "reached": False,
    }
    now = await state(app_client, owner, client)
    assert now["campaigns"] == RUNNING and now["banner"] is None
    assert "SPENDING_CAP_REACHED" not in now["flags"]
    # a cap set below what was spent caps at once; removing it lifts it
    await set_cap(app_client, owner, client, "0.10")
    assert (await state(app_client, owner, client))["campaigns"] == HELD
    removed = await set_cap(app_client, owner, client, None)
    assert removed["subAccount"]["spendingCap"] is None
    assert (await state(app_client, owner, client))["campaigns"] == RUNNING


async def test_a_new_billing_period_lifts_the_cap(app_client, clock):
    owner, client, key = await capped_world(app_client)
    services = app_client.app.state.services
    await set_cap(app_client, owner, client, "0.50")
    await spend(app_client, key, client, 240)
    await jobs.apply_spending_caps(services)
    assert (await state(app_client, owner, client))["campaigns"] == HELD
    # when the next billing period begins, the job lifts it (spending starts from zero)
    clock.advance(timedelta(days=32))
    assert await jobs.apply_spending_caps(services) == 1
    assert await jobs.apply_spending_caps(services) == 0
    # (a month on the test's session has expired: read the rows)
    async with services.database.read() as conn:
        rows = await conn.execute(select(activity_t.c.name, activity_t.c.status))
        assert {r.name: r.status for r in rows} == {**RUNNING, "Follow-up": "ACTIVE"}
        capped = await conn.scalar(
            select(sub_account_t.c.capped_at).where(sub_account_t.c.id == from_global_id(client)[1])
        )
        assert capped is None


async def _cap_reached(app_client, owner, client, key):
    await set_cap(app_client, owner, client, "0.50")
    await spend(app_client, key, client, 240)
    assert await jobs.apply_spending_caps(app_client.app.state.services) == 1


async def _cap_lifted(app_client, owner, client, key):
    await set_cap(app_client, owner, client, None)


async def _suspend(app_client, owner, client, key):
    body = await gql(app_client, SUSPEND, {"id": client, "note": None}, owner.token)
    assert body["data"]["suspendSubAccount"]["userErrors"] == [], body


async def _restore(app_client, owner, client, key):
    body = await gql(app_client, RESTORE, {"id": client}, owner.token)
    assert body["data"]["restoreSubAccount"]["userErrors"] == [], body


@pytest.mark.parametrize(
    "order",
    [
        # cap first, then suspension: restore first, then lift / lift first, then restore
        ("cap", "suspend", "restore", "lift"),
        ("cap", "suspend", "lift", "restore"),
        # suspension first, then the cap (set while suspended, already reached)
        ("suspend", "cap", "restore", "lift"),
        ("suspend", "cap", "lift", "restore"),
    ],
)
async def test_suspension_and_cap_overlapping_in_any_order_restore_exactly(app_client, order):
    owner, client, key = await capped_world(app_client)
    if order[0] == "suspend":
        await spend(app_client, key, client, 240)  # spent before the suspension
    steps = {"cap": _cap_reached, "lift": _cap_lifted, "suspend": _suspend, "restore": _restore}
    if order[0] == "suspend":

        async def cap_while_suspended(app_client, owner, client, key):
            payload = await set_cap(app_client, owner, client, "0.50")
            assert payload["userErrors"] == [] and payload["subAccount"]["spendingCap"]["reached"]

        steps["cap"] = cap_while_suspended
    held = {"cap": False, "suspend": False}
    for step in order:
        await steps[step](app_client, owner, client, key)
        held["cap"] = step == "cap" or (held["cap"] and step != "lift")
        held["suspend"] = step == "suspend" or (held["suspend"] and step != "restore")
        now = await state(app_client, owner, client)
        # paused while either holds; exactly what was running comes back when neither does
        assert now["campaigns"] == (HELD if any(held.values()) else RUNNING), (step, now)
        # the automation follows the suspension only
        assert now["automations"] == (["PAUSED"] if held["suspend"] else ["ACTIVE"]), step
        expected_banner = (
            SUSPENDED_MESSAGE if held["suspend"] else CAPPED_MESSAGE if held["cap"] else None
        )
        assert now["banner"] == expected_banner, (step, now)


async def test_cap_rules_have_their_codes(app_client):
    owner, client, _ = await capped_world(app_client)
    negative = await set_cap(app_client, owner, client, "-1")
    assert negative["userErrors"] == [{"code": "INVALID_INPUT", "field": ["input", "amount"]}]
    primary = await set_cap(app_client, owner, owner.primary_id, "10")
    assert primary["userErrors"] == [{"code": "INVALID_INPUT", "field": ["input", "subAccountId"]}]
    for amount in ("10.0000001", "Infinity", "NaN"):
        refused = await set_cap(app_client, owner, client, amount)
        assert refused["userErrors"] == [{"code": "INVALID_INPUT", "field": ["input", "amount"]}]


CAPS_LIST = """{ viewer { agency { subAccounts(first: 50) { edges { node { id
  spendingCap { amount { amount } spentThisPeriod { amount } reached } } } } } } }"""


async def test_a_list_shows_every_cap_and_its_spending_in_the_same_few_statements(app_client):
    """Caps and this period's spending load per page (DataLoaders), not per sub-account."""
    from sqlalchemy import event

    from tests.api.test_account_manager import new_client

    owner, client, key = await make_setup(app_client)
    await set_cap(app_client, owner, client, "100")
    await spend(app_client, key, client)  # 240 s at $0.375 a minute: $1.50
    database = app_client.app.state.services.database
    engines = {database.engine.sync_engine, database._read_engine.sync_engine}

    async def statements() -> tuple[int, dict]:
        seen = []

        def count(conn, cursor, statement, *args):
            relay = "outbox" in statement or "advisory" in statement or "webhook" in statement
            if not relay and not statement.lstrip().upper().startswith(("BEGIN", "COMMIT")):
                seen.append(statement)

        for engine in engines:
            event.listen(engine, "before_cursor_execute", count)
        try:
            body = await gql(app_client, CAPS_LIST, token=owner.token)
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", count)
        assert "errors" not in body, body
        edges = body["data"]["viewer"]["agency"]["subAccounts"]["edges"]
        return len(seen), {e["node"]["id"]: e["node"]["spendingCap"] for e in edges}

    few, caps = await statements()
    assert caps[client] == {
        "amount": {"amount": "100.000000"},
        "spentThisPeriod": {"amount": "1.500000"},
        "reached": False,
    }
    for n in range(4):
        other = await new_client(app_client, owner, f"Capped {n}")
        await set_cap(app_client, owner, other, str(10 + n))
    many, caps = await statements()
    assert many == few, (few, many)
    assert len([c for c in caps.values() if c is not None]) == 5
