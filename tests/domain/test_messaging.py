"""Conversations and their rollup: whatever order and batches messages arrive in, the rollup
holds exactly what the messages, taken in time order, make."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.messaging import (
    Conversation,
    MessageDirection,
    ReportedMessage,
    conversations_after,
    rollup_changes,
)
from domain.usage import quarter_of

ACCOUNTS = [uuid.UUID(int=1), uuid.UUID(int=2)]
START = datetime(2026, 11, 1, tzinfo=UTC)
IN, OUT = MessageDirection.INBOUND, MessageDirection.OUTBOUND

messages_strategy = st.lists(
    st.tuples(
        st.integers(0, 1),  # sub-account
        st.integers(0, 4),  # conversation
        st.sampled_from([IN, OUT]),
        st.integers(0, 4 * 3600),  # seconds after START: a few quarters, ties included
    ),
    min_size=1,
    max_size=40,
)


def from_scratch(messages: list[ReportedMessage]) -> dict:
    """The rollup computed directly: each conversation opened by its earliest message (time,
    then external id), responded when opened outbound and an inbound message came later."""
    rows: dict = defaultdict(lambda: [0, 0, 0, 0, 0])
    threads: dict = defaultdict(list)
    for m in messages:
        rows[m.sub_account_id, quarter_of(m.sent_at)][0 if m.direction is OUT else 1] += 1
        threads[m.sub_account_id, m.conversation_id].append(m)
    for thread in threads.values():
        first = min(thread, key=lambda m: (m.sent_at, m.external_id))
        row = rows[first.sub_account_id, quarter_of(first.sent_at)]
        row[2 if first.direction is OUT else 3] += 1
        row[4] += first.direction is OUT and any(
            m.direction is IN and m.sent_at > first.sent_at for m in thread
        )
    return {k: v for k, v in rows.items() if any(v)}


@given(messages_strategy, st.randoms(use_true_random=False), st.integers(1, 6))
def test_rollups_equal_the_messages_in_time_order_whatever_the_arrival(raw, rng, batches):
    messages = [
        ReportedMessage(f"m{i}", ACCOUNTS[a], f"c{c}", direction, START + timedelta(seconds=offset))
        for i, (a, c, direction, offset) in enumerate(raw)
    ]
    arrival = list(messages)
    rng.shuffle(arrival)
    cuts = sorted(rng.sample(range(1, len(arrival)), min(batches - 1, len(arrival) - 1)))
    stored: dict = {}
    rollup: dict = defaultdict(lambda: [0, 0, 0, 0, 0])
    for lo, hi in zip([0, *cuts], [*cuts, len(arrival)], strict=True):
        batch = arrival[lo:hi]
        before = {k: v for k, v in stored.items()}
        after = conversations_after(batch, before)
        for key, line in rollup_changes(batch, before, after).items():
            row = rollup[key]
            for n, value in enumerate(
                (line.sent, line.received, line.new_outbound, line.new_inbound, line.responded)
            ):
                row[n] += value
        stored.update(after)
    assert {k: v for k, v in rollup.items() if any(v)} == from_scratch(messages)
    assert all(isinstance(c, Conversation) for c in stored.values())


def test_a_reply_in_a_later_batch_makes_the_conversation_responded():
    opening = ReportedMessage("a", ACCOUNTS[0], "c", OUT, START)
    reply = ReportedMessage("b", ACCOUNTS[0], "c", IN, START + timedelta(hours=30))
    first = conversations_after([opening], {})
    second = conversations_after([reply], first)
    changes = rollup_changes([reply], first, second)
    quarter_opened = (ACCOUNTS[0], START)
    assert changes[quarter_opened].responded == 1  # counted where it opened, a day earlier
    assert changes[ACCOUNTS[0], quarter_of(reply.sent_at)].received == 1


def test_an_earlier_inbound_message_arriving_late_turns_the_conversation_inbound():
    outbound = ReportedMessage("a", ACCOUNTS[0], "c", OUT, START + timedelta(hours=1))
    reply = ReportedMessage("b", ACCOUNTS[0], "c", IN, START + timedelta(hours=2))
    stored = conversations_after([outbound, reply], {})
    assert next(iter(stored.values())).responded
    earlier = ReportedMessage("z", ACCOUNTS[0], "c", IN, START)
    after = conversations_after([earlier], stored)
    changes = rollup_changes([earlier], stored, after)
    moved_from = changes[ACCOUNTS[0], START + timedelta(hours=1)]
    assert (moved_from.new_outbound, moved_from.responded) == (-1, -1)
    moved_to = changes[ACCOUNTS[0], START]
    assert (moved_to.new_inbound, moved_to.received) == (1, 1)
