"""What live screens are shown, as of the commit that changed it.

A change that moves minutes or money writes these figures into its event, in its own
transaction: a screen then shows each event's own state (a late event never shows a later
balance), and delivering it reads nothing from the database. Payloads are plain JSON.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from domain.agency import Agency, BalanceSource, SubAccount, SubAccountKind, SubAccountStatus
from domain.billing_cycle import period_start
from domain.ledger import Balance
from domain.money import Tier
from domain.usage import CallDirection, CallStatus, RollupLine


@dataclass(frozen=True)
class LastCall:
    """The latest-starting call a change recorded for a sub-account."""

    external_id: str
    started_at: datetime
    duration_seconds: int
    tier: Tier
    direction: CallDirection
    status: CallStatus
    overage_seconds: int


@dataclass(frozen=True)
class UsageSnapshot:
    """A sub-account's figures right after a change: balances, and this billing period's use."""

    sub_account: SubAccount
    balances: tuple[Balance, ...]
    spent_this_period_micros: int
    seconds_this_period: int
    last_call: LastCall | None = None


@dataclass(frozen=True)
class AgencyTotals:
    """An agency's minutes used in its plan period, and its active sub-accounts."""

    seconds_this_period: int
    active_sub_accounts: int


@dataclass(frozen=True)
class PeriodUse:
    """What a batch adds to the per-period counters, keyed by period start (a local date).

    Each touched sub-account's current period is present (with zeros if the batch's calls all
    started earlier), so writing these returns every figure a live screen shows. Money is
    added exactly as the rollups add it (each call rounded once), so the counters equal the
    sums of the rollups' quarter hours; a quarter lies within one local day in every zone.
    """

    sub_accounts: dict[tuple[UUID, date], tuple[int, int]]  # (seconds, spent micro-dollars)
    agency: dict[date, int]  # seconds
    current: dict[UUID, date]
    agency_current: date


def period_use(
    lines: dict[tuple[UUID, Tier, datetime], RollupLine],
    touched: Iterable[SubAccount],
    agency: Agency,
    now: datetime,
) -> PeriodUse:
    zone = ZoneInfo(agency.time_zone)
    anchors = {s.id: s.subscription_start_date for s in touched}
    local_days: dict[datetime, date] = {}  # per quarter hour
    sub_accounts: dict[tuple[UUID, date], list[int]] = defaultdict(lambda: [0, 0])
    by_agency: dict[date, int] = defaultdict(int)
    for (sub_account_id, _, quarter), line in lines.items():
        day = local_days.get(quarter)
        if day is None:
            day = local_days[quarter] = quarter.astimezone(zone).date()
        anchor = anchors[sub_account_id]
        if day >= anchor:  # a call from before the first period counts in no period
            sums = sub_accounts[sub_account_id, period_start(anchor, day)]
            sums[0] += line.seconds
            sums[1] += line.spent_micros
        if day >= agency.plan_started_on:
            by_agency[period_start(agency.plan_started_on, day)] += line.seconds
    today = now.astimezone(zone).date()
    current = {key: period_start(anchor, today) for key, anchor in anchors.items()}
    for key, first_day in current.items():
        sub_accounts[key, first_day][0] += 0  # present, even if only with zeros
    agency_current = period_start(agency.plan_started_on, today)
    by_agency[agency_current] += 0
    return PeriodUse(
        {k: (v[0], v[1]) for k, v in sub_accounts.items()},
        dict(by_agency),
        current,
        agency_current,
    )


def combined_use(uses: Sequence[PeriodUse]) -> PeriodUse:
    """Several batches' use as one write: what writing them one after another would add."""
    sub_accounts: dict[tuple[UUID, date], tuple[int, int]] = {}
    by_agency: dict[date, int] = defaultdict(int)
    current: dict[UUID, date] = {}
    for use in uses:
        for key, (seconds, spent) in use.sub_accounts.items():
            before = sub_accounts.get(key, (0, 0))
            sub_accounts[key] = (before[0] + seconds, before[1] + spent)
        for first_day, seconds in use.agency.items():
            by_agency[first_day] += seconds
        current |= use.current
    return PeriodUse(sub_accounts, dict(by_agency), current, uses[-1].agency_current)


