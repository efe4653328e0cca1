"""Idempotency keys: the first answer to a request is kept with the effect it describes.

A retry with the same key and the same request gets that answer back and moves nothing; the
same key with a different request is refused. Keys are scoped per agency.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.errors import DomainError, ErrorCode
from persistence.tables import IdempotencyKeyRow

key_t = IdempotencyKeyRow.__table__


def request_hash(operation: str, request: dict[str, Any]) -> str:
    payload = orjson.dumps({"op": operation, **request}, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(payload).hexdigest()


async def recall(
    conn: AsyncConnection, scope: str, key: str, fingerprint: str
) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            select(key_t.c.request_hash, key_t.c.response).where(
                key_t.c.scope == scope, key_t.c.key == key
            )
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != fingerprint:
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "This idempotency key was used for a different request.",
            ("idempotencyKey",),
        )
    response: dict[str, Any] = orjson.loads(row.response)
    return response


async def remember(
    conn: AsyncConnection,
    scope: str,
    key: str,
    fingerprint: str,
    response: dict[str, Any],
    now: datetime,
) -> None:
    """Inserted in the effect's transaction; a concurrent twin fails on the primary key."""
    await conn.execute(
        insert(key_t).values(
            scope=scope,
            key=key,
            request_hash=fingerprint,
            response=orjson.dumps(response, default=str).decode(),
            created_at=now,
        )
    )
