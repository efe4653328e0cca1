"""The Users tab: invitations, team lists, role changes, ownership and API keys."""

from __future__ import annotations

from datetime import datetime

import strawberry

from domain.agency import Agency as AgencyEntity
from domain.api_key import ApiKey as ApiKeyEntity
from domain.invitation import Invitation as InvitationEntity
from resolvers import api_keys, team
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.errors import UserError, with_user_errors
from schema.node import Node
from schema.paging import PageInfo, edges, page_info
from schema.user import LoginPayload, RoleEnum, User

Info = strawberry.Info[RequestContext, None]


@strawberry.type(name="Invitation")
class Invitation(Node):
    id: strawberry.ID
    email: str
    role: RoleEnum
    all_sub_accounts: bool
    created_at: datetime
    expires_at: datetime
    accepted: bool
    revoked: bool
    entity: strawberry.Private[InvitationEntity]

    @strawberry.field(description="Sub-accounts the invitation grants (when not all).")
    def sub_account_ids(self) -> list[strawberry.ID]:
        return [
            strawberry.ID(to_global_id("SubAccount", s))
            for s in sorted(self.entity.sub_account_ids)
        ]

    @classmethod
    def from_domain(cls, invitation: InvitationEntity) -> Invitation:
        return cls(
            id=strawberry.ID(to_global_id("Invitation", invitation.id)),
            email=invitation.email,
            role=invitation.role,
            all_sub_accounts=invitation.all_sub_accounts,
            created_at=invitation.created_at,
            expires_at=invitation.expires_at,
            accepted=invitation.accepted_at is not None,
            revoked=invitation.revoked_at is not None,
            entity=invitation,
        )


@strawberry.type(name="ApiKey")
class ApiKey(Node):
    id: strawberry.ID
    name: str
    created_at: datetime
    scopes: list[str]

    @classmethod
    def from_domain(cls, key: ApiKeyEntity) -> ApiKey:
        return cls(
            id=strawberry.ID(to_global_id("ApiKey", key.id)),
            name=key.name,
            created_at=key.created_at,
            scopes=sorted(key.scopes),
        )


@strawberry.type
class UserEdge:
    node: User
    cursor: str


@strawberry.type
class UserConnection:
    edges: list[UserEdge]
    page_info: PageInfo


@strawberry.type
class InvitationEdge:
    node: Invitation
    cursor: str


@strawberry.type
class InvitationConnection:
    edges: list[InvitationEdge]
    page_info: PageInfo


@strawberry.type
class ApiKeyEdge:
    node: ApiKey
    cursor: str


@strawberry.type
class ApiKeyConnection:
    edges: list[ApiKeyEdge]
    page_info: PageInfo


@strawberry.input
class InviteUserInput:
    email: str
    role: RoleEnum
    all_sub_accounts: bool | None = strawberry.field(
        default=None, description="For sub-account roles: every sub-account, now and later."
    )
    sub_account_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="For sub-account roles and agency members: the grants."
    )


@strawberry.type
class InvitationPayload:
    invitation: Invitation | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class InvitationIdInput:
    id: strawberry.ID


@strawberry.input
class AcceptInvitationInput:
    token: str = strawberry.field(description="The `token` parameter of the invitation link.")
    password: str


@strawberry.input
class ChangeUserRoleInput:
    user_id: strawberry.ID
    role: RoleEnum
    all_sub_accounts: bool | None = None
    sub_account_ids: list[strawberry.ID] | None = None


@strawberry.type
class UserPayload:
    user: User | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RemoveUserInput:
    user_id: strawberry.ID


@strawberry.input
class TransferOwnershipInput:
    to_user_id: strawberry.ID


@strawberry.input
class CreateApiKeyInput:
    name: str


