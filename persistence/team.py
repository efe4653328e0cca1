"""Invitations, grants, role changes, removals and the owner swap."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.agency import User
from domain.invitation import Access, Invitation
from domain.policy import Role
from persistence.records import LIVE_STATUSES, USER_COLUMNS, sub_account_t, user_from, user_t
from persistence.tables import (
    InvitationGrantRow,
    InvitationRow,
    InvitationSecretRow,
    UserGrantRow,
)

invitation_t = InvitationRow.__table__
invitation_grant_t = InvitationGrantRow.__table__
secret_t = InvitationSecretRow.__table__
user_grant_t = UserGrantRow.__table__


async def sub_accounts_in_agency(
    conn: AsyncConnection, agency_id: uuid.UUID, ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of `ids` are live sub-accounts of this agency (foreign ones look absent)."""
    wanted = list(ids)
    if not wanted:
        return set()
    rows = await conn.scalars(
        select(sub_account_t.c.id).where(
            sub_account_t.c.id.in_(wanted),
            sub_account_t.c.agency_id == agency_id,
            sub_account_t.c.status.in_(LIVE_STATUSES),
        )
    )
    return set(rows.all())


async def pending_invitation_exists(conn: AsyncConnection, email: str, now: datetime) -> bool:
    return bool(
        await conn.scalar(
            select(
                exists().where(
                    invitation_t.c.email == email,
                    invitation_t.c.accepted_at.is_(None),
                    invitation_t.c.revoked_at.is_(None),
                    invitation_t.c.expires_at > now,
                )
            )
        )
    )


def _invitation_from(row: Any, grants: Iterable[uuid.UUID]) -> Invitation:
    return Invitation(
        id=row.id,
        agency_id=row.agency_id,
        email=row.email,
        role=Role(row.role),
        all_sub_accounts=row.all_sub_accounts,
        sub_account_ids=frozenset(grants),
        created_at=row.created_at,
        expires_at=row.expires_at,
        accepted_at=row.accepted_at,
        revoked_at=row.revoked_at,
    )


INVITATION_COLUMNS = (
    invitation_t.c.id,
    invitation_t.c.agency_id,
    invitation_t.c.email,
    invitation_t.c.role,
    invitation_t.c.all_sub_accounts,
    invitation_t.c.created_at,
    invitation_t.c.expires_at,
    invitation_t.c.accepted_at,
    invitation_t.c.revoked_at,
)


async def invitation_grants(
    conn: AsyncConnection, invitation_ids: list[uuid.UUID]
) -> dict[uuid.UUID, set[uuid.UUID]]:
    found: dict[uuid.UUID, set[uuid.UUID]] = {i: set() for i in invitation_ids}
    if invitation_ids:
        rows = await conn.execute(
            select(invitation_grant_t.c.invitation_id, invitation_grant_t.c.sub_account_id).where(
                invitation_grant_t.c.invitation_id.in_(invitation_ids)
            )
        )
        for invitation_id, sub_account_id in rows:
            found[invitation_id].add(sub_account_id)
    return found


async def invitations_from_rows(conn: AsyncConnection, rows: list[Any]) -> list[Invitation]:
    grants = await invitation_grants(conn, [r.id for r in rows])
    return [_invitation_from(r, grants[r.id]) for r in rows]


async def add_invitation(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    email: str,
    access: Access,
    invited_by: uuid.UUID,
    secret_hash: bytes,
    now: datetime,
    expires_at: datetime,
) -> Invitation:
    invitation_id = uuid.uuid4()
    await conn.execute(
        insert(invitation_t).values(
            id=invitation_id,
            agency_id=agency_id,
            email=email,
            role=access.role.value,
            all_sub_accounts=access.all_sub_accounts,
            invited_by=invited_by,
            created_at=now,
            expires_at=expires_at,
        )
    )
    if access.sub_account_ids:
        await conn.execute(
            insert(invitation_grant_t),
            [{"invitation_id": invitation_id, "sub_account_id": s} for s in access.sub_account_ids],
        )
    await conn.execute(
        insert(secret_t).values(
            secret_hash=secret_hash, invitation_id=invitation_id, created_at=now
        )
    )
    return Invitation(
        id=invitation_id,
        agency_id=agency_id,
        email=email,
        role=access.role,
        all_sub_accounts=access.all_sub_accounts,
        sub_account_ids=access.sub_account_ids,
        created_at=now,
        expires_at=expires_at,
        accepted_at=None,
        revoked_at=None,
    )


async def invitation_by_id(
    conn: AsyncConnection, invitation_id: uuid.UUID, *, lock: bool = False
) -> Invitation | None:
    query = select(*INVITATION_COLUMNS).where(invitation_t.c.id == invitation_id)
    if lock:  # its id never changes: the new link's foreign-key check need not wait
        query = query.with_for_update(key_share=True)
    row = (await conn.execute(query)).first()
    return None if row is None else (await invitations_from_rows(conn, [row]))[0]


