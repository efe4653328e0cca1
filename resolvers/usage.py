"""Usage ingestion: the platform reports calls in batches; each batch bills in one transaction."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from domain.agency import SubAccount
from domain.auto_recharge import requests_after
from domain.errors import DomainError, ErrorCode
from domain.events import EventKind, totals_event, usage_event
from domain.ledger import Balance, LedgerKind, Movement
from domain.live import (
    AgencyTotals,
    LastCall,
    PeriodUse,
    UsageSnapshot,
    combined_use,
    period_use,
    use_after_each,
)
from domain.money import TIERS, Tier
from domain.spending_cap import is_reached
from domain.usage import (
    MAX_BATCH,
    REJECTION_MESSAGES,
    BatchBill,
    BilledInTurn,
    Pricer,
    Rejection,
    ReportedCall,
    bill_in_turn,
    expected_short_calls,
    funding_account,
    rejection,
)
from persistence import auto_recharge, ledger, metrics, spending_caps, usage
from persistence.unit_of_work import UnitOfWork
from resolvers.api_keys import INGEST_SCOPE, ingesting_batch
from resolvers.context import RequestContext, Services
from resolvers.group_commit import let_next_start


@dataclass
class Recorded:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[str, Rejection]] = field(default_factory=list)


# A request of at most this many calls waits for its agency's group (resolvers/group_commit.py);
# a larger one is a batch already and runs alone, beside others.
GROUPED_UP_TO = 100


async def record_calls(ctx: RequestContext, calls: list[ReportedCall]) -> Recorded:
    """Idempotent on externalId; a failure half-way leaves nothing half-billed.

    Small requests with one API key that arrive together are billed in one transaction, each
    as if it had run alone right after the one before it (its duplicates, balances, events).
    The key is checked in that transaction: one statement for the group, not a round trip for
    each request, and a key revoked before it commits bills nothing in it."""
    if len(calls) > MAX_BATCH:
        await ctx.require_api_key(INGEST_SCOPE)  # who asks is answered before what they sent
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"Send at most {MAX_BATCH} calls per batch.", ("calls",)
        )
    services, digest = ctx.services, ctx.api_key_digest()
    billing = functools.partial(_bill_batches, services, digest)
    if len(calls) > GROUPED_UP_TO:
        [(agency_id, recorded)] = await billing([calls])
    else:
        group = ("recordCalls", digest)
        agency_id, recorded = await services.ingestion_groups.submit(
            group, calls, billing, len(calls)
        )
    ctx.api_key_agency_id = agency_id  # the request's log line names the agency
    metrics.count_ingested("calls", recorded.accepted, recorded.duplicates, len(recorded.rejected))
    return recorded


async def _bill_batches(
    services: Services, key_digest: bytes, batches: list[list[ReportedCall]]
) -> list[tuple[uuid.UUID, Recorded]]:
    """Bill `batches`, sent with the API key of `key_digest`, in one transaction, in order; one
    result for each, with the key's agency."""
    now = services.clock()

    async def bill_all(uow: UnitOfWork) -> list[tuple[uuid.UUID, Recorded]]:
        ids = sorted({c.sub_account_id for b in batches for c in b if c.sub_account_id})
        batch = await ingesting_batch(uow, key_digest, ids)
        agency_id = batch.agency.id
        accounts, primary = batch.accounts, batch.primary
        results, claimed = claim(batches, accounts, now, rejection)  # afresh on a rerun
        calls = [call for _, call in claimed.values()]
        charges = Pricer(accounts, primary.id, services.prices).charges(calls)
        # Inserted with the overage the balances seen last predict (without a lock: a guess,
        # corrected below once they are locked), not set on each row after: past an empty
        # balance that is every call, each row written twice.
        funders = {(charges[c.external_id].funded_by, c.tier) for c in calls}
        expected = expected_short_calls(calls, services.last_balances.of(funders), charges)
        new_ids = await usage.insert_new_calls(uow.conn, agency_id, calls, charges, now, expected)
        accepted = accept(results, claimed, new_ids)
        if not accepted:
            return [(agency_id, result) for result in results]
        # Locked: the balances debited, and those the events report (exact as of commit).
        balances = await ledger.balances_for_update(
            uow.conn,
            {s for calls in accepted for c in calls for s in _billed_to(c, accounts, primary)},
        )
        let_next_start()  # the next group's statements up to this lock meanwhile
        billed = bill_in_turn(accepted, balances, charges)
        services.last_balances.saw(billed[-1].balances_after)
        movements = [m for b in billed for m in _movements(agency_id, b.bill)]
        short = {e: s for b in billed for e, s in b.bill.short_calls.items()}
        # Only the calls whose overage was not what their row was inserted with.
        corrected = {e: short.get(e, 0) for e in new_ids if short.get(e, 0) != expected.get(e, 0)}
        touched, uses = _period_uses(batch, billed, now)
        # The debits, the calls' overage, the rollups and the period counters (one statement
        # on PostgreSQL: the balances stay locked until commit, so the fewer round trips
        # after the lock, the sooner the next group with a call on them goes).
        this_period, agency_seconds = await usage.bill(
            uow.conn,
            agency_id,
            movements,
            corrected,
            new_ids,
            [b.bill.rollups for b in billed],
            combined_use(uses),
            now,
        )
        _announce(uow, batch, billed, touched, uses, (this_period, agency_seconds))
        await _request_recharges(uow, batch, billed, now)
        await _request_cap_checks(uow, batch, this_period, now)
        return [(agency_id, result) for result in results]

    # Not audited: the platform's usage reports are the call records themselves.
    return await services.transact(bill_all, audited=False)


