"""API keys for the platform's ingestion: stored as an HMAC of the secret, revocable."""

from __future__ import annotations

import uuid
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.api_key import ApiKey
from persistence.database import Database, Lookup
from persistence.tables import ApiKeyRow

api_key_t = ApiKeyRow.__table__


async def add_api_key(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    name: str,
    secret_hash: bytes,
    scopes: frozenset[str],
    created_by: uuid.UUID | None,
    now: datetime,
) -> ApiKey:
    key = ApiKey(uuid.uuid4(), agency_id, name, scopes, now)
    await conn.execute(
        insert(api_key_t).values(
            id=key.id,
            agency_id=agency_id,
            name=name,
            secret_hash=secret_hash,
            scopes=" ".join(sorted(scopes)),
            created_by=created_by,
            created_at=now,
        )
    )
    return key


API_KEY_COLUMNS = (
    api_key_t.c.id,
    api_key_t.c.agency_id,
    api_key_t.c.name,
    api_key_t.c.scopes,
    api_key_t.c.created_at,
)


def api_key_from(row: Any) -> ApiKey:
    return ApiKey(row.id, row.agency_id, row.name, frozenset(row.scopes.split()), row.created_at)


# Every ingestion request looks its key up: straight on asyncpg on PostgreSQL
# (persistence.database.Lookup).
_BY_SECRET = Lookup(
    select(*API_KEY_COLUMNS).where(
        api_key_t.c.secret_hash == bindparam("secret_hash"), api_key_t.c.revoked_at.is_(None)
    )
)


async def api_key_by_secret(database: Database, secret_hash: bytes) -> ApiKey | None:
    row = await database.lookup(_BY_SECRET, {"secret_hash": secret_hash})
    return None if row is None else api_key_from(SimpleNamespace(**row))


async def api_key_by_id(conn: AsyncConnection, key_id: uuid.UUID) -> ApiKey | None:
    """A live key by id (a revoked key is gone for every purpose)."""
    row = (
        await conn.execute(
            select(*API_KEY_COLUMNS).where(
                api_key_t.c.id == key_id, api_key_t.c.revoked_at.is_(None)
            )
        )
    ).first()
    return None if row is None else api_key_from(row)


async def revoke_api_key(
    conn: AsyncConnection, agency_id: uuid.UUID, key_id: uuid.UUID, now: datetime
) -> str | None:
    """The revoked key's name; None when the agency has no such live key."""
    name: str | None = await conn.scalar(
        update(api_key_t)
        .where(
            api_key_t.c.id == key_id,
            api_key_t.c.agency_id == agency_id,
            api_key_t.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .returning(api_key_t.c.name)
    )
    return name
