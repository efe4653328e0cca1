"""The plan catalogue. Defaults are the SPEC's assumptions; deployments may override them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from domain.errors import DomainError, ErrorCode
from domain.money import Tier


class BillingModel(StrEnum):
    CONSUMPTION = "CONSUMPTION"
    LEGACY_PARTNER = "LEGACY_PARTNER"


@dataclass(frozen=True)
class PlanSpec:
    name: str
    billing_model: BillingModel
    sub_account_cap: int | None  # secondaries allowed; None = unlimited
    included_monthly_minutes: int
    included_tier: Tier
    knowledge_pack_credits: int


DEFAULT_PLAN_NAME = "Agency Lite"

CATALOGUE: dict[str, PlanSpec] = {
    plan.name: plan
    for plan in (
        PlanSpec("Agency Lite", BillingModel.CONSUMPTION, 5, 500, Tier.PREMIUM, 5),
        PlanSpec("Agency Unlimited", BillingModel.CONSUMPTION, None, 2000, Tier.PREMIUM, 20),
        PlanSpec("Partner", BillingModel.LEGACY_PARTNER, None, 5000, Tier.BASIC, 10),
    )
}


def plan_named(name: str | None) -> PlanSpec:
    """The plan a sign-up asked for; Agency Lite when it asked for none."""
    try:
        return CATALOGUE[name or DEFAULT_PLAN_NAME]
    except KeyError:
        known = ", ".join(CATALOGUE)
        raise DomainError(
            ErrorCode.UNKNOWN_PLAN,
            f"No plan is called {name!r}; choose one of: {known}.",
            ("planName",),
        ) from None
