"""Signing up an agency, signing in and out."""

from __future__ import annotations

import math
from dataclasses import dataclass

from domain import agency as rules
from domain.agency import Agency, SubAccountKind, User
from domain.audit import Actor, AuditKind, AuditNote, Subject
from domain.errors import DomainError, ErrorCode
from domain.identity import normalize_email
from domain.ledger import LedgerKind, Movement
from domain.policy import Role
from persistence import agencies, jobs, ledger, users
from persistence.errors import UniqueViolation
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext


@dataclass(frozen=True)
class SignedIn:
    user: User
    token: str


@dataclass(frozen=True)
class SignedUp:
    agency: Agency
    user: User
    token: str


def _email_taken(field: str) -> DomainError:
    return DomainError(ErrorCode.EMAIL_TAKEN, "That email is already in use.", (field,))


async def sign_up_agency(
    ctx: RequestContext, agency_name: str, owner_email: str, password: str, plan_name: str | None
) -> SignedUp:
    """The agency, its plan, its owner and its Primary, with the plan's first grant, at once."""
    services = ctx.services
    now = services.clock()
    signup = rules.sign_up(agency_name, owner_email, password, plan_name, now)
    password_hash = await services.passwords.hash(password)
    token = services.tokens.new()

    async def create(uow: UnitOfWork) -> tuple[Agency, User]:
        if await agencies.email_in_use(uow.conn, signup.owner_email):
            raise _email_taken("ownerEmail")
        agency = await agencies.add_agency(uow.conn, signup, now)
        primary = await agencies.add_sub_account(
            uow.conn,
            agency.id,
            SubAccountKind.PRIMARY,
            agency.name,
            signup.owner_email,
            now.date(),
            signup.plan.knowledge_pack_credits,
            now,
        )
        owner = await users.add_user(
            uow.conn,
            agency.id,
            signup.owner_email,
            password_hash,
            Role.AGENCY_OWNER,
            now,
            all_sub_accounts=True,
        )
        if signup.included_seconds:
            grant = Movement(
                agency.id,
                primary.id,
                signup.included_tier,
                signup.included_seconds,
                LedgerKind.PLAN_GRANT,
                f"plan:{agency.plan_name}:{signup.started_on}",
            )
            await ledger.apply(uow.conn, [grant], now)
            await jobs.record_grant(uow.conn, agency.id, signup.started_on, now)
        await users.add_session(
            uow.conn, owner.id, services.tokens.digest(token), now, now + services.session_ttl
        )
        uow.audit(
            Actor(agency.id, owner.email),
            AuditNote(
                AuditKind.AGENCY_SIGNED_UP,
                f"signed up {agency.name} on the {agency.plan_name} plan",
                Subject("Agency", agency.id),
            ),
        )
        return agency, owner

    try:
        agency, owner = await services.transact(create)
    except UniqueViolation:
        # Two sign-ups raced for one email; the unique constraint decided.
        raise _email_taken("ownerEmail") from None
    ctx.sign_in_as(token)
    return SignedUp(agency=agency, user=owner, token=token)


async def _throttle(ctx: RequestContext, email: str) -> None:
    """Brute force: every attempt counts, per email and per client, within a window."""
    services = ctx.services
    limits = services.login_limits
    keys = [(f"login:email:{email}", limits.per_email)]
    if ctx.client_host:
        keys.append((f"login:client:{ctx.client_host}", limits.per_client))
    now = services.clock().timestamp()
    for key, limit in keys:
        retry_after = await services.rate_limiter.hit(key, limit, limits.window_seconds, now)
        if retry_after is not None:
            raise DomainError(
                ErrorCode.TOO_MANY_ATTEMPTS,
                f"Too many sign-in attempts; try again in {math.ceil(retry_after)} seconds.",
            )


async def login(ctx: RequestContext, email: str, password: str) -> SignedIn:
    services = ctx.services
    invalid = DomainError(ErrorCode.INVALID_CREDENTIALS, "Wrong email or password.")
    try:
        email = normalize_email(email)
    except DomainError:
        raise invalid from None
    await _throttle(ctx, email)
    async with services.database.read() as conn:
        found = await users.user_with_password(conn, email)
    user, password_hash = found if found is not None else (None, None)
    ok = await services.passwords.verify(password_hash, password)
    now = services.clock()
    if user is None:
        raise invalid
    token = services.tokens.new()

    async def sign_in(uow: UnitOfWork) -> None:
        kind = AuditKind.USER_SIGNED_IN if ok else AuditKind.SIGN_IN_FAILED
        summary = f"{user.email} signed in" if ok else f"a sign-in as {user.email} failed"
        uow.audit(
            Actor(user.agency_id, user.email),
            AuditNote(kind, summary, Subject("User", user.id)),
        )
        if ok:
            await users.add_session(
                uow.conn, user.id, services.tokens.digest(token), now, now + services.session_ttl
            )

    await services.transact(sign_in)
    if not ok:
        raise invalid
    await services.rate_limiter.reset(f"login:email:{email}")
    ctx.sign_in_as(token)
    return SignedIn(user=user, token=token)


async def logout(ctx: RequestContext) -> bool:
    """Revokes the token this request came with; true when a live session was ended."""
    await ctx.require_session()
    token = ctx.token
    assert token is not None
    digest = ctx.services.tokens.digest(token)

    session = await ctx.require_session()
    actor = Actor(session.agency.id, session.user.email)

    async def revoke(uow: UnitOfWork) -> bool:
        ended = await users.revoke_session(uow.conn, digest, ctx.services.clock())
        summary = f"{session.user.email} signed out"
        uow.audit(
            actor, AuditNote(AuditKind.USER_SIGNED_OUT, summary, Subject("User", session.user.id))
        )
        return ended

    return await ctx.services.transact(revoke)
