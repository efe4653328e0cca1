"""Relay connections: PageInfo and a builder turning a Page into edges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import strawberry
from strawberry.types.nodes import SelectedField, Selection

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


def selected_at(info: strawberry.Info[Any, Any], *path: str) -> set[str]:
    """The names of the fields asked for at `path` below the field being resolved
    (`selected_at(info, "edges", "node")`: what a connection's nodes are asked for), fragments
    and inline fragments included: a connection can load up front what its nodes will show."""
    level: list[Selection] = [c for f in info.selected_fields for c in f.selections]
    for name in path:
        level = [c for f in _fields(level) if f.name == name for c in f.selections]
    return {f.name for f in _fields(level)}


def _fields(selections: list[Selection]) -> list[SelectedField]:
    found: list[SelectedField] = []
    for selection in selections:
        if isinstance(selection, SelectedField):
            found.append(selection)
        else:  # a fragment spread or an inline fragment
            found.extend(_fields(selection.selections))
    return found
