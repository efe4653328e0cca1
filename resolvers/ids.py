"""Turning argument IDs into keys. A malformed or foreign ID reads exactly like a missing one."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from domain.errors import DomainError, ErrorCode
from resolvers.global_id import from_global_id


def not_found(field: str, what: str = "object") -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, f"No such {what}.", (field,))


def decode(global_id: str, type_name: str, field: str) -> UUID:
    decoded = from_global_id(global_id)
    if decoded is None or decoded[0] != type_name:
        raise not_found(field, type_name)
    return decoded[1]


def decode_many(global_ids: Iterable[str] | None, type_name: str, field: str) -> list[UUID]:
    return [decode(g, type_name, field) for g in global_ids or ()]