@strawberry.type
class CreateApiKeyPayload:
    api_key: ApiKey | None = None
    secret: str | None = strawberry.field(
        default=None, description="Shown once: send as `Authorization: Bearer <secret>`."
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RevokeApiKeyInput:
    id: strawberry.ID


@strawberry.type
class RevokeApiKeyPayload:
    revoked_api_key_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _sent(sent: team.Sent) -> InvitationPayload:
    errors = [UserError.from_domain(sent.mail_error)] if sent.mail_error else []
    return InvitationPayload(invitation=Invitation.from_domain(sent.invitation), user_errors=errors)


@strawberry.type
class TeamMutations:
    @strawberry.mutation(description="Invite someone by email to one of the four assignable roles.")
    @with_user_errors(InvitationPayload)
    async def invite_user(self, info: Info, input: InviteUserInput) -> InvitationPayload:
        return _sent(
            await team.invite_user(
                info.context,
                input.email,
                input.role,
                input.all_sub_accounts,
                input.sub_account_ids,
            )
        )

    @strawberry.mutation(description="Send a new link valid 7 days; the old link stops working.")
    @with_user_errors(InvitationPayload)
    async def resend_invitation(self, info: Info, input: InvitationIdInput) -> InvitationPayload:
        return _sent(await team.resend_invitation(info.context, input.id))

    @strawberry.mutation(description="Withdraw a pending invitation.")
    @with_user_errors(InvitationPayload)
    async def revoke_invitation(self, info: Info, input: InvitationIdInput) -> InvitationPayload:
        invitation = await team.revoke_invitation(info.context, input.id)
        return InvitationPayload(invitation=Invitation.from_domain(invitation))

    @strawberry.mutation(description="Accept an invitation: set a password and sign in.")
    @with_user_errors(LoginPayload)
    async def accept_invitation(self, info: Info, input: AcceptInvitationInput) -> LoginPayload:
        user, token = await team.accept_invitation(info.context, input.token, input.password)
        return LoginPayload(token=token, user=User.from_domain(user))

    @strawberry.mutation(description="Change a user's role and sub-account access.")
    @with_user_errors(UserPayload)
    async def change_user_role(self, info: Info, input: ChangeUserRoleInput) -> UserPayload:
        user = await team.change_user_role(
            info.context,
            input.user_id,
            input.role,
            input.all_sub_accounts,
            input.sub_account_ids,
        )
        return UserPayload(user=User.from_domain(user))

    @strawberry.mutation(description="Remove a user from the agency; their sessions end.")
    @with_user_errors(UserPayload)
    async def remove_user(self, info: Info, input: RemoveUserInput) -> UserPayload:
        return UserPayload(
            user=User.from_domain(await team.remove_user(info.context, input.user_id))
        )

    @strawberry.mutation(description="Owner only: hand ownership to an agency admin.")
    @with_user_errors(UserPayload)
    async def transfer_ownership(self, info: Info, input: TransferOwnershipInput) -> UserPayload:
        user = await team.transfer_ownership(info.context, input.to_user_id)
        return UserPayload(user=User.from_domain(user))

    @strawberry.mutation(description="Owner only: an API key for the platform's usage ingestion.")
    @with_user_errors(CreateApiKeyPayload)
    async def create_api_key(self, info: Info, input: CreateApiKeyInput) -> CreateApiKeyPayload:
        key, secret = await api_keys.create_api_key(info.context, input.name)
        return CreateApiKeyPayload(api_key=ApiKey.from_domain(key), secret=secret)

    @strawberry.mutation(description="Owner only: revoke an API key at once.")
    @with_user_errors(RevokeApiKeyPayload)
    async def revoke_api_key(self, info: Info, input: RevokeApiKeyInput) -> RevokeApiKeyPayload:
        key_id = await api_keys.revoke_api_key(info.context, input.id)
        return RevokeApiKeyPayload(revoked_api_key_id=strawberry.ID(to_global_id("ApiKey", key_id)))


async def users_connection(
    ctx: RequestContext, agency: AgencyEntity, first: int | None, after: str | None
) -> UserConnection:
    page = await team.users_page(ctx, agency.id, first, after)
    return UserConnection(edges=edges(page, UserEdge, User.from_domain), page_info=page_info(page))


async def invitations_connection(
    ctx: RequestContext,
    agency: AgencyEntity,
    first: int | None,
    after: str | None,
    pending_only: bool,
) -> InvitationConnection:
    page = await team.invitations_page(ctx, agency.id, first, after, pending_only)
    return InvitationConnection(
        edges=edges(page, InvitationEdge, Invitation.from_domain), page_info=page_info(page)
    )


async def api_keys_connection(
    ctx: RequestContext, agency: AgencyEntity, first: int | None, after: str | None
) -> ApiKeyConnection:
    page = await api_keys.api_keys(ctx, agency.id, first, after)
    return ApiKeyConnection(
        edges=edges(page, ApiKeyEdge, ApiKey.from_domain), page_info=page_info(page)
    )