def use_after_each(
    uses: Sequence[PeriodUse], this_period: dict[UUID, tuple[int, int]], agency_seconds: int
) -> list[tuple[dict[UUID, tuple[int, int]], int]]:
    """Given the current-period figures after all of `uses` were written (in order), the
    figures right after each one: each touched sub-account's (seconds, spent) and the agency's
    seconds, less what the later ones added."""
    after: list[tuple[dict[UUID, tuple[int, int]], int]] = []
    later_sub: dict[UUID, tuple[int, int]] = defaultdict(lambda: (0, 0))
    later_agency = 0
    for use in reversed(uses):
        figures = {}
        for sub_account_id in use.current:
            total, added = this_period[sub_account_id], later_sub[sub_account_id]
            figures[sub_account_id] = (total[0] - added[0], total[1] - added[1])
        after.append((figures, agency_seconds - later_agency))
        for (sub_account_id, first_day), (seconds, spent) in use.sub_accounts.items():
            if use.current.get(sub_account_id) == first_day:
                added = later_sub[sub_account_id]
                later_sub[sub_account_id] = (added[0] + seconds, added[1] + spent)
        later_agency += use.agency.get(use.agency_current, 0)
    return after[::-1]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _moment(text: Any) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def sub_account_payload(sub_account: SubAccount) -> dict[str, Any]:
    return {
        "id": str(sub_account.id),
        "agency_id": str(sub_account.agency_id),
        "kind": sub_account.kind.value,
        "name": sub_account.name,
        "login_email": sub_account.login_email,
        "status": sub_account.status.value,
        "subscription_start_date": sub_account.subscription_start_date.isoformat(),
        "balance_source": sub_account.balance_source.value,
        "knowledge_pack_credits": sub_account.knowledge_pack_credits,
        "markup_basic_bp": sub_account.markup_basic_bp,
        "markup_premium_bp": sub_account.markup_premium_bp,
        "suspended_at": _iso(sub_account.suspended_at),
        "suspension_note": sub_account.suspension_note,
        "removed_at": _iso(sub_account.removed_at),
        "capped_at": _iso(sub_account.capped_at),
    }


def sub_account_from(payload: dict[str, Any]) -> SubAccount:
    return SubAccount(
        id=UUID(payload["id"]),
        agency_id=UUID(payload["agency_id"]),
        kind=SubAccountKind(payload["kind"]),
        name=payload["name"],
        login_email=payload["login_email"],
        status=SubAccountStatus(payload["status"]),
        subscription_start_date=date.fromisoformat(payload["subscription_start_date"]),
        balance_source=BalanceSource(payload["balance_source"]),
        knowledge_pack_credits=payload["knowledge_pack_credits"],
        markup_basic_bp=payload["markup_basic_bp"],
        markup_premium_bp=payload["markup_premium_bp"],
        suspended_at=_moment(payload["suspended_at"]),
        suspension_note=payload["suspension_note"],
        removed_at=_moment(payload["removed_at"]),
        capped_at=_moment(payload.get("capped_at")),  # absent from events written before caps
    )


def usage_payload(snapshot: UsageSnapshot) -> dict[str, Any]:
    call = snapshot.last_call
    return {
        "sub_account_id": str(snapshot.sub_account.id),
        "sub_account": sub_account_payload(snapshot.sub_account),
        "balances": {b.tier.value: b.seconds for b in snapshot.balances},
        "spent_this_period_micros": snapshot.spent_this_period_micros,
        "seconds_this_period": snapshot.seconds_this_period,
        "last_call": None
        if call is None
        else {
            "external_id": call.external_id,
            "started_at": call.started_at.isoformat(),
            "duration_seconds": call.duration_seconds,
            "tier": call.tier.value,
            "direction": call.direction.value,
            "status": call.status.value,
            "overage_seconds": call.overage_seconds,
        },
    }


def usage_snapshot_from(payload: dict[str, Any]) -> UsageSnapshot:
    call = payload["last_call"]
    return UsageSnapshot(
        sub_account=sub_account_from(payload["sub_account"]),
        balances=tuple(Balance(Tier(t), s) for t, s in sorted(payload["balances"].items())),
        spent_this_period_micros=payload["spent_this_period_micros"],
        seconds_this_period=payload["seconds_this_period"],
        last_call=None
        if call is None
        else LastCall(
            external_id=call["external_id"],
            started_at=datetime.fromisoformat(call["started_at"]),
            duration_seconds=call["duration_seconds"],
            tier=Tier(call["tier"]),
            direction=CallDirection(call["direction"]),
            status=CallStatus(call["status"]),
            overage_seconds=call["overage_seconds"],
        ),
    )


def totals_payload(totals: AgencyTotals) -> dict[str, Any]:
    return {
        "seconds_this_period": totals.seconds_this_period,
        "active_sub_accounts": totals.active_sub_accounts,
    }


def totals_from(payload: dict[str, Any]) -> AgencyTotals:
    return AgencyTotals(payload["seconds_this_period"], payload["active_sub_accounts"])
