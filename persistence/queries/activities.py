"""A sub-account's campaigns, inbound agents or automations, page by page."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.activity import Activity
from domain.paging import Page
from domain.sub_account import ActivityKind
from persistence.activities import ACTIVITY_COLUMNS, activity_from, activity_t
from persistence.queries.paging import keyset_page


async def activities_page(
    conn: AsyncConnection,
    sub_account_id: uuid.UUID,
    kind: ActivityKind,
    first: int,
    after: str | None,
) -> tuple[Page[Activity], int]:
    async def build(rows: Sequence[Any]) -> list[Activity]:
        return [activity_from(r) for r in rows]

    where = (activity_t.c.sub_account_id == sub_account_id, activity_t.c.kind == kind.value)
    page = await keyset_page(
        conn,
        select(*ACTIVITY_COLUMNS).where(*where),
        activity_t.c.created_at,
        activity_t.c.id,
        first,
        after,
        build,
    )
    total = await conn.scalar(select(func.count()).select_from(activity_t).where(*where))
    return page, int(total or 0)
