"""The billing summary of a date range (inclusive, agency-local) and its adjustments.

A fixed number of statements whatever the agency's size: the range's holdings with their
lines, usage per sub-account from the rollups (the reports' exact-in-every-zone reading),
the adjustments dated in the range, and the sub-accounts that have a group; the arithmetic
is domain/billing.py's."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from uuid import UUID

from domain import billing as rules
from domain.agency import Agency, SubAccount
from domain.billing import AdjustmentKind, BillingAdjustment, BillingSummary
from domain.policy import Action, Target, can, require
from domain.reporting import local_range
from persistence import billing as store
from persistence.queries import billing as queries
from persistence.queries.loaders import sub_accounts_by_id
from persistence.queries.reports import usage_by_sub_account
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from resolvers.ids import decode, not_found


@dataclass(frozen=True)
class Summary:
    """The figures, and the sub-accounts that have a group (removed and merged ones too)."""

    summary: BillingSummary
    sub_accounts: dict[UUID, SubAccount]

    def csv(self) -> str:
        labels = {
            key: (to_global_id("SubAccount", key), account.name)
            for key, account in self.sub_accounts.items()
        }
        return rules.summary_csv(self.summary, labels)


async def billing_summary(ctx: RequestContext, agency: Agency, first: date, last: date) -> Summary:
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_BILLING, Target(agency.id))
    rules.check_range(first, last)
    window = local_range(first, last, agency.time_zone)
    async with ctx.services.database.read() as conn:
        lines, holdings = await queries.holdings_in(conn, agency.id, first, last)
        usage = await usage_by_sub_account(conn, agency.id, window.start_utc, window.end_utc)
        adjustments = await queries.adjustments_in(conn, agency.id, first, last)
        # minutes used: seconds on the clock (a call that failed at once used none)
        usage_micros = {key: t.cost_micros for key, t in usage.items() if t.seconds}
        keys = (
            {h.sub_account_id for h in holdings if h.sub_account_id is not None}
            | set(usage_micros)
            | {a.sub_account_id for a in adjustments}
        )
        found = await sub_accounts_by_id(conn, sorted(keys)) if keys else []
    accounts = {account.id: account for account in found if account is not None}
    summary = rules.summarize(
        first,
        last,
        lines,
        holdings,
        usage_micros,
        adjustments,
        rules.group_order([(key, account.name) for key, account in accounts.items()]),
    )
    return Summary(summary, accounts)


async def add_billing_adjustment(
    ctx: RequestContext,
    sub_account_global_id: str,
    kind: AdjustmentKind,
    amount: Decimal,
    note: str,
    dated: date,
) -> BillingAdjustment:
    """Any sub-account of the agency, whatever its status: a removed or merged one may still
    be owed a credit on a range it was billed for."""
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_BILLING, Target(viewer.agency_id))
    actor = await ctx.actor()
    sub_account_id = decode(sub_account_global_id, "SubAccount", "subAccountId")
    amount_micros, text = rules.check_adjustment(amount, note)
    now = ctx.services.clock()

    async def add(uow: UnitOfWork) -> BillingAdjustment:
        [account] = await sub_accounts_by_id(uow.conn, [sub_account_id])
        if account is None or account.agency_id != viewer.agency_id:
            raise not_found("subAccountId", "sub-account")
        adjustment = BillingAdjustment(
            uuid.uuid4(), viewer.agency_id, account.id, kind, amount_micros, text, dated, now
        )
        await store.add_adjustment(uow.conn, adjustment)
        uow.audit(actor, rules.adjustment_added(adjustment, account.name))
        return adjustment

    return await ctx.services.transact(add)


async def adjustment_node(ctx: RequestContext, key: UUID) -> BillingAdjustment | None:
    viewer = await ctx.viewer()
    if not can(viewer, Action.MANAGE_BILLING, Target(viewer.agency_id)):
        return None
    async with ctx.services.database.read() as conn:
        found = await store.adjustment_by_id(conn, key)
    return found if found is not None and found.agency_id == viewer.agency_id else None
