"""Usage ingestion: the platform reports calls in batches; each batch bills in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from domain.agency import SubAccount
from domain.errors import DomainError, ErrorCode
from domain.events import EventKind, totals_event, usage_event
from domain.ledger import Balance, LedgerKind, Movement
from domain.live import AgencyTotals, LastCall, UsageSnapshot, period_use
from domain.money import Tier
from domain.usage import (
    MAX_BATCH,
    REJECTION_MESSAGES,
    BatchBill,
    Rejection,
    ReportedCall,
    bill,
    funding_account,
    rejection,
)
from persistence import ledger, live, usage
from persistence.unit_of_work import UnitOfWork
from resolvers.api_keys import INGEST_SCOPE
from resolvers.context import RequestContext


@dataclass
class Recorded:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[str, Rejection]] = field(default_factory=list)


async def record_calls(ctx: RequestContext, calls: list[ReportedCall]) -> Recorded:
    """Idempotent on externalId; a failure half-way leaves nothing half-billed."""
    key = await ctx.require_api_key(INGEST_SCOPE)
    if len(calls) > MAX_BATCH:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"Send at most {MAX_BATCH} calls per batch.", ("calls",)
        )
    services = ctx.services
    now = services.clock()

    async def bill_batch(uow: UnitOfWork) -> Recorded:
        result = Recorded()  # built afresh if the transaction runs again
        ids = sorted({c.sub_account_id for c in calls if c.sub_account_id is not None})
        batch = await usage.batch_context(uow.conn, key.agency_id, ids)
        accounts, primary, agency = batch.accounts, batch.primary, batch.agency
        candidates: dict[str, ReportedCall] = {}
        for call in calls:
            refused = rejection(
                call, accounts.get(call.sub_account_id) if call.sub_account_id else None, now
            )
            if refused is not None:
                result.rejected.append((call.external_id, refused))
            elif call.external_id in candidates:
                result.duplicates += 1  # the same call twice in one batch
            else:
                candidates[call.external_id] = call
        new_ids = await usage.insert_new_calls(
            uow.conn, key.agency_id, list(candidates.values()), now
        )
        result.duplicates += len(candidates) - len(new_ids)
        new_calls = [c for external_id, c in candidates.items() if external_id in new_ids]
        result.accepted = len(new_calls)
        if not new_calls:
            return result
        funders = {
            funding_account(accounts[c.sub_account_id], primary.id)  # type: ignore[index]
            for c in new_calls
        }
        callers = {c.sub_account_id for c in new_calls if c.sub_account_id is not None}
        # Locked: the balances debited, and those the events report (exact as of commit).
        balances = await ledger.balances_for_update(uow.conn, funders | callers)
        billed = bill(new_calls, accounts, primary.id, balances, services.prices)
        reference = f"usage:{uuid.uuid4()}"
        movements = [
            Movement(key.agency_id, account_id, tier, -seconds, LedgerKind.USAGE, reference)
            for (account_id, tier), seconds in billed.debits.items()
            if seconds
        ]
        if movements:
            await ledger.apply_locked(uow.conn, movements, now)
        await usage.add_to_rollups(uow.conn, key.agency_id, billed.rollups)
        touched = [
            primary if sub_account_id == primary.id else accounts[sub_account_id]
            for sub_account_id in sorted(callers | funders)
        ]
        this_period, agency_seconds = await live.add_period_use(
            uow.conn, agency.id, period_use(billed.rollups, touched, agency, now)
        )
        for sub_account in touched:
            seconds, spent = this_period[sub_account.id]
            snapshot = UsageSnapshot(
                sub_account,
                _balances_after(sub_account, balances, billed),
                spent,
                seconds,
                _last_call(billed, sub_account),
            )
            uow.publish(usage_event(snapshot, EventKind.USAGE_UPDATED))
        totals = AgencyTotals(agency_seconds, batch.active_sub_accounts)
        uow.publish(totals_event(agency.id, totals))
        return result

    # Not audited: the platform's usage reports are the call records themselves.
    return await services.transact(bill_batch, audited=False)


def _balances_after(
    sub_account: SubAccount, before: dict[tuple[uuid.UUID, Tier], int], billed: BatchBill
) -> tuple[Balance, ...]:
    return tuple(
        Balance(
            tier,
            before.get((sub_account.id, tier), 0) - billed.debits.get((sub_account.id, tier), 0),
        )
        for tier in Tier
    )


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
