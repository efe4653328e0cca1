"""Reports: date ranges in the agency's time zone, and account health flags."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from domain.errors import DomainError, ErrorCode

MAX_RANGE_DAYS = 400


@dataclass(frozen=True)
class Range:
    """Inclusive local dates, as the user chose them, and their UTC bounds [start, end)."""

    first: date
    last: date
    start_utc: datetime
    end_utc: datetime

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def previous(self, zone: str) -> Range:
        """The period of equal length just before this one (for usage-drop)."""
        return local_range(
            self.first - timedelta(days=self.days), self.first - timedelta(days=1), zone
        )


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """When `day` begins where the agency is, in UTC (the first midnight, if there are two;
    the moment the clocks jump, if there is none)."""
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def day_starts(window: Range, zone: str) -> list[datetime]:
    """The start of each local day of the range, in UTC, then the range's end: the points of
    a DAY series."""
    tz = ZoneInfo(zone)
    days = [local_midnight(window.first + timedelta(days=n), tz) for n in range(window.days)]
    return [*days, window.end_utc]


def hour_starts(window: Range, zone: str) -> list[datetime]:
    """The start of each local hour of the range, in UTC, then the range's end: the points of
    an HOUR series.

    A local hour is the time the wall clock shows one hour of one date at one UTC offset: in
    Asia/Kolkata it starts at half past a UTC hour; the hour a clock goes back is repeated
    (two points, one per offset); the hour it skips has no point; and one cut short by a
    change of offset (Pacific/Chatham jumps from 02:45 to 03:45) ends at the change, where
    the next one starts.
    """
    tz = ZoneInfo(zone)
    starts = [window.start_utc]
    at = window.start_utc
    while True:
        local = at.astimezone(tz)
        past = timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
        following = at - past + timedelta(hours=1)
        offset = local.utcoffset()
        if following.astimezone(tz).utcoffset() != offset:
            following = _offset_change(at, following, tz)
        if following >= window.end_utc:
            return [*starts, window.end_utc]
        starts.append(following)
        at = following


def _offset_change(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first whole second in (before, after] at another UTC offset than `before`'s."""
    offset = before.astimezone(zone).utcoffset()
    lo, hi = 0, int((after - before).total_seconds())
    while hi - lo > 1:
        middle = (lo + hi) // 2
        if (before + timedelta(seconds=middle)).astimezone(zone).utcoffset() == offset:
            lo = middle
        else:
            hi = middle
    return before + timedelta(seconds=hi)


def local_range(first: date, last: date, zone: str) -> Range:
    if last < first:
        raise DomainError(ErrorCode.INVALID_INPUT, "`to` is before `from`.", ("range", "to"))
    if (last - first).days >= MAX_RANGE_DAYS:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"A range spans at most {MAX_RANGE_DAYS} days.", ("range",)
        )
    tz = ZoneInfo(zone)
    return Range(
        first, last, local_midnight(first, tz), local_midnight(last + timedelta(days=1), tz)
    )


class HealthFlagKind(StrEnum):
    LOW_BALANCE = "LOW_BALANCE"
    OVERAGE = "OVERAGE"
    SUSPENDED = "SUSPENDED"
    USAGE_DROP = "USAGE_DROP"
    HIGH_FAILURE_RATE = "HIGH_FAILURE_RATE"
    SPENDING_CAP_REACHED = "SPENDING_CAP_REACHED"
    PAYMENT_FAILED = "PAYMENT_FAILED"


@dataclass(frozen=True)
class HealthThresholds:
    low_balance_runway_days: int = 7
    burn_window_days: int = 7
    usage_drop_ratio: Decimal = Decimal("0.5")  # below half of the previous period
    failure_rate: Decimal = Decimal("0.2")
    failure_min_calls: int = 10


@dataclass(frozen=True)
class HealthFlag:
    kind: HealthFlagKind
    message: str
    runway_days: Decimal | None = None


@dataclass(frozen=True)
class HealthInputs:
    suspended: bool
    balance_seconds: int
    recent_burn_seconds: int  # over the burn window
    overage_seconds: int  # in the range
    seconds: int  # in the range
    previous_seconds: int  # in the previous equal period
    calls: int
    failed_calls: int
    spending_cap_reached: bool = False
    payment_failed: bool = False  # its last auto-recharge failed


def health_flags(inputs: HealthInputs, thresholds: HealthThresholds) -> list[HealthFlag]:
    flags: list[HealthFlag] = []
    if inputs.suspended:
        flags.append(HealthFlag(HealthFlagKind.SUSPENDED, "The sub-account is suspended."))
    if inputs.recent_burn_seconds > 0:
        runway = (
            Decimal(inputs.balance_seconds)
            * thresholds.burn_window_days
            / Decimal(inputs.recent_burn_seconds)
        ).quantize(Decimal("0.1"))
        if runway < thresholds.low_balance_runway_days:
            flags.append(
                HealthFlag(
                    HealthFlagKind.LOW_BALANCE,
                    f"About {runway} days of minutes left at the recent rate.",
                    runway,
                )
            )
    if inputs.overage_seconds > 0:
        flags.append(
            HealthFlag(
                HealthFlagKind.OVERAGE,
                f"{inputs.overage_seconds} seconds of calls ran past the balance.",
            )
        )
    if inputs.previous_seconds > 0 and (
        Decimal(inputs.seconds) < thresholds.usage_drop_ratio * inputs.previous_seconds
    ):
        flags.append(
            HealthFlag(
                HealthFlagKind.USAGE_DROP,
                "Usage fell by more than half against the previous period.",
            )
        )
    if inputs.calls >= thresholds.failure_min_calls and (
        Decimal(inputs.failed_calls) > thresholds.failure_rate * inputs.calls
    ):
        flags.append(
            HealthFlag(
                HealthFlagKind.HIGH_FAILURE_RATE,
                f"{inputs.failed_calls} of {inputs.calls} calls failed.",
            )
        )
    if inputs.spending_cap_reached:
        flags.append(
            HealthFlag(
                HealthFlagKind.SPENDING_CAP_REACHED,
                "The spending cap is reached: its campaigns are paused.",
            )
        )
    if inputs.payment_failed:
        flags.append(
            HealthFlag(HealthFlagKind.PAYMENT_FAILED, "The last auto-recharge payment failed.")
        )
    return flags
