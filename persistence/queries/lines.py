"""The Available pool's lines and a sub-account's lines, page by page (oldest first)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.lines import PhoneLine
from domain.paging import Page
from persistence.lines import LINE_COLUMNS, line_from, line_t
from persistence.queries.paging import keyset_page


async def lines_page(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    sub_account_id: uuid.UUID | None,
    first: int,
    after: str | None,
) -> tuple[Page[PhoneLine], int]:
    """Unreleased lines held by `sub_account_id`, or in the pool when it is None."""

    async def build(rows: Sequence[Any]) -> list[PhoneLine]:
        return [line_from(r) for r in rows]

    holder = (
        line_t.c.sub_account_id.is_(None)
        if sub_account_id is None
        else line_t.c.sub_account_id == sub_account_id
    )
    where = (line_t.c.agency_id == agency_id, holder, line_t.c.released_at.is_(None))
    page = await keyset_page(
        conn,
        select(*LINE_COLUMNS).where(*where),
        line_t.c.created_at,
        line_t.c.id,
        first,
        after,
        build,
    )
    total = await conn.scalar(select(func.count()).select_from(line_t).where(*where))
    return page, int(total or 0)
