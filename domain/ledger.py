"""Minute movements: every change to a balance is one of these, recorded in the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from domain.money import Tier


class LedgerKind(StrEnum):
    PLAN_GRANT = "PLAN_GRANT"
    TRANSFER_OUT = "TRANSFER_OUT"
    TRANSFER_IN = "TRANSFER_IN"
    USAGE = "USAGE"
    OVERAGE = "OVERAGE"
    PURCHASE = "PURCHASE"
    AUTO_ALLOCATION = "AUTO_ALLOCATION"
    REMOVAL_OUT = "REMOVAL_OUT"
    REMOVAL_IN = "REMOVAL_IN"
    MERGE_OUT = "MERGE_OUT"
    MERGE_IN = "MERGE_IN"


@dataclass(frozen=True)
class Movement:
    agency_id: UUID
    sub_account_id: UUID
    tier: Tier
    delta_seconds: int
    kind: LedgerKind
    reference: str


@dataclass(frozen=True)
class Balance:
    tier: Tier
    seconds: int
