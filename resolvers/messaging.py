"""Messaging: the platform reports messages in batches (one transaction each, idempotent on
the external id), and owners and admins read figures for any range of local dates and set a
sub-account's monthly volume limit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from uuid import UUID

from domain import messaging as rules
from domain import sub_account as sub_account_rules
from domain.agency import SubAccount
from domain.audit import AuditKind, AuditNote
from domain.billing_cycle import period_started_at
from domain.errors import DomainError, ErrorCode
from domain.messaging import MessagingFigures, ReportedMessage
from domain.policy import Action, Target, require
from domain.reporting import local_range
from persistence import messaging as store
from persistence import metrics
from persistence.unit_of_work import UnitOfWork
from resolvers.api_keys import INGEST_SCOPE, ingesting_batch
from resolvers.context import RequestContext
from resolvers.sub_account import lock_sub_accounts
from resolvers.usage import Recorded, accept, claim
from resolvers.viewer import sub_account_target


async def record_messages(ctx: RequestContext, messages: list[ReportedMessage]) -> Recorded:
    """Each message accepted once; its conversation's opening, reply and rollups as exact as
    if every message had come in time order. The API key is checked in the same transaction,
    as `recordCalls` does."""
    if len(messages) > rules.MAX_BATCH:
        await ctx.require_api_key(INGEST_SCOPE)  # who asks is answered before what they sent
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"Send at most {rules.MAX_BATCH} messages per batch.",
            ("messages",),
        )
    digest, now = ctx.api_key_digest(), ctx.services.clock()

    async def record(uow: UnitOfWork) -> tuple[UUID, Recorded]:
        ids = sorted({m.sub_account_id for m in messages if m.sub_account_id})
        batch = await ingesting_batch(uow, digest, ids)
        agency_id, accounts = batch.agency.id, batch.accounts
        [result], claimed = claim([messages], accounts, now, rules.rejection)
        new_ids = await store.insert_new_messages(
            uow.conn, agency_id, [m for _, m in claimed.values()], now
        )
        accepted = [m for batch in accept([result], claimed, new_ids) for m in batch]
        if not accepted:
            return agency_id, result
        fresh = rules.conversations_after(accepted, {})
        created = await store.insert_new_conversations(uow.conn, agency_id, fresh.values())
        before = await store.conversations_for_update(uow.conn, fresh.keys() - created)
        after = rules.conversations_after(accepted, before)
        await store.save_conversations(
            uow.conn, [c for k, c in after.items() if k in before and before[k] != c]
        )
        await store.add_to_rollups(
            uow.conn, agency_id, rules.rollup_changes(accepted, before, after)
        )
        return agency_id, result

    # Not audited, as calls are not: the messages are their own record.
    agency_id, recorded = await ctx.services.transact(record, audited=False)
    ctx.api_key_agency_id = agency_id  # the request's log line names the agency
    metrics.count_ingested(
        "messages", recorded.accepted, recorded.duplicates, len(recorded.rejected)
    )
    return recorded


@dataclass(frozen=True)
class MessagingStats:
    figures: MessagingFigures
    volume_used: int
    volume_limit: int | None


async def messaging_stats(
    ctx: RequestContext, sub_account: SubAccount, first: date, last: date
) -> MessagingStats:
    session = await ctx.require_session()
    require(session.viewer, Action.VIEW_SUB_ACCOUNT, sub_account_target(sub_account))
    zone = session.agency.time_zone
    window = local_range(first, last, zone)
    now = ctx.services.clock()
    period_began = period_started_at(sub_account.subscription_start_date, now, zone)
    async with ctx.services.database.read() as conn:
        figures = await store.figures(conn, sub_account.id, window.start_utc, window.end_utc)
        this_period = await store.figures(conn, sub_account.id, period_began, now)
    return MessagingStats(figures, this_period.sent, await volume_limit(ctx, sub_account))


async def volume_limit(ctx: RequestContext, sub_account: SubAccount) -> int | None:
    """Batched: a list of sub-accounts asking for it reads the limits in one statement."""
    return await ctx.loaders.messaging_limit_by_sub_account.load(sub_account.id)


async def set_volume_limit(ctx: RequestContext, global_id: str, limit: int | None) -> SubAccount:
    viewer = await ctx.viewer()
    require(viewer, Action.ADMINISTER_SUB_ACCOUNTS, Target(viewer.agency_id))
    actor = await ctx.actor()
    limit = rules.check_volume_limit(limit)

    async def store_limit(uow: UnitOfWork) -> SubAccount:
        [sub_account] = await lock_sub_accounts(uow, viewer, (global_id, "subAccountId"))
        await store.set_monthly_limit(uow.conn, sub_account.id, limit)
        summary = (
            f"set the messaging limit of {sub_account.name} to {limit} a month"
            if limit is not None
            else f"removed the messaging limit of {sub_account.name}"
        )
        uow.audit(
            actor,
            AuditNote(
                AuditKind.SUBACCOUNT_UPDATED, summary, sub_account_rules.subject(sub_account)
            ),
        )
        return sub_account

    return await ctx.services.transact(store_limit)