async def _request_recharges(
    uow: UnitOfWork, batch: usage.BatchContext, billed: list[BilledInTurn], now: datetime
) -> None:
    """Balances the group left below their auto-recharge threshold get a request (no
    statement at all when none did, or when the account has no auto-recharge)."""
    if not batch.recharges:
        return
    debited = [key for b in billed for key, seconds in b.bill.debits.items() if seconds]
    wanted = requests_after(batch.recharges, debited, billed[-1].balances_after)
    if wanted:
        await auto_recharge.request(uow.conn, batch.agency.id, wanted, now)
        uow.wake(auto_recharge.JOB)


async def _request_cap_checks(
    uow: UnitOfWork,
    batch: usage.BatchContext,
    this_period: dict[uuid.UUID, tuple[int, int]],
    now: datetime,
) -> None:
    """Sub-accounts whose spending this period reached their cap get a check: the cap job
    pauses them under their row's lock, which ingestion never takes."""
    if not batch.caps:
        return
    reached = [
        account.id
        for account in batch.accounts.values()
        if account.capped_at is None
        and account.id in this_period
        and is_reached(batch.caps.get(account.id), this_period[account.id][1])
    ]
    if reached:
        await spending_caps.request_checks(uow.conn, batch.agency.id, sorted(reached), now)
        uow.wake(spending_caps.JOB)


class Reported(Protocol):
    """What the platform reports (a call, a message): its id and whose it says it is."""

    @property
    def external_id(self) -> str: ...
    @property
    def sub_account_id(self) -> uuid.UUID | None: ...


R = TypeVar("R", bound=Reported)


def claim(
    batches: list[list[R]],
    accounts: dict[uuid.UUID, SubAccount],
    now: datetime,
    refuse: Callable[[R, SubAccount | None, datetime], Rejection | None],
) -> tuple[list[Recorded], dict[str, tuple[int, R]]]:
    """Each batch's rejections (`refuse`) and repeats; the items left to insert, by external
    id, with the batch that claimed each first (an item sent twice in a group is the later
    one's duplicate)."""
    results = [Recorded() for _ in batches]
    claimed: dict[str, tuple[int, R]] = {}
    for n, (calls, result) in enumerate(zip(batches, results, strict=True)):
        for call in calls:
            account = accounts.get(call.sub_account_id) if call.sub_account_id else None
            refused = refuse(call, account, now)
            if refused is not None:
                result.rejected.append((call.external_id, refused))
            elif call.external_id in claimed:
                result.duplicates += 1
            else:
                claimed[call.external_id] = (n, call)
    return results, claimed


