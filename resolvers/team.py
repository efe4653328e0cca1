"""The Users tab: invitations, role changes, removal, ownership transfer, team lists."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode
from uuid import UUID

from domain import invitation as rules
from domain import team
from domain.agency import SubAccount, User
from domain.audit import Actor, AuditKind, AuditNote, Subject
from domain.errors import DomainError, ErrorCode
from domain.events import access_changed
from domain.identity import check_password
from domain.invitation import Access, Invitation
from domain.paging import Page
from domain.policy import Action, Role, Target, can, require
from persistence import agencies, users
from persistence import team as store
from persistence.errors import UniqueViolation
from persistence.mail import compose
from persistence.queries import team as lists
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.ids import decode, decode_many, not_found
from resolvers.paging import page_size
from resolvers.viewer import sub_account_target as target_of

INVITATION_PREFIX = "ahi_"


@dataclass(frozen=True)
class Sent:
    invitation: Invitation
    mail_error: DomainError | None


async def _check_grants(uow: UnitOfWork, agency_id: UUID, access: Access) -> None:
    found = await store.sub_accounts_in_agency(uow.conn, agency_id, access.sub_account_ids)
    if found != set(access.sub_account_ids):
        raise not_found("subAccountIds", "sub-account")


async def _send_invitation_mail(ctx: RequestContext, invitation: Invitation, secret: str) -> Sent:
    """Sent after commit: a failed send keeps the invitation and says to resend."""
    services = ctx.services
    link = f"{services.public_url.rstrip('/')}/accept-invitation?{urlencode({'token': secret})}"
    session = await ctx.require_session()
    message = compose(
        services.mail_from,
        invitation.email,
        f"{session.agency.name} invited you to agencyhub",
        f"{session.user.email} invited you to join {session.agency.name} as "
        f"{invitation.role.value.replace('_', ' ').lower()}.\n\n"
        f"Accept the invitation and choose your password:\n{link}\n\n"
        f"The link works once and until {invitation.expires_at:%Y-%m-%d %H:%M} UTC.\n",
    )
    try:
        await services.mailer.send(message)
    except Exception:
        return Sent(
            invitation,
            DomainError(
                ErrorCode.MAIL_NOT_SENT,
                "The invitation is saved but its email could not be sent; try resendInvitation.",
            ),
        )
    return Sent(invitation, None)


async def invite_user(
    ctx: RequestContext,
    email: str,
    role: Role,
    all_sub_accounts: bool | None,
    sub_account_ids: list[str] | None,
) -> Sent:
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_USERS, Target(viewer.agency_id))
    services = ctx.services
    invitee = rules.invitee_email(email)
    access = rules.access_for(
        role, all_sub_accounts, decode_many(sub_account_ids, "SubAccount", "subAccountIds")
    )
    secret = services.tokens.new(INVITATION_PREFIX)
    now = services.clock()
    actor = await ctx.actor()

    async def invite(uow: UnitOfWork) -> Invitation:
        if await agencies.email_in_use(uow.conn, invitee) or await store.pending_invitation_exists(
            uow.conn, invitee, now
        ):
            raise DomainError(
                ErrorCode.EMAIL_TAKEN, "That email is already in use or invited.", ("email",)
            )
        await _check_grants(uow, viewer.agency_id, access)
        invitation = await store.add_invitation(
            uow.conn,
            viewer.agency_id,
            invitee,
            access,
            viewer.user_id,
            services.tokens.digest(secret),
            now,
            now + rules.INVITATION_VALIDITY,
        )
        uow.audit(
            actor,
            AuditNote(
                AuditKind.USER_INVITED,
                f"invited {invitee} as {access.role.value}",
                Subject("Invitation", invitation.id),
            ),
        )
        return invitation

    invitation = await services.transact(invite)
    return await _send_invitation_mail(ctx, invitation, secret)  # after commit, never twice


async def _pending_invitation(uow: UnitOfWork, agency_id: UUID, global_id: str) -> Invitation:
    invitation = await store.invitation_by_id(
        uow.conn, decode(global_id, "Invitation", "id"), lock=True
    )
    if invitation is None or invitation.agency_id != agency_id:
        raise not_found("id", "invitation")
    rules.check_resendable(invitation)
    return invitation


async def resend_invitation(ctx: RequestContext, global_id: str) -> Sent:
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_USERS, Target(viewer.agency_id))
    services = ctx.services
    secret = services.tokens.new(INVITATION_PREFIX)
    now = services.clock()
    expires_at = now + rules.INVITATION_VALIDITY

    actor = await ctx.actor()

    async def renew(uow: UnitOfWork) -> Invitation:
        invitation = await _pending_invitation(uow, viewer.agency_id, global_id)
        await store.renew_invitation(
            uow.conn, invitation.id, services.tokens.digest(secret), now, expires_at
        )
        uow.audit(
            actor,
            AuditNote(
                AuditKind.INVITATION_RESENT,
                f"sent a new invitation link to {invitation.email}",
                Subject("Invitation", invitation.id),
            ),
        )
        return Invitation(**{**invitation.__dict__, "expires_at": expires_at})

    renewed = await services.transact(renew)
    return await _send_invitation_mail(ctx, renewed, secret)


async def revoke_invitation(ctx: RequestContext, global_id: str) -> Invitation:
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_USERS, Target(viewer.agency_id))
    now = ctx.services.clock()
    actor = await ctx.actor()

    async def revoke(uow: UnitOfWork) -> Invitation:
        invitation = await _pending_invitation(uow, viewer.agency_id, global_id)
        await store.close_invitation(uow.conn, invitation.id, now, accepted=False)
        uow.audit(
            actor,
            AuditNote(
                AuditKind.INVITATION_REVOKED,
                f"revoked the invitation of {invitation.email}",
                Subject("Invitation", invitation.id),
            ),
        )
        return Invitation(**{**invitation.__dict__, "revoked_at": now})

    return await ctx.services.transact(revoke)


async def accept_invitation(ctx: RequestContext, secret: str, password: str) -> tuple[User, str]:
    """Sets the password, creates the user with the invited access, and signs them in."""
    services = ctx.services
    now = services.clock()
    async with services.database.read() as conn:
        found = await store.invitation_by_secret(conn, services.tokens.digest(secret))
    if found is None:
        raise DomainError(ErrorCode.INVITATION_NOT_FOUND, "This invitation link is not valid.")
    invitation, superseded = found
    rules.check_acceptable(invitation, superseded, now)
    check_password(password, invitation.email)
    password_hash = await services.passwords.hash(password)
    token = services.tokens.new()

    async def accept(uow: UnitOfWork) -> User:
        if not await store.close_invitation(uow.conn, invitation.id, now, accepted=True):
            raise DomainError(ErrorCode.INVITATION_USED, "This invitation was already used.")
        access = invitation.access
        live = await store.sub_accounts_in_agency(
            uow.conn, invitation.agency_id, access.sub_account_ids
        )
        user = await users.add_user(
            uow.conn,
            invitation.agency_id,
            invitation.email,
            password_hash,
            access.role,
            now,
            all_sub_accounts=access.all_sub_accounts,
        )
        await store.set_grants(uow.conn, user.id, live)  # removed meanwhile: dropped
        await users.add_session(
            uow.conn, user.id, services.tokens.digest(token), now, now + services.session_ttl
        )
        uow.audit(
            Actor(invitation.agency_id, invitation.email),
            AuditNote(
                AuditKind.INVITATION_ACCEPTED,
                f"{invitation.email} accepted the invitation and joined as {access.role.value}",
                Subject("User", user.id),
            ),
        )
        return user

    try:
        user = await services.transact(accept)
    except UniqueViolation:
        raise DomainError(ErrorCode.EMAIL_TAKEN, "That email is already in use.") from None
    ctx.sign_in_as(token)
    return user, token


async def _team_member(
    uow: UnitOfWork, agency_id: UUID, global_id: str, field: str, *, to_delete: bool = False
) -> User:
    user = await store.user_in_agency(
        uow.conn, agency_id, decode(global_id, "User", field), lock=True, to_delete=to_delete
    )
    if user is None:
        raise not_found(field, "user")
    return user


async def change_user_role(
    ctx: RequestContext,
    global_id: str,
    role: Role,
    all_sub_accounts: bool | None,
    sub_account_ids: list[str] | None,
) -> User:
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_USERS, Target(viewer.agency_id))
    access = rules.access_for(
        role, all_sub_accounts, decode_many(sub_account_ids, "SubAccount", "subAccountIds")
    )
    actor = await ctx.actor()

    async def change(uow: UnitOfWork) -> User:
        target = await _team_member(uow, viewer.agency_id, global_id, "userId")
        team.check_role_change(target)
        await _check_grants(uow, viewer.agency_id, access)
        await store.set_access(uow.conn, target.id, access)
        uow.publish(access_changed(target.id))
        uow.audit(
            actor,
            AuditNote(
                AuditKind.USER_ROLE_CHANGED,
                f"changed the role of {target.email} from {target.role.value} to {role.value}",
                Subject("User", target.id),
            ),
        )
        return User(target.id, target.agency_id, target.email, access.role, access.all_sub_accounts)

    return await ctx.services.transact(change)


async def remove_user(ctx: RequestContext, global_id: str) -> User:
    viewer = await ctx.viewer()
    require(viewer, Action.MANAGE_USERS, Target(viewer.agency_id))
    actor = await ctx.actor()

    async def remove(uow: UnitOfWork) -> User:
        target = await _team_member(uow, viewer.agency_id, global_id, "userId", to_delete=True)
        team.check_removal(viewer.user_id, target)
        await store.delete_user(uow.conn, target.id)
        uow.publish(access_changed(target.id))
        uow.audit(
            actor,
            AuditNote(
                AuditKind.USER_REMOVED,
                f"removed {target.email} from the team",
                Subject("User", target.id),
            ),
        )
        return target

    return await ctx.services.transact(remove)


async def transfer_ownership(ctx: RequestContext, global_id: str) -> User:
    viewer = await ctx.viewer()
    require(viewer, Action.TRANSFER_OWNERSHIP, Target(viewer.agency_id))
    actor = await ctx.actor()

    async def hand_over(uow: UnitOfWork) -> User:
        target = await _team_member(uow, viewer.agency_id, global_id, "toUserId")
        team.check_ownership_transfer(viewer.user_id, target)
        await store.swap_owner(uow.conn, viewer.agency_id, viewer.user_id, target.id)
        uow.publish(access_changed(viewer.user_id))
        uow.publish(access_changed(target.id))
        uow.audit(
            actor,
            AuditNote(
                AuditKind.OWNERSHIP_TRANSFERRED,
                f"handed the agency's ownership to {target.email}",
                Subject("User", target.id),
            ),
        )
        return User(target.id, target.agency_id, target.email, Role.AGENCY_OWNER, True)

    return await ctx.services.transact(hand_over)


async def users_page(
    ctx: RequestContext, agency_id: UUID, first: int | None, after: str | None
) -> Page[User]:
    require(await ctx.viewer(), Action.VIEW_USERS, Target(agency_id))
    async with ctx.services.database.read() as conn:
        return await lists.users_page(conn, agency_id, page_size(first), after)


async def invitations_page(
    ctx: RequestContext,
    agency_id: UUID,
    first: int | None,
    after: str | None,
    pending_only: bool,
) -> Page[Invitation]:
    require(await ctx.viewer(), Action.VIEW_USERS, Target(agency_id))
    async with ctx.services.database.read() as conn:
        return await lists.invitations_page(
            conn, agency_id, page_size(first), after, pending_only, ctx.services.clock()
        )


async def granted_sub_accounts(ctx: RequestContext, user: User) -> list[SubAccount]:
    """A user's explicit grants, as far as the viewer may see them."""
    viewer = await ctx.viewer()
    if user.id != viewer.user_id:
        require(viewer, Action.VIEW_USERS, Target(user.agency_id))
    ids = await ctx.loaders.grants_by_user.load(user.id)
    found = await ctx.loaders.sub_account_by_id.load_many(ids)
    return [
        s for s in found if s is not None and can(viewer, Action.VIEW_SUB_ACCOUNT, target_of(s))
    ]
