"""The agency's own settings."""

from __future__ import annotations

from domain.agency import Agency, edit_agency
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
    name = None if name is None else check_name(name, "name")
    time_zone = None if time_zone is None else check_time_zone(time_zone, "timeZone")
    if name is None and time_zone is None:
        return session.agency
    actor = await ctx.actor()

    async def update(uow: UnitOfWork) -> Agency:
        agency = await agencies.agency_for_update(uow.conn, session.agency.id)
        assert agency is not None  # the session's own agency
        edited = edit_agency(agency, name, time_zone)
        await agencies.save_agency(uow.conn, edited)
        changes = [
            f"{label} to {value}"
            for label, value, before in (
                ("name", edited.name, agency.name),
                ("time zone", edited.time_zone, agency.time_zone),
            )
            if value != before
        ]
        if not changes:
            uow.nothing_changed()
            return edited
        uow.audit(
            actor,
            AuditNote(
                AuditKind.AGENCY_UPDATED,
                f"set the agency's {', '.join(changes)}",
                Subject("Agency", agency.id),
            ),
        )
        return edited

    updated = await ctx.services.transact(update)
    ctx.forget_session()  # the next read in this request sees the new settings
    return updated
