"""Moving minutes between two sub-accounts of one agency: the value moves, not the count."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from uuid import UUID

from domain.agency import SubAccount
from domain.audit import AuditKind, AuditNote, Subject, minutes_text, tier_minutes_text
from domain.errors import DomainError, ErrorCode
from domain.ledger import LedgerKind, Movement
from domain.money import Tier
from domain.pricing import PriceBook, client_price_per_minute, convert_seconds
from domain.sub_account import check_changeable


@dataclass(frozen=True)
class TransferPlan:
    tier: Tier
    sent_seconds: int
    received_seconds: int
    base_micros_per_minute: int
    from_markup_bp: int
    to_markup_bp: int

    @property
    def from_price(self) -> Fraction:
        return client_price_per_minute(self.base_micros_per_minute, self.from_markup_bp)

    @property
    def to_price(self) -> Fraction:
        return client_price_per_minute(self.base_micros_per_minute, self.to_markup_bp)

    def movements(
        self,
        agency_id: UUID,
        from_id: UUID,
        to_id: UUID,
        reference: str,
        kinds: tuple[LedgerKind, LedgerKind] = (LedgerKind.TRANSFER_OUT, LedgerKind.TRANSFER_IN),
    ) -> list[Movement]:
        out_kind, in_kind = kinds
        moves = [Movement(agency_id, from_id, self.tier, -self.sent_seconds, out_kind, reference)]
        if self.received_seconds:
            moves.append(
                Movement(agency_id, to_id, self.tier, self.received_seconds, in_kind, reference)
            )
        return moves


def plan_conversion(
    source: SubAccount, destination: SubAccount, tier: Tier, sent_seconds: int, prices: PriceBook
) -> TransferPlan:
    """The figures alone (previews, removal): received = sent * price(from) / price(to), floored."""
    base = prices.base_per_minute(tier)
    from_bp, to_bp = source.markup_bp(tier), destination.markup_bp(tier)
    received = convert_seconds(
        sent_seconds, client_price_per_minute(base, from_bp), client_price_per_minute(base, to_bp)
    )
    return TransferPlan(tier, sent_seconds, received, base, from_bp, to_bp)


def move_everything(
    agency_id: UUID,
    source: SubAccount,
    destination: SubAccount,
    held: dict[Tier, int],
    prices: PriceBook,
    reference: str,
    kinds: tuple[LedgerKind, LedgerKind],
) -> list[Movement]:
    """Every balance `source` holds, moved to `destination` converted by value as a transfer
    converts it (removal, merge): the ledger movements, tier by tier."""
    moves: list[Movement] = []
    for tier in Tier:
        if seconds := held.get(tier, 0):
            plan = plan_conversion(source, destination, tier, seconds, prices)
            moves += plan.movements(agency_id, source.id, destination.id, reference, kinds)
    return moves


def plan_transfer(
    source: SubAccount, destination: SubAccount, tier: Tier, sent_seconds: int, prices: PriceBook
) -> TransferPlan:
    """A transfer a user asked for: both accounts live and not suspended, something arrives."""
    if source.id == destination.id:
        raise DomainError(
            ErrorCode.SAME_SUBACCOUNT, "Choose two different sub-accounts.", ("toId",)
        )
    check_changeable(source, "fromId")
    check_changeable(destination, "toId")
    plan = plan_conversion(source, destination, tier, sent_seconds, prices)
    if plan.received_seconds == 0:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "Too little to arrive as a whole second at the destination's price.",
            ("minutes",),
        )
    return plan


def transferred(plan: TransferPlan, source: SubAccount, destination: SubAccount) -> AuditNote:
    """The audit line of a transfer: what left, what arrived."""
    summary = (
        f"moved {tier_minutes_text(plan.sent_seconds, plan.tier)} from {source.name} to "
        f"{destination.name} (arrived as {minutes_text(plan.received_seconds)})"
    )
    return AuditNote(AuditKind.MINUTES_TRANSFERRED, summary, Subject("SubAccount", source.id))
