"""The agency's own settings."""

from __future__ import annotations

from dataclasses import replace

from domain.agency import Agency
from domain.audit import AuditKind, AuditNote, Subject
from domain.identity import check_name, check_time_zone
from domain.policy import Action, Target, require
from persistence import agencies
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext


async def update_agency(ctx: RequestContext, name: str | None, time_zone: str | None) -> Agency:
    """Rename the agency or set the time zone its reports cut days in (owner and admins)."""
    session = await ctx.require_session()
    require(session.viewer, Action.MANAGE_AGENCY, Target(session.agency.id))
    values: dict[str, str] = {}
    if name is not None:
        values["name"] = check_name(name, "name")
    if time_zone is not None:
        values["time_zone"] = check_time_zone(time_zone, "timeZone")
    if not values:
        return session.agency

    actor = await ctx.actor()

    async def update(uow: UnitOfWork) -> Agency:
        agency = await agencies.agency_for_update(uow.conn, session.agency.id)
        assert agency is not None  # the session's own agency
        await agencies.update_agency(uow.conn, agency.id, **values)
        changes = ", ".join(f"{k.replace('_', ' ')} to {v}" for k, v in values.items())
        uow.audit(
            actor,
            AuditNote(
                AuditKind.AGENCY_UPDATED,
                f"set the agency's {changes}",
                Subject("Agency", agency.id),
            ),
        )
        return replace(agency, **values)  # type: ignore[arg-type]

    updated = await ctx.services.transact(update)
    ctx.forget_session()  # the next read in this request sees the new settings
    return updated
