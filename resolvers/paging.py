"""Page sizes: every list is paged, with a default and a maximum."""

from __future__ import annotations

from domain.errors import DomainError, ErrorCode

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE_SIZE
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"`first` must be between 1 and {MAX_PAGE_SIZE}.", ("first",)
        )
    return first
