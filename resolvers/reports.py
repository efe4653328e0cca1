"""Reports over any date range (inclusive, in the agency's time zone) and account health."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from uuid import UUID

from domain.agency import Agency, SubAccount, SubAccountStatus
from domain.errors import DomainError, ErrorCode
from domain.ledger import Balance
from domain.policy import Action, Target, require
from domain.reporting import (
    HealthFlag,
    HealthInputs,
    HealthThresholds,
    Range,
    day_starts,
    health_flags,
    hour_starts,
    local_range,
)
from persistence import auto_recharge
from persistence.queries import reports as queries
from persistence.queries.loaders import balances_by_sub_account
from persistence.queries.reports import ClientUsage, Span, UsageTotals
from persistence.queries.sub_accounts import sub_accounts_page
from resolvers import viewer as reads
from resolvers.context import RequestContext
from resolvers.paging import page_size
from resolvers.viewer import sub_account_target

MAX_CLIENTS_IN_REPORT = 10_000  # sorted in memory: an agency's whole client list


class Granularity(StrEnum):
    HOUR = "HOUR"
    DAY = "DAY"


class ClientSortField(StrEnum):
    NAME = "NAME"
    MINUTES_USED = "MINUTES_USED"
    SPENT = "SPENT"
    USAGE_MARGIN = "USAGE_MARGIN"


@dataclass(frozen=True)
class SubAccountReport:
    sub_account: SubAccount
    range: Range
    zone: str
    usage: UsageTotals
    balances: list[Balance]
    health: list[HealthFlag]


@dataclass(frozen=True)
class SeriesPoint:
    start: datetime
    calls: int
    seconds: int
    spent_micros: int


Figures = UsageTotals | ClientUsage  # what health flags read of a range's usage


@dataclass(frozen=True)
class ClientRow:
    """One client of the agency report; its figures are read from the report's windows."""

    sub_account: SubAccount
    windows: Windows

    @property
    def usage(self) -> Figures:
        return self.windows.now.get(self.sub_account.id, EMPTY)

    @property
    def balances(self) -> list[Balance]:
        """Loaded for the rows a page shows (`clients_page`), not for the whole agency."""
        return self.windows.balances[self.sub_account.id]

    @property
    def health(self) -> list[HealthFlag]:
        """Worked out when shown: a page shows 50 of an agency's clients, not all of them."""
        return self.windows.flags(self.sub_account)


@dataclass(frozen=True)
class Windows:
    """Usage in the range; seconds in the previous equal range and over the recent burn
    window; balances of the accounts shown."""

    now: Mapping[UUID, Figures]
    before: dict[UUID, int]
    recent: dict[UUID, int]
    balances: dict[UUID, list[Balance]]
    thresholds: HealthThresholds
    # Of the accounts shown, those whose last auto-recharge failed (read with their balances).
    payment_failed: set[UUID] = field(default_factory=set)

    def flags(self, account: SubAccount) -> list[HealthFlag]:
        return _flags(
            self.thresholds,
            account,
            account.id in self.payment_failed,
            self.balances[account.id],
            self.now.get(account.id, EMPTY),
            self.before.get(account.id, 0),
            self.recent.get(account.id, 0),
        )


EMPTY = ClientUsage()


def _other_windows(ctx: RequestContext, agency: Agency, window: Range) -> dict[str, Span]:
    """The previous equal range (usage drop) and the burn window ending today (runway)."""
    # "Today" where the agency is: the burn window ends on the same local day as a range
    # ending today (a UTC date would add an empty tomorrow west of UTC in the evening).
    today = reads.today(ctx, agency.time_zone)
    burn = local_range(
        today - timedelta(days=ctx.services.health.burn_window_days - 1), today, agency.time_zone
    )
    previous = window.previous(agency.time_zone)
    return {
        "before": (previous.start_utc, previous.end_utc),
        "recent": (burn.start_utc, burn.end_utc),
    }


async def _account_windows(
    ctx: RequestContext, agency: Agency, window: Range, account: SubAccount
) -> tuple[UsageTotals, Windows]:
    """One grouped statement over the rollups and one for the balances: every figure of the
    account's range, and seconds in the previous range and the burn window."""
    async with ctx.services.database.read() as conn:
        now, others = await queries.usage_in_windows(
            conn,
            agency.id,
            (window.start_utc, window.end_utc),
            _other_windows(ctx, agency, window),
            account.id,
        )
        (balances,) = await balances_by_sub_account(conn, [account.id])
        [setting] = await auto_recharge.settings_of(conn, [account.id])
    seconds = {n: {i: t.seconds for i, t in o.items()} for n, o in others.items()}
    return now.get(account.id, UsageTotals()), Windows(
        now,
        seconds["before"],
        seconds["recent"],
        {account.id: balances},
        ctx.services.health,
        {account.id} if setting.payment_failed else set(),
    )


def _flags(
    thresholds: HealthThresholds,
    account: SubAccount,
    payment_failed: bool,
    balances: list[Balance],
    now: Figures,
    before_seconds: int,
    recent_seconds: int,
) -> list[HealthFlag]:
    return health_flags(
        HealthInputs(
            suspended=account.status is SubAccountStatus.SUSPENDED,
            balance_seconds=sum(b.seconds for b in balances),
            recent_burn_seconds=recent_seconds,
            overage_seconds=now.overage_seconds,
            seconds=now.seconds,
            previous_seconds=before_seconds,
            calls=now.calls,
            failed_calls=now.failed_calls,
            spending_cap_reached=account.capped_at is not None,
            payment_failed=payment_failed,
        ),
        thresholds,
    )


