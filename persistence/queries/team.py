"""The Users tab: an agency's users and its invitations, page by page."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.agency import User
from domain.api_key import ApiKey
from domain.invitation import Invitation
from domain.paging import Page
from persistence.api_keys import API_KEY_COLUMNS, api_key_from, api_key_t
from persistence.queries.paging import keyset_page
from persistence.records import USER_COLUMNS, user_from, user_t
from persistence.team import INVITATION_COLUMNS, invitation_t, invitations_from_rows


async def users_page(
    conn: AsyncConnection, agency_id: uuid.UUID, first: int, after: str | None
) -> Page[User]:
    async def build(rows: Sequence[Any]) -> list[User]:
        return [user_from(r) for r in rows]

    query = select(*USER_COLUMNS, user_t.c.created_at).where(user_t.c.agency_id == agency_id)
    return await keyset_page(conn, query, user_t.c.created_at, user_t.c.id, first, after, build)


async def invitations_page(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    first: int,
    after: str | None,
    pending_only: bool,
    now: datetime,
) -> Page[Invitation]:
    async def build(rows: Sequence[Any]) -> list[Invitation]:
        return await invitations_from_rows(conn, list(rows))

    query = select(*INVITATION_COLUMNS).where(invitation_t.c.agency_id == agency_id)
    if pending_only:
        query = query.where(
            invitation_t.c.accepted_at.is_(None),
            invitation_t.c.revoked_at.is_(None),
            invitation_t.c.expires_at > now,
        )
    return await keyset_page(
        conn, query, invitation_t.c.created_at, invitation_t.c.id, first, after, build
    )


async def api_keys_page(
    conn: AsyncConnection, agency_id: uuid.UUID, first: int, after: str | None
) -> Page[ApiKey]:
    """Live keys only: a revoked key is history, not something to manage."""

    async def build(rows: Sequence[Any]) -> list[ApiKey]:
        return [api_key_from(r) for r in rows]

    t = api_key_t
    query = select(*API_KEY_COLUMNS).where(t.c.agency_id == agency_id, t.c.revoked_at.is_(None))
    return await keyset_page(conn, query, t.c.created_at, t.c.id, first, after, build)
