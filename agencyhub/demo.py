"""`agencyhub seed-demo`: a demo agency with users, sub-accounts and some history."""

from __future__ import annotations

from datetime import timedelta

from agencyhub.app import running_services
from agencyhub.settings import Settings
from domain.agency import SubAccountKind
from domain.ledger import LedgerKind, Movement
from domain.money import Tier, minutes_to_seconds
from domain.policy import Role
from persistence import agencies, ledger, users
from persistence.unit_of_work import UnitOfWork
from resolvers import auth
from resolvers.context import RequestContext

OWNER = "owner@demo-agency.example"
PASSWORD = "demo-password-2026"
TEAM = (
    ("admin@demo-agency.example", Role.AGENCY_ADMIN),
    ("member@demo-agency.example", Role.AGENCY_MEMBER),
)
CLIENTS = (("Sunrise Dental", 120), ("Harbor Realty", 45), ("Northside Plumbing", 0))


async def seed_demo(settings: Settings) -> int:
    async with running_services(settings) as (services, relay):
        async with services.database.read() as conn:
            exists = await agencies.email_in_use(conn, OWNER)
        if not exists:
            ctx = RequestContext(services, None)
            signed_up = await auth.sign_up_agency(
                ctx, "Demo Agency", OWNER, PASSWORD, "Agency Unlimited"
            )
            agency = signed_up.agency
            now = services.clock()
            password_hash = await services.passwords.hash(PASSWORD)
            primary = await ctx.loaders.primary_sub_account_by_agency.load(agency.id)
            assert primary is not None

            async def populate(uow: UnitOfWork) -> None:
                for email, role in TEAM:
                    await users.add_user(uow.conn, agency.id, email, password_hash, role, now)
                for index, (name, minutes) in enumerate(CLIENTS):
                    slug = name.lower().replace(" ", "-")
                    client = await agencies.add_sub_account(
                        uow.conn,
                        agency.id,
                        SubAccountKind.SECONDARY,
                        name,
                        f"{slug}@clients.example",
                        (now - timedelta(days=40 * (index + 1))).date(),
                        0,
                        now,
                    )
                    if minutes:
                        seconds = minutes_to_seconds(minutes)
                        reference = f"demo-transfer:{client.id}"
                        await ledger.apply(
                            uow.conn,
                            [
                                Movement(
                                    agency.id,
                                    primary.id,
                                    Tier.PREMIUM,
                                    -seconds,
                                    LedgerKind.TRANSFER_OUT,
                                    reference,
                                ),
                                Movement(
                                    agency.id,
                                    client.id,
                                    Tier.PREMIUM,
                                    seconds,
                                    LedgerKind.TRANSFER_IN,
                                    reference,
                                ),
                            ],
                            now,
                        )

            await services.transact(populate, audited=False)  # demo data, not a user's change
            await relay.relay_once()
    print("Demo agency ready. Sign in with the `login` mutation as any of:")
    for email, role in ((OWNER, Role.AGENCY_OWNER), *TEAM):
        print(f"  {role.value:<14} {email}  password: {PASSWORD}")
    return 0
