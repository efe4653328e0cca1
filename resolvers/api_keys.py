"""API keys for the platform's ingestion, created and revoked by the agency owner."""

from __future__ import annotations

from uuid import UUID

from domain.api_key import ApiKey
from domain.audit import Actor, AuditKind, AuditNote, Subject
from domain.identity import check_name
from domain.paging import Page
from domain.policy import Action, Target, require
from persistence import api_keys as store
from persistence import usage
from persistence.queries.team import api_keys_page
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext, Services, usable_api_key
from resolvers.ids import decode, not_found
from resolvers.paging import page_size
from resolvers.security import API_KEY_PREFIX

INGEST_SCOPE = "ingest"


async def ingesting_batch(
    uow: UnitOfWork, digest: bytes, sub_account_ids: list[UUID]
) -> usage.BatchContext:
    """What billing a batch sent with the ingestion key of secret digest `digest` needs first
    (`usage.batch_context`), read with the key in `uow`'s own transaction, in one statement: a
    key revoked before that bills nothing in it. Refused if the key is revoked, unknown or
    without the ingest scope."""
    found = await usage.batch_context(uow.conn, digest, sub_account_ids)
    usable_api_key(None if found is None else found[0], INGEST_SCOPE)
    assert found is not None
    return found[1]


async def issue_api_key(
    services: Services,
    agency_id: UUID,
    name: str,
    created_by: UUID | None,
    by_email: str | None = None,
) -> tuple[ApiKey, str]:
    """Also used by the command line (no user: `created_by` and `by_email` are None). The
    secret is shown once; only its HMAC is kept."""
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
        uow.audit(
            Actor(agency_id, by_email),
            AuditNote(
                AuditKind.API_KEY_CREATED,
                f"created the API key {name!r}" + ("" if by_email else " from the command line"),
                Subject("ApiKey", key.id),
            ),
        )
        return key

    return await services.transact(add), secret


async def create_api_key(ctx: RequestContext, name: str) -> tuple[ApiKey, str]:
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_API_KEYS, Target(viewer.agency_id))
    actor = await ctx.actor()
    return await issue_api_key(ctx.services, viewer.agency_id, name, viewer.user_id, actor.email)


async def revoke_api_key(ctx: RequestContext, global_id: str) -> UUID:
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_API_KEYS, Target(viewer.agency_id))
    key_id = decode(global_id, "ApiKey", "id")
    now = ctx.services.clock()
    actor = await ctx.actor()

    async def revoke(uow: UnitOfWork) -> None:
        name = await store.revoke_api_key(uow.conn, viewer.agency_id, key_id, now)
        if name is None:
            raise not_found("id", "API key")
        uow.audit(
            actor,
            AuditNote(
                AuditKind.API_KEY_REVOKED,
                f"revoked the API key {name!r}",
                Subject("ApiKey", key_id),
            ),
        )

    await ctx.services.transact(revoke)
    return key_id


async def api_keys(
    ctx: RequestContext, agency_id: UUID, first: int | None, after: str | None
) -> Page[ApiKey]:
    require(await ctx.viewer(), Action.MANAGE_API_KEYS, Target(agency_id))
    async with ctx.services.database.read() as conn:
        return await api_keys_page(conn, agency_id, page_size(first), after)
