"""Page sizes: every list is paged, with a default and a maximum."""

from __future__ import annotations

from domain.errors import DomainError, ErrorCode

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# The Account Manager shows an agency's whole client list on one screen.
MAX_SUB_ACCOUNT_PAGE_SIZE = 500


def page_size(first: int | None, maximum: int = MAX_PAGE_SIZE) -> int:
    if first is None:
        return DEFAULT_PAGE_SIZE
    if not 1 <= first <= maximum:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"`first` must be between 1 and {maximum}.", ("first",)
        )
    return first
