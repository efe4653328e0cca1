"""Keyset paging: stable pages over (created_at, id), however many rows are added meanwhile.

A cursor is an opaque token naming the last row of a page. A malformed cursor is refused
rather than read as "from the start", which would silently repeat rows.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement

from domain.errors import DomainError, ErrorCode
from domain.paging import Page

T = TypeVar("T")


K = TypeVar("K")


def encode_cursor(created_at: datetime, key: object) -> str:
    """A row's place: its time and its key (a UUID, or an integer id)."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{key}".encode()).decode()


def decode_cursor(cursor: str, key_type: Callable[[str], K] = uuid.UUID) -> tuple[datetime, K]:  # type: ignore[assignment]
    try:
        stamp, _, key = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(stamp), key_type(key)
    except (ValueError, binascii.Error, UnicodeError):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "That cursor is not valid.", ("after",)
        ) from None


def encode_id_cursor(label: str, row_id: int) -> str:
    """A row's place in a list ordered by an integer id alone (newest first: the audit log,
    webhook deliveries); `label` keeps one list's cursor out of another."""
    return base64.urlsafe_b64encode(f"{label}|{row_id}".encode()).decode()


def decode_id_cursor(label: str, cursor: str) -> int:
    try:
        found, _, number = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        if found != label:
            raise ValueError(cursor)
        return int(number)
    except (ValueError, binascii.Error, UnicodeError):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "That cursor is not valid.", ("after",)
        ) from None


async def keyset_page(
    conn: AsyncConnection,
    query: Select[Any],
    created_at: ColumnElement[Any],
    key: ColumnElement[Any],
    first: int,
    after: str | None,
    build: Callable[[Sequence[Any]], Awaitable[list[T]]],
) -> Page[T]:
    """Rows of `query` after the cursor in (created_at, key) order; `build` maps them."""
    if after is not None:
        stamp, last_key = decode_cursor(after)
        query = query.where(or_(created_at > stamp, and_(created_at == stamp, key > last_key)))
    rows = (await conn.execute(query.order_by(created_at, key).limit(first + 1))).all()
    page = rows[:first]
    return Page(
        items=await build(page),
        cursors=[encode_cursor(r.created_at, r.id) for r in page],
        has_next_page=len(rows) > first,
    )
