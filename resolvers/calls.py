"""The per-call list behind every report figure: a sub-account's calls over an inclusive range
of local dates, newest first, each with what it cost. Its costs add up exactly to the report's
`spent` for the same range, since ingestion rounds each call once and the rollups add those."""

from __future__ import annotations

from datetime import date

from domain.agency import SubAccount
from domain.paging import Page
from domain.policy import Action, require
from domain.reporting import local_range
from domain.usage import RecordedCall
from persistence.queries import calls as queries
from persistence.queries.reports import usage_by_sub_account
from resolvers.context import RequestContext
from resolvers.paging import page_size
from resolvers.viewer import sub_account_target


async def calls_page(
    ctx: RequestContext,
    sub_account: SubAccount,
    first_day: date,
    last_day: date,
    first: int | None,
    after: str | None,
) -> tuple[Page[RecordedCall], int]:
    """A page of the range's calls and how many there are in all (from the rollups, as the
    report counts them: not a count of the call rows)."""
    session = await ctx.require_session()
    require(session.viewer, Action.VIEW_SUB_ACCOUNT, sub_account_target(sub_account))
    size = page_size(first)
    window = local_range(first_day, last_day, session.agency.time_zone)
    async with ctx.services.database.read() as conn:
        page = await queries.calls_page(
            conn, sub_account.id, window.start_utc, window.end_utc, size, after
        )
        totals = await usage_by_sub_account(
            conn, sub_account.agency_id, window.start_utc, window.end_utc, sub_account.id
        )
    found = totals.get(sub_account.id)
    return page, found.calls if found is not None else 0
