"""Users and their sign-in sessions (only token hashes are stored)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.agency import User
from domain.policy import Role
from persistence.records import USER_COLUMNS, user_from, user_t
from persistence.tables import AuthSessionRow

session_t = AuthSessionRow.__table__


async def add_user(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    email: str,
    password_hash: str,
    role: Role,
    now: datetime,
    all_sub_accounts: bool = False,
) -> User:
    user = User(
        id=uuid.uuid4(),
        agency_id=agency_id,
        email=email,
        role=role,
        all_sub_accounts=all_sub_accounts,
    )
    await conn.execute(
        insert(user_t).values(
            id=user.id,
            agency_id=agency_id,
            email=email,
            password_hash=password_hash,
            role=role.value,
            all_sub_accounts=all_sub_accounts,
            created_at=now,
        )
    )
    return user


async def user_with_password(conn: AsyncConnection, email: str) -> tuple[User, str] | None:
    row = (
        await conn.execute(
            select(*USER_COLUMNS, user_t.c.password_hash).where(user_t.c.email == email)
        )
    ).first()
    return None if row is None else (user_from(row), row.password_hash)


async def set_password_hash(conn: AsyncConnection, user_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute(
        update(user_t).where(user_t.c.id == user_id).values(password_hash=password_hash)
    )


async def add_session(
    conn: AsyncConnection,
    user_id: uuid.UUID,
    token_hash: bytes,
    now: datetime,
    expires_at: datetime,
) -> None:
    await conn.execute(
        insert(session_t).values(
            id=uuid.uuid4(),
            token_hash=token_hash,
            user_id=user_id,
            created_at=now,
            expires_at=expires_at,
        )
    )


async def revoke_session(conn: AsyncConnection, token_hash: bytes, now: datetime) -> bool:
    result = await conn.execute(
        update(session_t)
        .where(session_t.c.token_hash == token_hash, session_t.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount == 1