def accept(
    results: list[Recorded], claimed: dict[str, tuple[int, R]], new_ids: Collection[str]
) -> list[list[R]]:
    """Counts each batch's new items and its duplicates of stored ones; the batches' new
    items (batches with none left out)."""
    new_calls: list[list[R]] = [[] for _ in results]
    for external_id, (n, call) in claimed.items():
        if external_id in new_ids:
            new_calls[n].append(call)
        else:
            results[n].duplicates += 1
    for result, calls in zip(results, new_calls, strict=True):
        result.accepted = len(calls)
    return [calls for calls in new_calls if calls]


def _billed_to(
    call: ReportedCall, accounts: dict[uuid.UUID, SubAccount], primary: SubAccount
) -> tuple[uuid.UUID, uuid.UUID]:
    """The sub-account that made an accepted call, and the one whose balance pays for it."""
    caller = accounts[call.sub_account_id]  # type: ignore[index]
    return caller.id, funding_account(caller, primary.id)


def _movements(agency_id: uuid.UUID, billed: BatchBill) -> list[Movement]:
    """A batch's own ledger entries, under one reference, as if it had run alone."""
    reference = f"usage:{uuid.uuid4()}"
    return [
        Movement(agency_id, account_id, tier, -seconds, LedgerKind.USAGE, reference)
        for (account_id, tier), seconds in billed.debits.items()
        if seconds
    ]


def _period_uses(
    batch: usage.BatchContext, billed: list[BilledInTurn], now: datetime
) -> tuple[list[list[SubAccount]], list[PeriodUse]]:
    """The sub-accounts each batch touched, and each batch's use of this period."""
    agency, primary, accounts = batch.agency, batch.primary, batch.accounts
    touched = [
        [primary if s == primary.id else accounts[s] for s in sorted(b.bill.touched())]
        for b in billed
    ]
    uses = [
        period_use(b.bill.rollups, t, agency, now) for b, t in zip(billed, touched, strict=True)
    ]
    return touched, uses


def _announce(
    uow: UnitOfWork,
    batch: usage.BatchContext,
    billed: list[BilledInTurn],
    touched: list[list[SubAccount]],
    uses: list[PeriodUse],
    current: tuple[dict[uuid.UUID, tuple[int, int]], int],
) -> None:
    """Publishes each batch's events with the figures right after it: those of the
    sub-accounts it touched, and the agency's (`current`: the period counters after the
    whole group)."""
    figures = use_after_each(uses, *current)
    for (period, agency_period), one, sub_accounts in zip(figures, billed, touched, strict=True):
        for sub_account in sub_accounts:
            seconds, spent = period[sub_account.id]
            snapshot = UsageSnapshot(
                sub_account,
                _balances_of(sub_account, one.balances_after),
                spent,
                seconds,
                _last_call(one.bill, sub_account),
            )
            uow.publish(usage_event(snapshot, EventKind.USAGE_UPDATED))
        totals = AgencyTotals(agency_period, batch.active_sub_accounts)
        uow.publish(totals_event(batch.agency.id, totals))


def _balances_of(
    sub_account: SubAccount, balances: dict[tuple[uuid.UUID, Tier], int]
) -> tuple[Balance, ...]:
    return tuple(Balance(tier, balances.get((sub_account.id, tier), 0)) for tier in TIERS)


def _last_call(billed: BatchBill, sub_account: SubAccount) -> LastCall | None:
    latest = billed.last_calls.get(sub_account.id)
    if latest is None:
        return None
    call, overage = latest
    return LastCall(
        call.external_id,
        call.started_at,
        call.duration_seconds,
        call.tier,
        call.direction,
        call.status,
        overage,
    )


def message_for(code: Rejection) -> str:
    return REJECTION_MESSAGES[code]
