"""A page of a list: its items, one opaque cursor per item, and whether more follow.

What a cursor holds is the query's business (persistence/queries/paging.py); callers only
hand one back as `after`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    cursors: list[str]
    has_next_page: bool

    @property
    def end_cursor(self) -> str | None:
        return self.cursors[-1] if self.cursors else None
