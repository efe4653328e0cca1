"""Messages, conversations and their rollup: the statements of one `recordMessages` batch and
the reads behind `SubAccount.messaging`.

A batch: the messages inserted (new ones returned), its new conversations inserted, the others
locked and read, changed ones written back, the rollup changes added; each in key order, so two
batches touching the same rows queue instead of deadlocking. Nothing here takes a lock that
calls, transfers or removals take (docs/ARCHITECTURE.md, lock order).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.messaging import (
    Conversation,
    ConversationKey,
    MessageDirection,
    MessagingFigures,
    MessagingLine,
    ReportedMessage,
    RollupKey,
)
from persistence.arrays import insert_unnested
from persistence.database import dialect_insert
from persistence.merges import members_of
from persistence.tables import (
    ConversationRow,
    MessageRow,
    MessagingLimitRow,
    MessagingQuarterRow,
)

message_t = MessageRow.__table__
conversation_t = ConversationRow.__table__
messaging_quarter_t = MessagingQuarterRow.__table__
messaging_limit_t = MessagingLimitRow.__table__
COUNTED = ("sent", "received", "new_outbound", "new_inbound", "responded")


# PostgreSQL: one array per column through unnest(), a statement prepared once (a multi-row
# VALUES of a thousand messages is compiled afresh for every batch: persistence/arrays.py).
_INSERT_MESSAGES_PG = insert_unnested(
    message_t,
    [
        message_t.c[n]
        for n in ("external_id", "sub_account_id", "conversation_id", "direction", "sent_at")
    ],
    constants=(message_t.c.agency_id, message_t.c.recorded_at),
    tail="ON CONFLICT (agency_id, external_id) DO NOTHING RETURNING external_id",
)
_CONVERSATION_ARRAYS = [
    conversation_t.c[n]
    for n in (
        "sub_account_id",
        "external_id",
        "opened_at",
        "opened_by",
        "opened_direction",
        "latest_inbound_at",
    )
]
_INSERT_CONVERSATIONS_PG = insert_unnested(
    conversation_t,
    _CONVERSATION_ARRAYS,
    constants=(conversation_t.c.agency_id,),
    tail="ON CONFLICT (sub_account_id, external_id) DO NOTHING "
    "RETURNING sub_account_id, external_id",
)
_ROLLUP_ARRAYS = [messaging_quarter_t.c[n] for n in ("sub_account_id", "quarter_utc", *COUNTED)]
_ADD_TO_ROLLUPS_PG = insert_unnested(
    messaging_quarter_t,
    _ROLLUP_ARRAYS,
    constants=(messaging_quarter_t.c.agency_id,),
    tail="ON CONFLICT (sub_account_id, quarter_utc) DO UPDATE SET "
    + ", ".join(f"{c} = messaging_quarter_hour.{c} + excluded.{c}" for c in COUNTED),
)


async def insert_new_messages(
    conn: AsyncConnection, agency_id: uuid.UUID, messages: list[ReportedMessage], now: datetime
) -> set[str]:
    """The external ids that were new (the rest were duplicates); in external-id order, as
    calls are, so twins sent in different orders never hold what the other waits for."""
    if not messages:
        return set()
    if conn.dialect.name == "postgresql":
        ordered = sorted(messages, key=lambda m: m.external_id)
        result = await conn.execute(
            _INSERT_MESSAGES_PG,
            {
                "agency_id": agency_id,
                "recorded_at": now,
                "external_id": [m.external_id for m in ordered],
                "sub_account_id": [m.sub_account_id for m in ordered],
                "conversation_id": [m.conversation_id for m in ordered],
                "direction": [m.direction.value for m in ordered],
                "sent_at": [m.sent_at for m in ordered],
            },
        )
        return set(result.scalars().all())
    rows = [
        {
            "agency_id": agency_id,
            "external_id": m.external_id,
            "sub_account_id": m.sub_account_id,
            "conversation_id": m.conversation_id,
            "direction": m.direction.value,
            "sent_at": m.sent_at,
            "recorded_at": now,
        }
        for m in sorted(messages, key=lambda m: m.external_id)
    ]
    statement = (
        dialect_insert(conn, message_t)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["agency_id", "external_id"])
        .returning(message_t.c.external_id)
    )
    return set((await conn.scalars(statement)).all())


def _conversation_from(row: Any) -> Conversation:
    return Conversation(
        row.sub_account_id,
        row.external_id,
        row.opened_at,
        row.opened_by,
        MessageDirection(row.opened_direction),
        row.latest_inbound_at,
    )


def _conversation_row(agency_id: uuid.UUID, c: Conversation) -> dict[str, Any]:
    return {
        "sub_account_id": c.sub_account_id,
        "external_id": c.external_id,
        "agency_id": agency_id,
        "opened_at": c.opened_at,
        "opened_by": c.opened_by,
        "opened_direction": c.opened_direction.value,
        "latest_inbound_at": c.latest_inbound_at,
    }


async def insert_new_conversations(
    conn: AsyncConnection, agency_id: uuid.UUID, conversations: Iterable[Conversation]
) -> set[ConversationKey]:
    """Inserts those not stored yet; returns their keys. One that another batch is inserting
    waits for it, and is then found stored."""
    rows = [_conversation_row(agency_id, c) for c in sorted(conversations, key=lambda c: c.key)]
    if not rows:
        return set()
    if conn.dialect.name == "postgresql":
        arrays = {c.name: [r[c.name] for r in rows] for c in _CONVERSATION_ARRAYS}
        result = await conn.execute(_INSERT_CONVERSATIONS_PG, {"agency_id": agency_id, **arrays})
        return {(r.sub_account_id, r.external_id) for r in result}
    statement = (
        dialect_insert(conn, conversation_t)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["sub_account_id", "external_id"])
        .returning(conversation_t.c.sub_account_id, conversation_t.c.external_id)
    )
    return {(r.sub_account_id, r.external_id) for r in await conn.execute(statement)}


async def conversations_for_update(
    conn: AsyncConnection, keys: Iterable[ConversationKey]
) -> dict[ConversationKey, Conversation]:
    wanted = sorted(keys)
    if not wanted:
        return {}
    rows = await conn.execute(
        select(conversation_t)
        .where(tuple_(conversation_t.c.sub_account_id, conversation_t.c.external_id).in_(wanted))
        .order_by(conversation_t.c.sub_account_id, conversation_t.c.external_id)
        .with_for_update()
    )
    return {(r.sub_account_id, r.external_id): _conversation_from(r) for r in rows}


_SAVE_CONVERSATION = (
    update(conversation_t)
    .where(
        conversation_t.c.sub_account_id == bindparam("key_sub_account_id"),
        conversation_t.c.external_id == bindparam("key_external_id"),
    )
    .values(
        opened_at=bindparam("opened_at"),
        opened_by=bindparam("opened_by"),
        opened_direction=bindparam("opened_direction"),
        latest_inbound_at=bindparam("latest_inbound_at"),
    )
)


async def save_conversations(conn: AsyncConnection, changed: Iterable[Conversation]) -> None:
    rows = [
        {
            "key_sub_account_id": c.sub_account_id,
            "key_external_id": c.external_id,
            "opened_at": c.opened_at,
            "opened_by": c.opened_by,
            "opened_direction": c.opened_direction.value,
            "latest_inbound_at": c.latest_inbound_at,
        }
        for c in sorted(changed, key=lambda c: c.key)
    ]
    if rows:
        await conn.execute(_SAVE_CONVERSATION, rows)


async def add_to_rollups(
    conn: AsyncConnection, agency_id: uuid.UUID, lines: dict[RollupKey, MessagingLine]
) -> None:
    """Adds each line to its (sub-account, quarter) row, creating it at zero first."""
    if not lines:
        return
    rows = [
        {
            "sub_account_id": account,
            "quarter_utc": quarter,
            "agency_id": agency_id,
            **{c: getattr(line, c) for c in COUNTED},
        }
        for (account, quarter), line in sorted(lines.items())
    ]
    if conn.dialect.name == "postgresql":
        arrays = {c.name: [r[c.name] for r in rows] for c in _ROLLUP_ARRAYS}
        await conn.execute(_ADD_TO_ROLLUPS_PG, {"agency_id": agency_id, **arrays})
        return
    statement = dialect_insert(conn, messaging_quarter_t).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=["sub_account_id", "quarter_utc"],
        set_={c: messaging_quarter_t.c[c] + statement.excluded[c] for c in COUNTED},
    )
    await conn.execute(statement)


async def figures(
    conn: AsyncConnection, sub_account_id: uuid.UUID, start: datetime, end: datetime
) -> MessagingFigures:
    """The sums of [start, end) from the rollup (one index range of its primary key)."""
    row = (
        await conn.execute(
            select(
                *(func.coalesce(func.sum(messaging_quarter_t.c[c]), 0).label(c) for c in COUNTED)
            ).where(
                # the account's own rows and those of the accounts merged into it
                or_(
                    messaging_quarter_t.c.sub_account_id == sub_account_id,
                    messaging_quarter_t.c.sub_account_id.in_(members_of(sub_account_id)),
                ),
                messaging_quarter_t.c.quarter_utc >= start,
                messaging_quarter_t.c.quarter_utc < end,
            )
        )
    ).one()
    return MessagingFigures(**{c: int(row._mapping[c]) for c in COUNTED})


async def monthly_limits(
    conn: AsyncConnection, sub_account_ids: Sequence[uuid.UUID]
) -> list[int | None]:
    """A DataLoader batch: each sub-account's monthly limit (None: no limit)."""
    rows = await conn.execute(
        select(messaging_limit_t).where(messaging_limit_t.c.sub_account_id.in_(sub_account_ids))
    )
    found = {r.sub_account_id: r.monthly_limit for r in rows}
    return [found.get(i) for i in sub_account_ids]


async def set_monthly_limit(
    conn: AsyncConnection, sub_account_id: uuid.UUID, limit: int | None
) -> None:
    await conn.execute(
        messaging_limit_t.delete().where(messaging_limit_t.c.sub_account_id == sub_account_id)
    )
    if limit is not None:
        await conn.execute(
            messaging_limit_t.insert().values(sub_account_id=sub_account_id, monthly_limit=limit)
        )
