"""Messaging through the API: recordMessages (idempotent, rejections per message, batches in any
order or at once) and SubAccount.messaging(range) equal to the raw messages of the local dates,
and the monthly volume limit."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.test_report_zones import midnight
from tests.api.test_reports import UPDATE_AGENCY
from tests.api.test_team import KEYS, REVOKE_KEY
from tests.factories import gql

RECORD = """mutation($m: [MessageInput!]!) { recordMessages(input: {messages: $m}) {
  accepted duplicates rejected { externalId code message } userErrors { code field } } }"""
STATS = """query($id: ID!, $from: Date!, $to: Date!) { node(id: $id) { ... on SubAccount {
  messagingVolumeLimit messaging(range: {from: $from, to: $to}) { sent received newConversations
    respondedConversations responseRate volumeUsed volumeLimit } } } }"""
LIMIT = """mutation($id: ID!, $limit: Int) {
  setMessagingVolumeLimit(input: {subAccountId: $id, monthlyLimit: $limit}) {
    subAccount { messagingVolumeLimit } userErrors { code field } } }"""
DAY0 = datetime(2026, 11, 20).date()


def message(account, external_id, conversation, direction, sent_at):
    return {
        "externalId": external_id,
        "subAccountId": account,
        "conversationId": conversation,
        "direction": direction,
        "sentAt": sent_at.isoformat(),
    }


def expected(messages: list[dict], zone: ZoneInfo, lo, hi) -> dict:
    """The figures of the local dates [lo, hi] from the raw messages."""
    inside = [
        m
        for m in messages
        if lo <= datetime.fromisoformat(m["sentAt"]).astimezone(zone).date() <= hi
    ]
    threads = defaultdict(list)
    for m in messages:
        threads[m["conversationId"]].append(m)
    new_out = new_in = responded = 0
    for thread in threads.values():
        first = min(thread, key=lambda m: (datetime.fromisoformat(m["sentAt"]), m["externalId"]))
        opened = datetime.fromisoformat(first["sentAt"])
        if not lo <= opened.astimezone(zone).date() <= hi:
            continue
        if first["direction"] == "OUTBOUND":
            new_out += 1
            responded += any(
                m["direction"] == "INBOUND" and datetime.fromisoformat(m["sentAt"]) > opened
                for m in thread
            )
        else:
            new_in += 1
    rate = None if not new_out else str((Decimal(responded) / new_out).quantize(Decimal("0.0001")))
    return {
        "sent": sum(m["direction"] == "OUTBOUND" for m in inside),
        "received": sum(m["direction"] == "INBOUND" for m in inside),
        "newConversations": new_out + new_in,
        "respondedConversations": responded,
        "responseRate": rate,
    }


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    zone_name=st.sampled_from(["Asia/Kolkata", "America/St_Johns", "UTC", "Asia/Kathmandu"]),
    raw=st.lists(
        st.tuples(
            st.integers(0, 5), st.sampled_from(["INBOUND", "OUTBOUND"]), st.integers(0, 3 * 86_400)
        ),
        min_size=1,
        max_size=30,
    ),
    seed=st.integers(0, 1000),
    first=st.integers(0, 3),
    length=st.integers(0, 3),
)
async def test_figures_equal_the_raw_messages_of_the_local_dates_in_any_arrival_order(
    app_client, clean_setup, clock, zone_name, raw, seed, first, length
):
    zone = ZoneInfo(zone_name)
    clock.now = midnight(DAY0 + timedelta(days=5), zone)
    owner, client, key = await clean_setup()
    await gql(app_client, UPDATE_AGENCY, {"i": {"timeZone": zone_name}}, owner.token)
    start = midnight(DAY0, zone)
    messages = [
        message(client, f"m{i}", f"c{c}", d, start + timedelta(seconds=s))
        for i, (c, d, s) in enumerate(raw)
    ]
    # sent in random batches, in a random order, some twice
    rng = random.Random(seed)
    arrival = messages + rng.sample(messages, len(messages) // 3)
    rng.shuffle(arrival)
    size = rng.randint(1, 8)
    accepted = duplicates = 0
    for n in range(0, len(arrival), size):
        body = await gql(app_client, RECORD, {"m": arrival[n : n + size]}, key)
        result = body["data"]["recordMessages"]
        assert result["rejected"] == [] and result["userErrors"] == [], result
        accepted += result["accepted"]
        duplicates += result["duplicates"]
    assert (accepted, duplicates) == (len(messages), len(arrival) - len(messages))

    lo = DAY0 + timedelta(days=first)
    hi = lo + timedelta(days=length)
    body = await gql(
        app_client, STATS, {"id": client, "from": lo.isoformat(), "to": hi.isoformat()}, owner.token
    )
    stats = body["data"]["node"]["messaging"]
    assert {k: stats[k] for k in expected(messages, zone, lo, hi)} == expected(
        messages, zone, lo, hi
    )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_batches_sent_at_once_about_the_same_conversations_count_each_once(app_client, setup):
    owner, client, key = setup
    at = datetime(2026, 11, 20, 12, tzinfo=UTC)
    messages = [
        message(
            client,
            f"m{i}",
            f"c{i % 7}",
            "INBOUND" if i % 3 else "OUTBOUND",
            at + timedelta(minutes=i),
        )
        for i in range(60)
    ]
    batches = [messages[i::6] for i in range(6)]
    bodies = await asyncio.gather(*(gql(app_client, RECORD, {"m": b}, key) for b in batches))
    assert sum(b["data"]["recordMessages"]["accepted"] for b in bodies) == 60
    body = await gql(
        app_client, STATS, {"id": client, "from": "2026-11-20", "to": "2026-11-20"}, owner.token
    )
    want = expected(messages, ZoneInfo("UTC"), at.date(), at.date())
    assert {k: body["data"]["node"]["messaging"][k] for k in want} == want


async def test_messages_are_refused_one_by_one_with_a_code(app_client, setup):
    owner, client, key = setup
    now = datetime.now(UTC)
    body = await gql(
        app_client,
        RECORD,
        {
            "m": [
                message(client, "ok", "c", "OUTBOUND", now - timedelta(minutes=1)),
                message(client, "future", "c", "OUTBOUND", now + timedelta(hours=1)),
                message(client, "", "c", "OUTBOUND", now),
                message(client, "no-thread", "", "OUTBOUND", now),
                message("U3ViQWNjb3VudDpub3BlCg", "nobody", "c", "OUTBOUND", now),
            ]
        },
        key,
    )
    result = body["data"]["recordMessages"]
    assert result["accepted"] == 1
    assert [(r["externalId"], r["code"]) for r in result["rejected"]] == [
        ("future", "STARTS_IN_FUTURE"),
        ("", "INVALID_EXTERNAL_ID"),
        ("no-thread", "INVALID_CONVERSATION_ID"),
        ("nobody", "UNKNOWN_SUBACCOUNT"),
    ]
    too_many = [message(client, f"x{i}", "c", "OUTBOUND", now) for i in range(1001)]
    body = await gql(app_client, RECORD, {"m": too_many}, key)
    assert body["data"]["recordMessages"]["userErrors"] == [
        {"code": "INVALID_INPUT", "field": ["input", "messages"]}
    ]
    body = await gql(app_client, RECORD, {"m": [too_many[0]]}, owner.token)  # not an API key
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] in ("FORBIDDEN", "UNAUTHENTICATED")


async def test_the_volume_limit_is_set_by_admins_and_shown_against_this_periods_outbound(
    app_client, setup
):
    owner, client, key = setup
    now = datetime.now(UTC)
    sent = [
        message(client, f"s{i}", f"c{i}", "OUTBOUND", now - timedelta(minutes=i + 1))
        for i in range(3)
    ]
    sent.append(message(client, "r", "c0", "INBOUND", now))
    await gql(app_client, RECORD, {"m": sent}, key)
    body = await gql(app_client, LIMIT, {"id": client, "limit": 250}, owner.token)
    assert body["data"]["setMessagingVolumeLimit"] == {
        "subAccount": {"messagingVolumeLimit": 250},
        "userErrors": [],
    }
    today = now.date().isoformat()
    stats = (await gql(app_client, STATS, {"id": client, "from": today, "to": today}, owner.token))[
        "data"
    ]["node"]
    assert stats["messagingVolumeLimit"] == 250
    assert (stats["messaging"]["volumeUsed"], stats["messaging"]["volumeLimit"]) == (3, 250)
    body = await gql(app_client, LIMIT, {"id": client, "limit": -1}, owner.token)
    assert body["data"]["setMessagingVolumeLimit"]["userErrors"] == [
        {"code": "INVALID_INPUT", "field": ["input", "monthlyLimit"]}
    ]
    body = await gql(app_client, LIMIT, {"id": client, "limit": None}, owner.token)
    assert body["data"]["setMessagingVolumeLimit"]["subAccount"] == {"messagingVolumeLimit": None}


async def test_a_revoked_key_records_no_message(app_client, setup):
    """The key is checked in the messages' own transaction (as for calls)."""
    owner, client, key = setup
    listed = await gql(app_client, KEYS, token=owner.token)
    [edge] = listed["data"]["viewer"]["agency"]["apiKeys"]["edges"]
    await gql(app_client, REVOKE_KEY, {"id": edge["node"]["id"]}, owner.token)
    now = datetime.now(UTC)
    sent = [message(client, "m1", "c", "OUTBOUND", now - timedelta(minutes=1))]
    body = await gql(app_client, RECORD, {"m": sent}, key)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    days = {"from": str(now.date() - timedelta(days=1)), "to": str(now.date())}
    stats = await gql(app_client, STATS, {"id": client, **days}, owner.token)
    assert stats["data"]["node"]["messaging"]["sent"] == 0
