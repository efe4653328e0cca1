"""Usage: which reported calls are accepted, what they cost, and who pays.

A call is priced per second at its tier's base cost (inbound Web Widget calls on BASIC at the
Web Widget rate) times the calling sub-account's markup. It debits the funding account (the
sub-account itself, or the primary when its balance source is AGENCY); what the balance cannot
cover is overage: the call is still recorded and the account flagged. Each call's cost is
rounded half up to the micro-dollar once, and the rollups add the rounded figures: any set of
calls (a local day, a local hour, a range) costs the sum of its calls, however it was batched
or bucketed.

Calls are rolled up per UTC quarter hour: every zone offset in use since 1979 is a whole number
of quarter hours, so a local day or hour is always made of whole quarters.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from uuid import UUID

from domain.agency import BalanceSource, SubAccount, SubAccountStatus
from domain.money import Tier
from domain.pricing import PriceBook, client_price_per_minute, micros_for_seconds

MAX_BATCH = 1000
MAX_CALL_SECONDS = 24 * 3600
CLOCK_SKEW = timedelta(minutes=5)  # a call may start this far "in the future"
QUARTER_MINUTES = 15  # the rollups' finest bucket


class CallDirection(StrEnum):
    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"


class CallChannel(StrEnum):
    PHONE = "PHONE"
    WEB_WIDGET = "WEB_WIDGET"


class CallStatus(StrEnum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    NO_ANSWER = "NO_ANSWER"
    BUSY = "BUSY"
    VOICEMAIL = "VOICEMAIL"


class Rejection(StrEnum):
    UNKNOWN_SUBACCOUNT = "UNKNOWN_SUBACCOUNT"
    SUBACCOUNT_SUSPENDED = "SUBACCOUNT_SUSPENDED"
    SUBACCOUNT_REMOVED = "SUBACCOUNT_REMOVED"
    INVALID_DURATION = "INVALID_DURATION"
    STARTS_IN_FUTURE = "STARTS_IN_FUTURE"
    INVALID_EXTERNAL_ID = "INVALID_EXTERNAL_ID"
    INVALID_CONVERSATION_ID = "INVALID_CONVERSATION_ID"  # messages only


REJECTION_MESSAGES = {
    Rejection.UNKNOWN_SUBACCOUNT: "No such sub-account in this agency.",
    Rejection.SUBACCOUNT_SUSPENDED: "The sub-account is suspended: its calls are refused.",
    Rejection.SUBACCOUNT_REMOVED: "The sub-account was removed.",
    Rejection.INVALID_DURATION: f"Duration must be 0 to {MAX_CALL_SECONDS} seconds.",
    Rejection.STARTS_IN_FUTURE: "The call starts in the future.",
    Rejection.INVALID_EXTERNAL_ID: "externalId must be 1 to 200 characters.",
    Rejection.INVALID_CONVERSATION_ID: "conversationId must be 1 to 200 characters.",
}


@dataclass(frozen=True)
class ReportedCall:
    external_id: str
    sub_account_id: UUID | None  # None when the ID did not decode
    direction: CallDirection
    channel: CallChannel
    status: CallStatus
    tier: Tier
    started_at: datetime
    duration_seconds: int


def rejection(
    call: ReportedCall, sub_account: SubAccount | None, now: datetime
) -> Rejection | None:
    if not 0 < len(call.external_id) <= 200:
        return Rejection.INVALID_EXTERNAL_ID
    if sub_account is None:
        return Rejection.UNKNOWN_SUBACCOUNT
    if not sub_account.is_live:
        return Rejection.SUBACCOUNT_REMOVED
    if sub_account.status is SubAccountStatus.SUSPENDED:
        return Rejection.SUBACCOUNT_SUSPENDED
    if not 0 <= call.duration_seconds <= MAX_CALL_SECONDS:
        return Rejection.INVALID_DURATION
    if call.started_at > now + CLOCK_SKEW:
        return Rejection.STARTS_IN_FUTURE
    return None


def base_per_minute(prices: PriceBook, call: ReportedCall) -> int:
    if (
        call.tier is Tier.BASIC
        and call.channel is CallChannel.WEB_WIDGET
        and call.direction is CallDirection.INBOUND
    ):
        return prices.web_widget_basic_micros_per_minute
    return prices.base_per_minute(call.tier)


def funding_account(sub_account: SubAccount, primary_id: UUID) -> UUID:
    return primary_id if sub_account.balance_source is BalanceSource.AGENCY else sub_account.id


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def quarter_of(moment: datetime) -> datetime:
    """The quarter hour a moment falls in (in the moment's own zone; UTC for the rollups)."""
    return moment.replace(
        minute=moment.minute - moment.minute % QUARTER_MINUTES, second=0, microsecond=0
    )


@dataclass(frozen=True, slots=True)
class CallCharge:
    """What one call costs, rounded once: the figures its row keeps and the rollups add up."""

    funded_by: UUID  # the sub-account whose balance pays
    spent_micros: int  # at the calling sub-account's client price
    cost_micros: int  # at the platform's base cost


class Pricer:
    """Prices calls for one batch: the client price per (base, markup) computed once."""

    def __init__(self, accounts: dict[UUID, SubAccount], primary_id: UUID, prices: PriceBook):
        self._accounts = accounts
        self._primary_id = primary_id
        self._prices = prices
        self._client_prices: dict[tuple[int, int], Fraction] = {}

    def charge(self, call: ReportedCall) -> CallCharge:
        assert call.sub_account_id is not None
        account = self._accounts[call.sub_account_id]
        base = base_per_minute(self._prices, call)
        markup = account.markup_bp(call.tier)
        price = self._client_prices.get((base, markup))
        if price is None:
            price = self._client_prices[base, markup] = client_price_per_minute(base, markup)
        return CallCharge(
            funding_account(account, self._primary_id),
            micros_for_seconds(call.duration_seconds, price),
            micros_for_seconds(call.duration_seconds, base),
        )

    def charges(self, calls: Iterable[ReportedCall]) -> dict[str, CallCharge]:
        return {call.external_id: self.charge(call) for call in calls}


@dataclass
class RollupLine:
    """What a batch adds to one (sub-account, tier, quarter hour) rollup row; money in
    micro-dollars, each call's cost rounded once."""

    calls: int = 0
    seconds: int = 0
    overage_seconds: int = 0
    inbound: int = 0
    outbound: int = 0
    by_status: dict[CallStatus, int] | None = None
    spent_micros: int = 0  # what the client paid
    cost_micros: int = 0  # the platform's base cost

    def add(self, call: ReportedCall, overage: int, charge: CallCharge) -> None:
        self.calls += 1
        self.seconds += call.duration_seconds
        self.overage_seconds += overage
        self.spent_micros += charge.spent_micros
        self.cost_micros += charge.cost_micros
        if call.direction is CallDirection.INBOUND:
            self.inbound += 1
        else:
            self.outbound += 1
        counts = self.by_status if self.by_status is not None else {}
        counts[call.status] = counts.get(call.status, 0) + 1
        self.by_status = counts


@dataclass(frozen=True)
class BatchBill:
    debits: dict[tuple[UUID, Tier], int]  # seconds taken from each funding balance
    rollups: dict[tuple[UUID, Tier, datetime], RollupLine]
    overage: dict[UUID, int]  # per calling sub-account
    last_calls: dict[UUID, tuple[ReportedCall, int]]  # latest-starting call, its overage
    short_calls: dict[str, int]  # external id -> overage seconds, for calls that had any

    def touched(self) -> set[UUID]:
        """The sub-accounts whose calls these were, and those that paid for them."""
        return {account_id for account_id, _ in self.debits} | {
            account_id for account_id, _, _ in self.rollups
        }


@dataclass(frozen=True)
class BilledInTurn:
    bill: BatchBill
    balances_after: dict[tuple[UUID, Tier], int]


def bill_in_turn(
    batches: list[list[ReportedCall]],
    balances: dict[tuple[UUID, Tier], int],
    charges: dict[str, CallCharge],
) -> list[BilledInTurn]:
    """Batches billed together as if each were billed alone, in turn: each against what the
    ones before it left, and the balances it leaves."""
    billed = []
    for calls in batches:
        batch_bill = bill(calls, balances, charges)
        balances = {key: left - batch_bill.debits.get(key, 0) for key, left in balances.items()}
        billed.append(BilledInTurn(batch_bill, balances))
    return billed


def bill(
    calls: list[ReportedCall],
    balances: dict[tuple[UUID, Tier], int],
    charges: dict[str, CallCharge],
) -> BatchBill:
    """Bill accepted calls in start order, each at its charge (`Pricer`): each takes what its
    funding balance still holds."""
    remaining = dict(balances)
    debits: dict[tuple[UUID, Tier], int] = defaultdict(int)
    rollups: dict[tuple[UUID, Tier, datetime], RollupLine] = defaultdict(RollupLine)
    overage: dict[UUID, int] = defaultdict(int)
    last_calls: dict[UUID, tuple[ReportedCall, int]] = {}
    short_calls: dict[str, int] = {}
    for call in sorted(calls, key=lambda c: (c.started_at, c.external_id)):
        assert call.sub_account_id is not None
        charge = charges[call.external_id]
        funder = (charge.funded_by, call.tier)
        billed = min(remaining.get(funder, 0), call.duration_seconds)
        remaining[funder] = remaining.get(funder, 0) - billed
        debits[funder] += billed
        short = call.duration_seconds - billed
        if short:
            overage[call.sub_account_id] += short
            short_calls[call.external_id] = short
        rollups[(call.sub_account_id, call.tier, quarter_of(call.started_at))].add(
            call, short, charge
        )
        last_calls[call.sub_account_id] = (call, short)
    return BatchBill(dict(debits), dict(rollups), dict(overage), last_calls, short_calls)


class LastSeenBalances:
    """The balances one process saw last as it billed, for `expected_short_calls`: only ever a
    guess (another process, a transfer or a top-up may have moved them since), forgotten all
    at once past `limit` keys (a few MB at most; forgetting costs only the guesses)."""

    def __init__(self, limit: int = 20_000) -> None:
        self._limit = limit
        self._seen: dict[tuple[UUID, Tier], int] = {}

    def of(self, keys: Iterable[tuple[UUID, Tier]]) -> dict[tuple[UUID, Tier], int]:
        seen = self._seen
        return {key: seen[key] for key in keys if key in seen}

    def saw(self, balances: dict[tuple[UUID, Tier], int]) -> None:
        if len(self._seen) + len(balances) > self._limit:
            self._seen.clear()
        self._seen.update(balances)


def expected_short_calls(
    calls: list[ReportedCall],
    balances: dict[tuple[UUID, Tier], int],
    charges: dict[str, CallCharge],
) -> dict[str, int]:
    """`bill`'s short calls, were the balances these, and a funding balance not among them as
    good as endless (so with none known, no call is short).

    A guess, made before the balances are locked, of what each call's overage will be, so that
    its row is inserted with it: setting it afterwards writes the row a second time (every
    call of a batch past an empty balance)."""
    remaining = dict(balances)
    short_calls: dict[str, int] = {}
    for call in sorted(calls, key=lambda c: (c.started_at, c.external_id)):
        funder = (charges[call.external_id].funded_by, call.tier)
        left = remaining.get(funder)
        if left is None:
            continue
        billed = min(left, call.duration_seconds)
        remaining[funder] = left - billed
        if billed < call.duration_seconds:
            short_calls[call.external_id] = call.duration_seconds - billed
    return short_calls


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """A stored call with what it cost (`CallCharge`) and its overage: one line of a bill."""

    id: int
    external_id: str
    sub_account_id: UUID
    direction: CallDirection
    channel: CallChannel
    status: CallStatus
    tier: Tier
    started_at: datetime
    duration_seconds: int
    funded_by: UUID
    overage_seconds: int
    spent_micros: int
    cost_micros: int
