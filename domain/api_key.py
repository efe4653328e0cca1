"""An API key of the platform's ingestion: named, scoped, shown once (only its HMAC is kept)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True)
class ApiKey:
    id: UUID
    agency_id: UUID
    name: str
    scopes: frozenset[str]
    created_at: datetime