async def invitation_by_secret(
    conn: AsyncConnection, secret_hash: bytes
) -> tuple[Invitation, bool] | None:
    """The invitation a link belongs to, and whether that link was superseded by a resend."""
    row = (
        await conn.execute(
            select(*INVITATION_COLUMNS, secret_t.c.superseded_at)
            .select_from(secret_t.join(invitation_t, invitation_t.c.id == secret_t.c.invitation_id))
            .where(secret_t.c.secret_hash == secret_hash)
        )
    ).first()
    if row is None:
        return None
    [invitation] = await invitations_from_rows(conn, [row])
    return invitation, row.superseded_at is not None


async def renew_invitation(
    conn: AsyncConnection,
    invitation_id: uuid.UUID,
    secret_hash: bytes,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Resend: every older link dies, the new one lives for a fresh validity period."""
    await conn.execute(
        update(secret_t)
        .where(secret_t.c.invitation_id == invitation_id, secret_t.c.superseded_at.is_(None))
        .values(superseded_at=now)
    )
    await conn.execute(
        insert(secret_t).values(
            secret_hash=secret_hash, invitation_id=invitation_id, created_at=now
        )
    )
    await conn.execute(
        update(invitation_t).where(invitation_t.c.id == invitation_id).values(expires_at=expires_at)
    )


async def close_invitation(
    conn: AsyncConnection, invitation_id: uuid.UUID, now: datetime, *, accepted: bool
) -> bool:
    """Mark accepted or revoked; false when it was no longer open (a race lost)."""
    values = {"accepted_at": now} if accepted else {"revoked_at": now}
    result = await conn.execute(
        update(invitation_t)
        .where(
            invitation_t.c.id == invitation_id,
            invitation_t.c.accepted_at.is_(None),
            invitation_t.c.revoked_at.is_(None),
        )
        .values(**values)
    )
    return result.rowcount == 1


async def set_grants(
    conn: AsyncConnection, user_id: uuid.UUID, sub_account_ids: Iterable[uuid.UUID]
) -> None:
    await conn.execute(delete(user_grant_t).where(user_grant_t.c.user_id == user_id))
    rows = [{"user_id": user_id, "sub_account_id": s} for s in sub_account_ids]
    if rows:
        await conn.execute(insert(user_grant_t), rows)


async def user_in_agency(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    lock: bool = False,
    to_delete: bool = False,
) -> User | None:
    """`lock`: FOR NO KEY UPDATE, which lets a sign-in's session insert (a foreign-key check)
    go on; `to_delete`: FOR UPDATE, the lock the DELETE will need anyway, taken up front."""
    query = select(*USER_COLUMNS).where(user_t.c.id == user_id, user_t.c.agency_id == agency_id)
    if lock or to_delete:
        query = query.with_for_update(key_share=not to_delete)
    row = (await conn.execute(query)).first()
    return None if row is None else user_from(row)


async def set_access(conn: AsyncConnection, user_id: uuid.UUID, access: Access) -> None:
    await conn.execute(
        update(user_t)
        .where(user_t.c.id == user_id)
        .values(role=access.role.value, all_sub_accounts=access.all_sub_accounts)
    )
    await set_grants(conn, user_id, access.sub_account_ids)


async def delete_user(conn: AsyncConnection, user_id: uuid.UUID) -> None:
    """Removal frees the email; sessions and grants go with the user (ON DELETE CASCADE)."""
    await conn.execute(delete(user_t).where(user_t.c.id == user_id))


async def swap_owner(
    conn: AsyncConnection, agency_id: uuid.UUID, old_owner: uuid.UUID, new_owner: uuid.UUID
) -> None:
    # Demote first: the one-owner index is checked statement by statement.
    await conn.execute(
        update(user_t)
        .where(user_t.c.id == old_owner, user_t.c.agency_id == agency_id)
        .values(role=Role.AGENCY_ADMIN.value, all_sub_accounts=True)
    )
    await conn.execute(
        update(user_t)
        .where(user_t.c.id == new_owner, user_t.c.agency_id == agency_id)
        .values(role=Role.AGENCY_OWNER.value, all_sub_accounts=True)
    )


async def user_grants(conn: AsyncConnection, user_ids: list[uuid.UUID]) -> list[list[uuid.UUID]]:
    rows = await conn.execute(
        select(user_grant_t.c.user_id, user_grant_t.c.sub_account_id).where(
            user_grant_t.c.user_id.in_(user_ids)
        )
    )
    found: dict[uuid.UUID, list[uuid.UUID]] = {}
    for user_id, sub_account_id in rows:
        found.setdefault(user_id, []).append(sub_account_id)
    return [sorted(found.get(u, [])) for u in user_ids]
