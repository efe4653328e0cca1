"""API keys for the platform's ingestion, created and revoked by the agency owner."""

from __future__ import annotations

from uuid import UUID

from domain.events import AuditKind, audit_event
from domain.identity import check_name
from domain.policy import Action, Target, require
from persistence import api_keys as store
from persistence.api_keys import ApiKey
from persistence.queries.paging import Page
from persistence.queries.team import api_keys_page
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext, Services
from resolvers.ids import decode, not_found
from resolvers.paging import page_size
from resolvers.security import API_KEY_PREFIX

INGEST_SCOPE = "ingest"


async def issue_api_key(
    services: Services, agency_id: UUID, name: str, created_by: UUID | None
) -> tuple[ApiKey, str]:
    """Also used by the command line. The secret is shown once; only its HMAC is kept."""
    name = check_name(name, "name")
    secret = services.tokens.new(API_KEY_PREFIX)
    now = services.clock()

    async def add(uow: UnitOfWork) -> ApiKey:
        key = await store.add_api_key(
            uow.conn,
            agency_id,
            name,
            services.tokens.digest(secret),
            frozenset({INGEST_SCOPE}),
            created_by,
            now,
        )
        uow.publish(audit_event(agency_id, AuditKind.API_KEY_CREATED, now.isoformat(), name=name))
        return key

    return await services.transact(add), secret


async def create_api_key(ctx: RequestContext, name: str) -> tuple[ApiKey, str]:
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_API_KEYS, Target(viewer.agency_id))
    return await issue_api_key(ctx.services, viewer.agency_id, name, viewer.user_id)


async def revoke_api_key(ctx: RequestContext, global_id: str) -> UUID:
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_API_KEYS, Target(viewer.agency_id))
    key_id = decode(global_id, "ApiKey", "id")
    now = ctx.services.clock()

    async def revoke(uow: UnitOfWork) -> None:
        if not await store.revoke_api_key(uow.conn, viewer.agency_id, key_id, now):
            raise not_found("id", "API key")
        uow.publish(audit_event(viewer.agency_id, AuditKind.API_KEY_REVOKED, now.isoformat()))

    await ctx.services.transact(revoke)
    return key_id


async def api_keys(
    ctx: RequestContext, agency_id: UUID, first: int | None, after: str | None
) -> Page[ApiKey]:
    require(await ctx.viewer(), Action.MANAGE_API_KEYS, Target(agency_id))
    async with ctx.services.database.read() as conn:
        return await api_keys_page(conn, agency_id, page_size(first), after)
