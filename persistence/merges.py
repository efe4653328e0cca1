"""Merge requests, and what approving one moves: activities, grants and the history owner.

Balances move through `persistence.ledger`, lines through `persistence.lines`, credits and
status through `persistence.agencies`; this module holds the statements merging alone needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.merge import MergeRequest, MergeStatus
from domain.paging import Page
from persistence.activities import activity_t
from persistence.queries.paging import keyset_page
from persistence.tables import (
    InvitationGrantRow,
    MergedAccountRow,
    MergeRequestRow,
    UserGrantRow,
)

merge_t = MergeRequestRow.__table__
merged_t = MergedAccountRow.__table__
user_grant_t = UserGrantRow.__table__
invitation_grant_t = InvitationGrantRow.__table__

MERGE_COLUMNS = (
    merge_t.c.id,
    merge_t.c.agency_id,
    merge_t.c.source_id,
    merge_t.c.target_id,
    merge_t.c.status,
    merge_t.c.note,
    merge_t.c.requested_by,
    merge_t.c.requested_by_email,
    merge_t.c.requested_at,
    merge_t.c.decided_by,
    merge_t.c.decided_by_email,
    merge_t.c.decided_at,
)


def merge_from(row: Any) -> MergeRequest:
    return MergeRequest(
        row.id,
        row.agency_id,
        row.source_id,
        row.target_id,
        MergeStatus(row.status),
        row.note,
        row.requested_by,
        row.requested_by_email,
        row.requested_at,
        row.decided_by,
        row.decided_by_email,
        row.decided_at,
    )


async def add_request(conn: AsyncConnection, merge: MergeRequest) -> None:
    """A second PENDING request for the source is refused by the partial unique index
    (`UniqueViolation`), whatever runs at once."""
    await conn.execute(
        insert(merge_t).values(
            id=merge.id,
            agency_id=merge.agency_id,
            source_id=merge.source_id,
            target_id=merge.target_id,
            status=merge.status.value,
            note=merge.note,
            requested_by=merge.requested_by,
            requested_by_email=merge.requested_by_email,
            requested_at=merge.requested_at,
        )
    )


async def pending_for_source(conn: AsyncConnection, source_id: uuid.UUID) -> bool:
    found = await conn.scalar(
        select(func.count())
        .select_from(merge_t)
        .where(merge_t.c.source_id == source_id, merge_t.c.status == MergeStatus.PENDING.value)
    )
    return bool(found)


async def request_by_id(
    conn: AsyncConnection, agency_id: uuid.UUID, request_id: uuid.UUID
) -> MergeRequest | None:
    """The agency's request (another agency's reads as absent)."""
    row = (
        await conn.execute(
            select(*MERGE_COLUMNS).where(
                merge_t.c.id == request_id, merge_t.c.agency_id == agency_id
            )
        )
    ).first()
    return None if row is None else merge_from(row)


async def decide(conn: AsyncConnection, decided: MergeRequest) -> bool:
    """Record the decision if the request is still PENDING; False when another decision got
    there first (the guard, beside the sub-account locks the deciders take)."""
    result = await conn.execute(
        update(merge_t)
        .where(merge_t.c.id == decided.id, merge_t.c.status == MergeStatus.PENDING.value)
        .values(
            status=decided.status.value,
            decided_by=decided.decided_by,
            decided_by_email=decided.decided_by_email,
            decided_at=decided.decided_at,
        )
    )
    return result.rowcount == 1


async def requests_page(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    status: MergeStatus | None,
    first: int,
    after: str | None,
) -> tuple[Page[MergeRequest], int]:
    """The agency's requests, oldest first, optionally of one status."""
    where = [merge_t.c.agency_id == agency_id]
    if status is not None:
        where.append(merge_t.c.status == status.value)

    async def build(rows: Sequence[Any]) -> list[MergeRequest]:
        return [merge_from(r) for r in rows]

    page = await keyset_page(
        conn,
        select(*MERGE_COLUMNS, merge_t.c.requested_at.label("created_at")).where(*where),
        merge_t.c.requested_at,
        merge_t.c.id,
        first,
        after,
        build,
    )
    total = await conn.scalar(select(func.count()).select_from(merge_t).where(*where))
    return page, int(total or 0)


async def move_activities(conn: AsyncConnection, source_id: uuid.UUID, target_id: uuid.UUID) -> int:
    """Campaigns, inbound agents and automations change owner, keeping their statuses."""
    result = await conn.execute(
        update(activity_t)
        .where(activity_t.c.sub_account_id == source_id)
        .values(sub_account_id=target_id)
    )
    return result.rowcount


async def move_grants(
    conn: AsyncConnection, source_id: uuid.UUID, target_id: uuid.UUID
) -> list[uuid.UUID]:
    """Users (and pending invitations) granted the source are granted the target instead.
    Returns the users whose access changed."""
    users = list(
        (
            await conn.execute(
                select(user_grant_t.c.user_id)
                .where(user_grant_t.c.sub_account_id == source_id)
                .order_by(user_grant_t.c.user_id)
            )
        ).scalars()
    )
    await _regrant(conn, user_grant_t, "user_id", source_id, target_id)
    await _regrant(conn, invitation_grant_t, "invitation_id", source_id, target_id)
    return users


async def _regrant(
    conn: AsyncConnection, table: Any, holder: str, source_id: uuid.UUID, target_id: uuid.UUID
) -> None:
    already = select(table.c[holder]).where(table.c.sub_account_id == target_id)
    await conn.execute(
        insert(table).from_select(
            [holder, "sub_account_id"],
            select(table.c[holder], literal(target_id, table.c.sub_account_id.type)).where(
                table.c.sub_account_id == source_id, table.c[holder].not_in(already)
            ),
        )
    )
    await conn.execute(delete(table).where(table.c.sub_account_id == source_id))


async def roll_history(
    conn: AsyncConnection, source_id: uuid.UUID, target_id: uuid.UUID, now: datetime
) -> None:
    """The source's history (and what had merged into it) now rolls up into the target."""
    await conn.execute(
        update(merged_t).where(merged_t.c.owner_id == source_id).values(owner_id=target_id)
    )
    await conn.execute(
        insert(merged_t).values(
            sub_account_id=source_id, merged_into_id=target_id, owner_id=target_id, merged_at=now
        )
    )


def members_of(sub_account_id: uuid.UUID) -> Any:
    """The accounts whose history is this account's: the merged ones it owns (a select of
    ids; the account itself is added by the caller's condition)."""
    return select(merged_t.c.sub_account_id).where(merged_t.c.owner_id == sub_account_id)


async def owned_accounts(conn: AsyncConnection, sub_account_id: uuid.UUID) -> list[uuid.UUID]:
    """The merged accounts whose history is this account's (`members_of`, fetched)."""
    return list((await conn.scalars(members_of(sub_account_id))).all())


async def merged_into(
    conn: AsyncConnection, sub_account_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID | None]:
    """A DataLoader batch: the account each one merged into (None: not merged)."""
    rows = await conn.execute(
        select(merged_t.c.sub_account_id, merged_t.c.merged_into_id).where(
            merged_t.c.sub_account_id.in_(sub_account_ids)
        )
    )
    found = {row.sub_account_id: row.merged_into_id for row in rows}
    return [found.get(key) for key in sub_account_ids]
