"""A whole agency with one user per role, two client sub-accounts and an outsider agency,
built straight through the persistence layer (fast), for access-control tests."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from domain.agency import SubAccountKind, sign_up
from domain.invitation import INVITATION_VALIDITY, Access
from domain.ledger import LedgerKind, Movement
from domain.lines import PhoneLine, first_holdings
from domain.money import Tier
from domain.policy import Role
from domain.sub_account import ActivityKind, ActivityStatus
from persistence import activities, agencies, ledger, lines, team, users
from resolvers.context import Services
from resolvers.global_id import to_global_id

PASSWORD = "correct-horse-battery"
_numbers = itertools.count(2_000_000)  # +14152000000, +14152000001, …: valid and distinct
ACTORS = (
    "AGENCY_OWNER",
    "AGENCY_ADMIN",
    "AGENCY_MEMBER",
    "SUBACCOUNT_ADMIN",
    "SUBACCOUNT_MEMBER",
    "OUTSIDER",
    "ANONYMOUS",
)


@dataclass
class World:
    services: Services
    agency_id: uuid.UUID
    primary_id: uuid.UUID
    s1_id: uuid.UUID  # granted to the member roles
    s2_id: uuid.UUID  # granted to nobody
    outsider_agency_id: uuid.UUID
    outsider_primary_id: uuid.UUID
    tokens: dict[str, str | None] = field(default_factory=dict)
    user_ids: dict[str, uuid.UUID] = field(default_factory=dict)
    password_hash: str = ""
    made: dict[str, Any] = field(default_factory=dict)  # what a test's set-up added, by name

    def gid(self, type_name: str, key: uuid.UUID) -> str:
        return to_global_id(type_name, key)

    async def add_user(
        self,
        role: Role,
        agency_id: uuid.UUID | None = None,
        grants: tuple[uuid.UUID, ...] = (),
        email: str | None = None,
    ) -> uuid.UUID:
        """A user whose password is PASSWORD."""
        now = self.services.clock()
        async with self.services.uow() as uow:
            user = await users.add_user(
                uow.conn,
                agency_id or self.agency_id,
                email or f"{uuid.uuid4().hex[:12]}@team.example",
                self.password_hash,
                role,
                now,
            )
            await team.set_grants(uow.conn, user.id, grants)
        return user.id

    async def sign_in(self, user_id: uuid.UUID) -> str:
        token = self.services.tokens.new()
        now = self.services.clock()
        async with self.services.uow() as uow:
            await users.add_session(
                uow.conn, user_id, self.services.tokens.digest(token), now, now + timedelta(days=1)
            )
        return token

    async def add_activity(self, sub_account_id: uuid.UUID) -> uuid.UUID:
        async with self.services.uow() as uow:
            activity = await activities.add_activity(
                uow.conn,
                self.agency_id,
                sub_account_id,
                ActivityKind.CAMPAIGN,
                "Spring promo",
                ActivityStatus.ACTIVE,
                self.services.clock(),
            )
        return activity.id

    async def suspend(self, sub_account_id: uuid.UUID) -> None:
        async with self.services.uow() as uow:
            await agencies.update_sub_account(
                uow.conn, sub_account_id, status="SUSPENDED", suspended_at=self.services.clock()
            )

    async def add_invitation(self, agency_id: uuid.UUID | None = None) -> uuid.UUID:
        return (await self.invite(agency_id))[0]

    async def invite(self, agency_id: uuid.UUID | None = None) -> tuple[uuid.UUID, str, str]:
        """A pending invitation to join as AGENCY_MEMBER: (its id, the invitee, the secret)."""
        secret = self.services.tokens.new("ahi_")
        email = f"{uuid.uuid4().hex[:12]}@invitee.example"
        now = self.services.clock()
        owner = self.user_ids["AGENCY_OWNER"]
        async with self.services.uow() as uow:
            invitation = await team.add_invitation(
                uow.conn,
                agency_id or self.agency_id,
                email,
                Access(Role.AGENCY_MEMBER, False, frozenset()),
                owner,
                self.services.tokens.digest(secret),
                now,
                now + INVITATION_VALIDITY,
            )
        return invitation.id, email, secret

    async def add_line(
        self, sub_account_id: uuid.UUID | None = None, agency_id: uuid.UUID | None = None
    ) -> uuid.UUID:
        """A $10-a-month line held by `sub_account_id` (None: in the agency's pool)."""
        now = self.services.clock()
        line = PhoneLine(
            uuid.uuid4(),
            agency_id or self.agency_id,
            sub_account_id,
            f"+1415{next(_numbers):07d}",
            10_000_000,
            now,
        )
        async with self.services.uow() as uow:
            await lines.add_lines(uow.conn, [line], first_holdings([line], now.date()))
        return line.id

    async def grant(self, sub_account_id: uuid.UUID, tier: Tier, seconds: int) -> None:
        """Minutes for a sub-account of the world's agency, as a plan grant brings them."""
        movement = Movement(
            self.agency_id, sub_account_id, tier, seconds, LedgerKind.PLAN_GRANT, "world"
        )
        async with self.services.uow() as uow:
            await ledger.apply(uow.conn, [movement], self.services.clock())


async def _agency(services: Services, name: str) -> tuple[uuid.UUID, uuid.UUID]:
    now = services.clock()
    signup = sign_up(name, f"{uuid.uuid4().hex[:12]}@owner.example", PASSWORD, None, now)
    async with services.uow() as uow:
        agency = await agencies.add_agency(uow.conn, signup, now)
        primary = await agencies.add_sub_account(
            uow.conn,
            agency.id,
            SubAccountKind.PRIMARY,
            name,
            signup.owner_email,
            now.date(),
            5,
            now,
        )
    return agency.id, primary.id


async def secondary(services: Services, agency_id: uuid.UUID, name: str) -> uuid.UUID:
    now = services.clock()
    async with services.uow() as uow:
        created = await agencies.add_sub_account(
            uow.conn,
            agency_id,
            SubAccountKind.SECONDARY,
            name,
            f"{uuid.uuid4().hex[:12]}@client.example",
            now.date(),
            0,
            now,
        )
    return created.id


async def build_world(services: Services) -> World:
    agency_id, primary_id = await _agency(services, "World Agency")
    outsider_id, outsider_primary = await _agency(services, "Outsider Agency")
    world = World(
        services=services,
        agency_id=agency_id,
        primary_id=primary_id,
        s1_id=await secondary(services, agency_id, "Client One"),
        s2_id=await secondary(services, agency_id, "Client Two"),
        outsider_agency_id=outsider_id,
        outsider_primary_id=outsider_primary,
        password_hash=await services.passwords.hash(PASSWORD),
    )
    for role in Role:
        grants = (
            (world.s1_id,)
            if role in (Role.AGENCY_MEMBER, Role.SUBACCOUNT_ADMIN, Role.SUBACCOUNT_MEMBER)
            else ()
        )
        world.user_ids[role.value] = await world.add_user(role, grants=grants)
    world.user_ids["OUTSIDER"] = await world.add_user(Role.AGENCY_OWNER, agency_id=outsider_id)
    for actor, user_id in world.user_ids.items():
        world.tokens[actor] = await world.sign_in(user_id)
    world.tokens["ANONYMOUS"] = None
    return world
