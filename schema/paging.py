"""Relay connections: PageInfo and a builder turning a Page into edges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import strawberry

from domain.paging import Page

T = TypeVar("T")


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


def page_info(page: Page[Any]) -> PageInfo:
    return PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor)


def edges(page: Page[Any], edge: Callable[..., T], node: Callable[[Any], Any]) -> list[T]:
    pairs = zip(page.items, page.cursors, strict=True)
    return [edge(node=node(item), cursor=cursor) for item, cursor in pairs]
