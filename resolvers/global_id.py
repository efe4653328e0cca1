"""Relay global IDs: an opaque base64 of "TypeName:uuid"."""

from __future__ import annotations

import base64
import binascii
from uuid import UUID


def to_global_id(type_name: str, key: UUID) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{key}".encode()).decode().rstrip("=")


def from_global_id(global_id: str) -> tuple[str, UUID] | None:
    """(type name, key), or None for anything that is not one of our IDs."""
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        type_name, _, key = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        return type_name, UUID(key)
    except (ValueError, binascii.Error, UnicodeError):
        return None