async def sub_account_report(
    ctx: RequestContext, sub_account: SubAccount, first: date, last: date
) -> SubAccountReport:
    session = await ctx.require_session()
    require(session.viewer, Action.VIEW_SUB_ACCOUNT, sub_account_target(sub_account))
    agency = session.agency
    window = local_range(first, last, agency.time_zone)
    usage, windows = await _account_windows(ctx, agency, window, sub_account)
    return SubAccountReport(
        sub_account,
        window,
        agency.time_zone,
        usage,
        windows.balances[sub_account.id],
        windows.flags(sub_account),
    )


async def series(
    ctx: RequestContext, report: SubAccountReport, granularity: Granularity
) -> list[SeriesPoint]:
    """One point per local hour or day of the range that had calls, starting where that hour
    or day starts in the agency's zone."""
    starts = (hour_starts if granularity is Granularity.HOUR else day_starts)(
        report.range, report.zone
    )
    async with ctx.services.database.read() as conn:
        periods = await queries.usage_per_period(conn, report.sub_account.id, starts)
    return [SeriesPoint(p.start, p.calls, p.seconds, p.spent_micros) for p in periods]


@dataclass(frozen=True)
class AgencyReport:
    agency: Agency
    range: Range
    rows: list[ClientRow]
    windows: Windows

    @property
    def total_seconds(self) -> int:
        return sum(r.usage.seconds for r in self.rows)

    @property
    def margin_micros(self) -> int:
        return sum(r.usage.spent_micros - r.usage.cost_micros for r in self.rows)


async def agency_report(
    ctx: RequestContext, agency: Agency, first: date, last: date
) -> AgencyReport:
    """Every client with its usage (one statement for the sub-accounts, one over the
    rollups); balances wait for the page of clients shown (`clients_page`)."""
    session = await ctx.require_session()
    require(session.viewer, Action.VIEW_AGENCY_DETAILS, Target(agency.id))
    window = local_range(first, last, agency.time_zone)
    async with ctx.services.database.read() as conn:
        page = await sub_accounts_page(conn, agency.id, None, None, MAX_CLIENTS_IN_REPORT, None)
        now, others = await queries.client_usage_in_windows(
            conn,
            agency.id,
            (window.start_utc, window.end_utc),
            _other_windows(ctx, agency, window),
        )
    windows = Windows(now, others["before"], others["recent"], {}, ctx.services.health)
    rows = [ClientRow(a, windows) for a in page.items]
    return AgencyReport(agency, window, rows, windows)


async def clients_page(
    ctx: RequestContext,
    report: AgencyReport,
    field: ClientSortField,
    descending: bool,
    first: int | None,
    after: str | None,
) -> tuple[list[tuple[ClientRow, str]], bool]:
    """A page of the report's clients in the chosen order, with the balances its rows show
    (their wallets and health), read in one statement for the page alone."""
    page, has_next = page_of(sorted_clients(report.rows, field, descending), first, after)
    missing = [r.sub_account.id for r, _ in page if r.sub_account.id not in report.windows.balances]
    if missing:
        async with ctx.services.database.read() as conn:
            found = await balances_by_sub_account(conn, missing)
            settings = await auto_recharge.settings_of(conn, missing)
        report.windows.balances.update(zip(missing, found, strict=True))
        report.windows.payment_failed.update(
            i for i, setting in zip(missing, settings, strict=True) if setting.payment_failed
        )
    return page, has_next


def sorted_clients(
    rows: list[ClientRow], field: ClientSortField, descending: bool
) -> list[ClientRow]:
    keys = {
        ClientSortField.NAME: lambda r: (r.sub_account.name.lower(), str(r.sub_account.id)),
        ClientSortField.MINUTES_USED: lambda r: (r.usage.seconds, str(r.sub_account.id)),
        ClientSortField.SPENT: lambda r: (r.usage.spent_micros, str(r.sub_account.id)),
        ClientSortField.USAGE_MARGIN: lambda r: (
            r.usage.spent_micros - r.usage.cost_micros,
            str(r.sub_account.id),
        ),
    }
    return sorted(rows, key=keys[field], reverse=descending)


def page_of(
    rows: list[ClientRow], first: int | None, after: str | None
) -> tuple[list[tuple[ClientRow, str]], bool]:
    """Offset cursors over a sorted list: the list is small (an agency's clients)."""
    size = page_size(first)
    offset = 0
    if after is not None:
        try:
            offset = int(base64.urlsafe_b64decode(after.encode()).decode().removeprefix("row:")) + 1
        except ValueError:
            raise DomainError(
                ErrorCode.INVALID_INPUT, "That cursor is not valid.", ("after",)
            ) from None
    chunk = rows[offset : offset + size]
    cursors = [
        base64.urlsafe_b64encode(f"row:{offset + i}".encode()).decode() for i in range(len(chunk))
    ]
    return list(zip(chunk, cursors, strict=True)), offset + size < len(rows)
