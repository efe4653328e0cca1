"""Who is calling: one statement turns a bearer token into the viewer and their agency.

The viewer's own agency and its primary sub-account are on nearly every screen, so they come
back in the same round trip and prime the request's DataLoaders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.agency import Agency, SubAccount, User
from domain.policy import Role, Viewer
from persistence.database import Database, Lookup
from persistence.records import (
    AGENCY_COLUMNS,
    SUB_ACCOUNT_COLUMNS,
    USER_COLUMNS,
    agency_from,
    sub_account_from,
    sub_account_t,
    user_from,
    user_t,
)
from persistence.tables import AuthSessionRow, UserGrantRow
from persistence.types import UTCDateTime

session_t = AuthSessionRow.__table__
grant_t = UserGrantRow.__table__
primary_t = sub_account_t.alias("primary_sub_account")


@dataclass(frozen=True)
class SessionContext:
    viewer: Viewer
    user: User
    agency: Agency
    primary: SubAccount | None


# Runs on every signed-in request: straight on asyncpg on PostgreSQL (persistence.database.Lookup).
_SESSION_BY_TOKEN = Lookup(
    select(
        *(c.label(f"u_{c.name}") for c in USER_COLUMNS),
        *(c.label(f"a_{c.name}") for c in AGENCY_COLUMNS),
        *(primary_t.c[c.name].label(f"p_{c.name}") for c in SUB_ACCOUNT_COLUMNS),
    )
    .select_from(
        session_t.join(user_t, user_t.c.id == session_t.c.user_id)
        .join(AGENCY_COLUMNS[0].table, AGENCY_COLUMNS[0] == user_t.c.agency_id)
        .outerjoin(
            primary_t,
            and_(primary_t.c.agency_id == user_t.c.agency_id, primary_t.c.kind == "PRIMARY"),
        )
    )
    .where(
        session_t.c.token_hash == bindparam("token_hash"),
        session_t.c.revoked_at.is_(None),
        session_t.c.expires_at > bindparam("now", type_=UTCDateTime()),
    )
)


# Per prefix, the lookup's column names that have it, with the names without it: worked out
# from the first row (the statement's columns never change), not from every row's 50-odd
# names three times per request (2 % of the viewer's server CPU).
_NAMES: dict[str, tuple[tuple[str, str], ...]] = {}


def _prefixed(row: Mapping[str, Any], prefix: str) -> SimpleNamespace:
    names = _NAMES.get(prefix)
    if names is None:
        names = _NAMES[prefix] = tuple(
            (key, key[len(prefix) :]) for key in row if key.startswith(prefix)
        )
    return SimpleNamespace(**{short: row[key] for key, short in names})


async def load_session(
    database: Database, token_hash: bytes, now: datetime
) -> SessionContext | None:
    """The live session for this token hash; None when unknown, revoked or expired."""
    row = await database.lookup(_SESSION_BY_TOKEN, {"token_hash": token_hash, "now": now})
    if row is None:
        return None
    user = user_from(_prefixed(row, "u_"))
    agency = agency_from(_prefixed(row, "a_"))
    primary_fields = _prefixed(row, "p_")
    primary = sub_account_from(primary_fields) if primary_fields.id is not None else None
    granted: frozenset[UUID] = frozenset()
    if not user.all_sub_accounts and user.role not in (Role.AGENCY_OWNER, Role.AGENCY_ADMIN):
        async with database.read() as conn:
            granted = await granted_sub_accounts(conn, user.id)
    viewer = Viewer(
        user_id=user.id,
        agency_id=user.agency_id,
        role=user.role,
        all_sub_accounts=user.all_sub_accounts,
        sub_account_ids=granted,
    )
    return SessionContext(viewer=viewer, user=user, agency=agency, primary=primary)


async def granted_sub_accounts(conn: AsyncConnection, user_id: UUID) -> frozenset[UUID]:
    rows = await conn.scalars(select(grant_t.c.sub_account_id).where(grant_t.c.user_id == user_id))
    return frozenset(rows.all())
