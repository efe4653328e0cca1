"""Spending caps: `setSpendingCap`, and the job that caps and lifts (`apply-spending-caps`).

Capping and lifting both run under the sub-account's row lock, with its period's spending
read in that transaction: `setSpendingCap` itself (a cap already reached caps at once, a
higher one or none lifts), the job for the checks ingestion asked for (a batch's spending
reached the cap), and the job for capped sub-accounts whose billing period turned over.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from domain import spending_cap as rules
from domain.agency import SubAccount
from domain.alerts import Alert, AlertKind
from domain.audit import Actor
from domain.sub_account import check_changeable
from persistence import activities, agencies, live, spending_caps
from persistence.queries.loaders import agencies_by_id
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext, Services
from resolvers.sub_account import _administer, lock_sub_accounts

JOB = spending_caps.JOB


async def set_spending_cap(
    ctx: RequestContext, sub_account_id: str, amount: Decimal | None
) -> SubAccount:
    """Owners and agency admins; null removes the cap."""
    viewer = await _administer(ctx)
    actor = await ctx.actor()
    micros = None if amount is None else rules.to_micros(amount)

    async def store(uow: UnitOfWork) -> SubAccount:
        [sub_account] = await lock_sub_accounts(uow, viewer, (sub_account_id, "subAccountId"))
        if not sub_account.is_live:
            check_changeable(sub_account, "subAccountId")
        rules.check_amount(sub_account, micros)
        await spending_caps.save_cap(
            uow.conn, sub_account.agency_id, sub_account.id, micros, ctx.services.clock()
        )
        uow.audit(actor, rules.changed(sub_account, micros))
        return await _apply(uow, sub_account, micros, actor, ctx.services.clock())

    return await ctx.services.transact(store)


async def _apply(
    uow: UnitOfWork, sub_account: SubAccount, cap: int | None, actor: Actor, now: datetime
) -> SubAccount:
    """Under the sub-account's lock: cap it or lift its cap as its spending now says."""
    [agency] = await agencies_by_id(uow.conn, [sub_account.agency_id])
    assert agency is not None
    [snapshot] = await live.usage_snapshots(uow.conn, [sub_account], agency.time_zone, now)
    spent = snapshot.spent_this_period_micros
    reached = rules.reach(sub_account, cap, spent, now)
    if reached is not None:
        assert cap is not None
        await agencies.save_sub_account(uow.conn, reached.state)
        await activities.pause_for_cap(uow.conn, sub_account.id)
        uow.record(reached.events)
        uow.audit(actor, reached.note)
        await uow.raise_alert(
            Alert(
                sub_account.agency_id,
                sub_account.id,
                AlertKind.SPENDING_CAP_REACHED,
                now.astimezone(ZoneInfo(agency.time_zone)).date(),
                rules.alert_data(cap, spent),
            )
        )
        return reached.state
    lifted = rules.lift(sub_account, cap, spent)
    if lifted is not None:
        await agencies.save_sub_account(uow.conn, lifted.state)
        await activities.resume_after_cap(uow.conn, sub_account.id)
        uow.record(lifted.events)
        uow.audit(actor, lifted.note)
        return lifted.state
    return sub_account


async def apply_spending_caps(services: Services) -> int:
    """Cap what ingestion found over its cap, and lift the caps a new billing period freed.
    Returns how many sub-accounts changed."""
    async with services.database.read() as conn:
        asked = await spending_caps.checks(conn)
        held = await spending_caps.capped(conn)
    now = services.clock()
    work = [(agency_id, sub_account_id, True) for agency_id, sub_account_id in asked]
    for sub_account, zone in held:  # only those whose billing period turned since
        assert sub_account.capped_at is not None
        local = ZoneInfo(zone)
        capped_on = sub_account.capped_at.astimezone(local).date()
        if rules.period_turned(sub_account, now.astimezone(local).date(), capped_on):
            work.append((sub_account.agency_id, sub_account.id, False))
    changed = 0
    for agency_id, sub_account_id, is_check in work:

        async def apply(
            uow: UnitOfWork,
            agency_id: uuid.UUID = agency_id,
            sub_account_id: uuid.UUID = sub_account_id,
            is_check: bool = is_check,
        ) -> bool:
            found = await agencies.sub_accounts_for_update(uow.conn, agency_id, [sub_account_id])
            sub_account = found[sub_account_id]
            if is_check:
                await spending_caps.close_check(uow.conn, sub_account_id)
            [cap] = await spending_caps.caps_of(uow.conn, [sub_account_id])
            after = await _apply(uow, sub_account, cap, Actor(agency_id, None), services.clock())
            return after != sub_account

        changed += await services.transact(apply, audited=False)  # a job: its own notes
    return changed
