"""A campaign, inbound agent or automation that a sub-account runs (suspension pauses them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from domain.sub_account import ActivityKind, ActivityStatus


@dataclass(frozen=True)
class Activity:
    id: UUID
    agency_id: UUID
    sub_account_id: UUID
    kind: ActivityKind
    name: str
    status: ActivityStatus
    created_at: datetime
