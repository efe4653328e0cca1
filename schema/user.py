"""Users, the viewer, and signing in and out."""

from __future__ import annotations

import strawberry

from domain import agency as entities
from domain.policy import Role
from resolvers import auth, team
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.agency import Agency
from schema.errors import UserError, with_user_errors
from schema.node import Node
from schema.sub_account import SubAccount

RoleEnum = strawberry.enum(Role, name="Role")
Info = strawberry.Info[RequestContext, None]


@strawberry.type(name="User")
class User(Node):
    id: strawberry.ID
    email: str
    role: RoleEnum
    all_sub_accounts: bool
    entity: strawberry.Private[entities.User]

    @strawberry.field(
        description="Sub-accounts granted explicitly; allSubAccounts=true means every one."
    )
    async def sub_accounts(self, info: Info) -> list[SubAccount]:
        found = await team.granted_sub_accounts(info.context, self.entity)
        return [SubAccount.from_domain(s) for s in found]

    @classmethod
    def from_domain(cls, user: entities.User) -> User:
        return cls(
            id=strawberry.ID(to_global_id("User", user.id)),
            email=user.email,
            role=user.role,
            all_sub_accounts=user.all_sub_accounts,
            entity=user,
        )


@strawberry.type
class Viewer:
    user: User
    agency: Agency


@strawberry.input
class LoginInput:
    email: str
    password: str


@strawberry.type
class LoginPayload:
    token: str | None = strawberry.field(
        default=None, description="Send as `Authorization: Bearer <token>`."
    )
    user: User | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class LogoutPayload:
    revoked: bool = False
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UserMutations:
    @strawberry.mutation(description="Sign in with email and password; returns a bearer token.")
    @with_user_errors(LoginPayload)
    async def login(self, info: Info, input: LoginInput) -> LoginPayload:
        result = await auth.login(info.context, input.email, input.password)
        return LoginPayload(token=result.token, user=User.from_domain(result.user))

    @strawberry.mutation(description="Revoke the token this request was sent with.")
    @with_user_errors(LogoutPayload)
    async def logout(self, info: Info) -> LogoutPayload:
        return LogoutPayload(revoked=await auth.logout(info.context))
