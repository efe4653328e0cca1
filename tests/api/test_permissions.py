"""Every mutation and every sub-account-scoped read, as each role of the SPEC's table, as an
outsider from another agency and with no token: allowed or refused exactly as the table says.

"Allowed" means it worked: the call answers without any userError, and the mutation's effect
is then visible (`Case.worked`), read back by the agency's owner (the outsider, for its own
agency) or, for sign-ins, with the token the call returned.

Adding a mutation without a row here fails `test_every_mutation_has_a_row`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from domain.money import Tier
from domain.policy import Role
from persistence.queries.loaders import sub_accounts_by_id
from schema import build_schema
from tests.factories import gql
from tests.mailbox import latest_token_for
from tests.world import ACTORS, PASSWORD, World, build_world

OK, FORBIDDEN, UNAUTH, NOT_FOUND = "OK", "FORBIDDEN", "UNAUTHENTICATED", "NOT_FOUND"
Prepare = Callable[[World], Awaitable[tuple[str, dict[str, Any]]]]


@dataclass(frozen=True)
class Done:
    """An allowed call that answered: what `Case.worked` checks its effect with."""

    client: httpx.AsyncClient
    world: World
    actor: str
    payload: dict[str, Any]

    async def read(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """`query` as the owner of the agency the actor acted in."""
        owner = "OUTSIDER" if self.actor == "OUTSIDER" else "AGENCY_OWNER"
        return await self.read_as(self.world.tokens[owner], query, variables)

    async def read_as(
        self, token: str | None, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body = await gql(self.client, query, variables, token=token)
        assert "errors" not in body, body
        return body["data"]

    async def node(self, type_name: str, key: uuid.UUID, selection: str) -> dict[str, Any] | None:
        query = f"query($id: ID!) {{ node(id: $id) {{ ... on {type_name} {{ {selection} }} }} }}"
        found: dict[str, Any] | None = (
            await self.read(query, {"id": self.world.gid(type_name, key)})
        )["node"]
        return found


Worked = Callable[[Done], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    prepare: Prepare
    expected: dict[str, str]
    worked: Worked | None = None  # a mutation's visible effect, checked whenever it is allowed


def expect(*allowed: str, outsider: str = NOT_FOUND, refused: str = FORBIDDEN) -> dict[str, str]:
    table = {actor: (OK if actor in allowed else refused) for actor in ACTORS}
    table["OUTSIDER"] = outsider
    table["ANONYMOUS"] = UNAUTH
    return table


EVERYONE = {actor: OK for actor in ACTORS}
ADMINS = ("AGENCY_OWNER", "AGENCY_ADMIN")
AGENCY_ROLES = (*ADMINS, "AGENCY_MEMBER")
MEMBERS_OF_S1 = (*AGENCY_ROLES, "SUBACCOUNT_ADMIN", "SUBACCOUNT_MEMBER")


def op(query: str, make_variables: Callable[[World], Awaitable[dict[str, Any]]]) -> Prepare:
    async def prepare(world: World) -> tuple[str, dict[str, Any]]:
        return query, await make_variables(world)

    return prepare


def mutation(name: str, input_type: str | None, selection: str = "") -> str:
    arguments = "(input: $i)" if input_type else ""
    declared = f"($i: {input_type}!)" if input_type else ""
    return f"mutation{declared} {{ {name}{arguments} {{ {selection} userErrors {{ code }} }} }}"


async def _none(world: World) -> dict[str, Any]:
    return {}


def _email() -> str:
    return f"{uuid.uuid4().hex[:10]}@new.example"


def sub(world: World, key: uuid.UUID) -> str:
    return world.gid("SubAccount", key)


# ---- sign-up, sign-in, invitations ----------------------------------------------------------


async def _sign_up(world: World) -> dict[str, Any]:
    return {"i": {"agencyName": "New", "ownerEmail": _email(), "password": PASSWORD}}


async def _signed_up(done: Done) -> None:
    seen = await done.read_as(done.payload["token"], "{ viewer { user { role } agency { name } } }")
    assert seen["viewer"] == {"user": {"role": "AGENCY_OWNER"}, "agency": {"name": "New"}}


async def _login(world: World) -> dict[str, Any]:
    world.made["email"] = _email()
    await world.add_user(Role.AGENCY_MEMBER, email=world.made["email"])
    return {"i": {"email": world.made["email"], "password": PASSWORD}}


async def _signed_in(done: Done) -> None:
    seen = await done.read_as(done.payload["token"], "{ viewer { user { email role } } }")
    assert seen["viewer"]["user"] == {"email": done.world.made["email"], "role": "AGENCY_MEMBER"}


async def _accept(world: World) -> dict[str, Any]:
    _, world.made["email"], secret = await world.invite()
    return {"i": {"token": secret, "password": "a-brand-new-secret"}}


async def _logout_worked(done: Done) -> None:
    query = "{ viewer { user { id } } }"
    body = await gql(done.client, query, token=done.world.tokens[done.actor])
    assert body["errors"][0]["extensions"]["code"] == UNAUTH, body


async def _invite(world: World) -> dict[str, Any]:
    world.made["email"] = _email()
    return {
        "i": {
            "email": world.made["email"],
            "role": "SUBACCOUNT_MEMBER",
            "subAccountIds": [world.gid("SubAccount", world.s1_id)],
        }
    }


PENDING = "{ viewer { agency { invitations(pendingOnly: true) { edges { node { email } } } } } }"


async def _invited(done: Done) -> None:
    edges = (await done.read(PENDING))["viewer"]["agency"]["invitations"]["edges"]
    assert done.world.made["email"] in [e["node"]["email"] for e in edges]


async def _invitation(world: World) -> dict[str, Any]:
    invitation, world.made["email"], world.made["secret"] = await world.invite()
    world.made["invitation"] = invitation
    return {"i": {"id": world.gid("Invitation", invitation)}}


async def _resent(done: Done) -> None:
    mail_dir = done.world.services.mailer.directory  # type: ignore[attr-defined]
    link = latest_token_for(mail_dir, done.world.made["email"])
    assert link != done.world.made["secret"]  # a new link, mailed


async def _revoked_invitation(done: Done) -> None:
    found = await done.node("Invitation", done.world.made["invitation"], "revoked")
    assert found == {"revoked": True}


# ---- the team -------------------------------------------------------------------------------


async def _member_user(world: World) -> dict[str, Any]:
    world.made["user"] = await world.add_user(Role.AGENCY_MEMBER)
    return {"i": {"userId": world.gid("User", world.made["user"])}}


async def _removed_user(done: Done) -> None:
    assert await done.node("User", done.world.made["user"], "id") is None


async def _change_role(world: World) -> dict[str, Any]:
    world.made["user"] = await world.add_user(Role.AGENCY_MEMBER)
    return {"i": {"userId": world.gid("User", world.made["user"]), "role": "AGENCY_ADMIN"}}


async def _role_changed(done: Done) -> None:
    found = await done.node("User", done.world.made["user"], "role")
    assert found == {"role": "AGENCY_ADMIN"}


async def _admin_user(world: World) -> dict[str, Any]:
    world.made["user"] = await world.add_user(Role.AGENCY_ADMIN)
    return {"i": {"toUserId": world.gid("User", world.made["user"])}}


async def _ownership_moved(done: Done) -> None:
    found = await done.node("User", done.world.made["user"], "role")
    assert found == {"role": "AGENCY_OWNER"}


# ---- the agency and its API keys ------------------------------------------------------------

KEYS = "{ viewer { agency { apiKeys { edges { node { id name } } } } } }"


async def _api_keys(done: Done) -> list[dict[str, Any]]:
    edges = (await done.read(KEYS))["viewer"]["agency"]["apiKeys"]["edges"]
    return [e["node"] for e in edges]


async def _key_created(done: Done) -> None:
    assert done.payload["secret"].startswith("ahk_")
    assert [k["name"] for k in await _api_keys(done)] == ["platform"]


async def _api_key(world: World) -> dict[str, Any]:
    from resolvers.api_keys import issue_api_key

    key, _ = await issue_api_key(world.services, world.agency_id, "ingest", None)
    world.made["key"] = world.gid("ApiKey", key.id)
    return {"i": {"id": world.made["key"]}}


async def _key_revoked(done: Done) -> None:
    assert done.world.made["key"] not in [k["id"] for k in await _api_keys(done)]


async def _agency_updated(done: Done) -> None:
    seen = await done.read("{ viewer { agency { timeZone } } }")
    assert seen["viewer"]["agency"] == {"timeZone": "Europe/Berlin"}


# ---- sub-accounts ---------------------------------------------------------------------------

WORKERS_IN_S1 = ("AGENCY_OWNER", "AGENCY_ADMIN", "AGENCY_MEMBER", "SUBACCOUNT_ADMIN")


async def _new_client(world: World) -> dict[str, Any]:
    world.made["email"] = _email()
    return {"i": {"name": "New client", "loginEmail": world.made["email"], "markupPercent": "10"}}


async def _client_created(done: Done) -> None:
    query = "{ viewer { agency { subAccounts { edges { node { loginEmail } } } } } }"
    edges = (await done.read(query))["viewer"]["agency"]["subAccounts"]["edges"]
    assert done.world.made["email"] in [e["node"]["loginEmail"] for e in edges]


def on_s1(selection: str, expected: dict[str, Any], key: str = "s1_id") -> Worked:
    """The call left s1 (or s2) showing `expected`."""

    async def worked(done: Done) -> None:
        found = await done.node("SubAccount", getattr(done.world, key), selection)
        assert found == expected

    return worked


async def _on_s1(world: World) -> dict[str, Any]:
    return {"i": {"id": sub(world, world.s1_id)}}


async def _rename_s1(world: World) -> dict[str, Any]:
    return {"i": {"id": sub(world, world.s1_id), "name": "Renamed"}}


async def _suspended_s2(world: World) -> dict[str, Any]:
    await world.suspend(world.s2_id)
    return {"i": {"id": sub(world, world.s2_id)}}


async def _source_s1(world: World) -> dict[str, Any]:
    return {"i": {"id": sub(world, world.s1_id), "source": "AGENCY"}}


async def _limit_s1(world: World) -> dict[str, Any]:
    return {"i": {"subAccountId": sub(world, world.s1_id), "monthlyLimit": 500}}


async def _allocation_s1(world: World) -> dict[str, Any]:
    return {
        "i": {
            "subAccountId": sub(world, world.s1_id),
            "enabled": True,
            "basicMinutes": 100,
            "premiumMinutes": 0,
        }
    }


async def _credits(world: World) -> dict[str, Any]:
    return {
        "i": {"fromId": sub(world, world.primary_id), "toId": sub(world, world.s1_id), "credits": 1}
    }


async def _removal(world: World) -> dict[str, Any]:
    return {"i": {"id": sub(world, world.s2_id), "minutesToId": sub(world, world.primary_id)}}


async def _minutes(world: World) -> dict[str, Any]:
    await world.grant(world.primary_id, Tier.PREMIUM, 600)
    return {
        "i": {
            "fromId": sub(world, world.primary_id),
            "toId": sub(world, world.s1_id),
            "tier": "PREMIUM",
            "minutes": "1",
        }
    }


async def _activity_in_s1(world: World) -> dict[str, Any]:
    return {"i": {"subAccountId": sub(world, world.s1_id), "kind": "CAMPAIGN", "name": "Promo"}}


async def _activity_status(world: World) -> dict[str, Any]:
    world.made["activity"] = await world.add_activity(world.s1_id)
    return {"i": {"id": world.gid("Campaign", world.made["activity"]), "status": "PAUSED"}}


async def _activity_paused(done: Done) -> None:
    found = await done.node("Campaign", done.world.made["activity"], "status")
    assert found == {"status": "PAUSED"}


# ---- payments ----------------------------------------------------------------------------


async def _card_on(world: World, payer_id: uuid.UUID, default: bool = True) -> uuid.UUID:
    """A card saved for `payer_id` as addPaymentCard would (its Customer at the test's Stripe)."""
    from datetime import timedelta

    from domain.payments import PaymentCard
    from persistence import payment_cards

    stripe_server = world.made["stripe"]
    services = world.services
    services.clock.advance(timedelta(seconds=1))
    async with services.database.read() as conn:
        customer = await payment_cards.customer_id(conn, payer_id)
    if customer is None:
        customer = (await stripe_server.client.v1.customers.create_async({})).id
    method = await stripe_server.payment_method()
    await stripe_server.client.v1.payment_methods.attach_async(method, {"customer": customer})
    card = PaymentCard(
        uuid.uuid4(),
        world.agency_id,
        payer_id,
        method,
        "visa",
        "4242",
        12,
        2031,
        default,
        services.clock(),
    )
    async with services.uow() as uow:
        await payment_cards.keep_customer_id(uow.conn, payer_id, customer)
        await payment_cards.add_card(uow.conn, card)
    return card.id


async def _new_card_for_s1(world: World) -> dict[str, Any]:
    method = await world.made["stripe"].payment_method()
    return {"i": {"subAccountId": sub(world, world.s1_id), "paymentMethodId": method}}


async def _s1_has_a_card(done: Done) -> None:
    found = await done.node("SubAccount", done.world.s1_id, "paymentCards { isDefault }")
    assert found == {"paymentCards": [{"isDefault": True}]}


async def _second_card_of_s1(world: World) -> dict[str, Any]:
    await _card_on(world, world.s1_id)
    world.made["card"] = await _card_on(world, world.s1_id, default=False)
    return {"i": {"id": world.gid("PaymentCard", world.made["card"])}}


async def _card_of_s1(world: World) -> dict[str, Any]:
    world.made["card"] = await _card_on(world, world.s1_id)
    return {"i": {"id": world.gid("PaymentCard", world.made["card"])}}


async def _card_is_default(done: Done) -> None:
    found = await done.node("PaymentCard", done.world.made["card"], "isDefault")
    assert found == {"isDefault": True}


async def _card_removed(done: Done) -> None:
    assert await done.node("PaymentCard", done.world.made["card"], "isDefault") is None


async def _purchase_for_s1(world: World) -> dict[str, Any]:
    await _card_on(world, world.s1_id)
    return {
        "i": {
            "subAccountId": sub(world, world.s1_id),
            "tier": "PREMIUM",
            "minutes": 10,
            "idempotencyKey": "buy-1",
        }
    }


async def _recharge_for_s1(world: World) -> dict[str, Any]:
    await _card_on(world, world.s1_id)
    return {
        "i": {
            "subAccountId": sub(world, world.s1_id),
            "enabled": True,
            "tier": "PREMIUM",
            "thresholdMinutes": 5,
            "topUpMinutes": 20,
        }
    }


async def _cap_s1(world: World) -> dict[str, Any]:
    return {"i": {"subAccountId": sub(world, world.s1_id), "amount": "100"}}


async def _earned(world: World, agency_id: uuid.UUID, payer_id: uuid.UUID) -> None:
    """$1 of earnings (a client purchase that succeeded) and a Connect account to pay it to."""
    from dataclasses import replace

    from domain.payments import PaymentStatus, PurchaseKind, Quote, new_purchase
    from persistence import payouts, purchases

    async with world.services.database.read() as conn:
        [payer] = await sub_accounts_by_id(conn, [payer_id])
    assert payer is not None
    quote = Quote(Tier.PREMIUM, 10, 400, 1_000_000)
    purchase = new_purchase(
        uuid.uuid4(),
        payer,
        payer,
        PurchaseKind.CLIENT_PURCHASE,
        quote,
        "cus_x",
        "pm_x",
        world.services.clock(),
    )
    async with world.services.uow() as uow:
        await purchases.add_purchase(uow.conn, replace(purchase, status=PaymentStatus.SUCCEEDED))
        await payouts.save_settings(
            uow.conn, agency_id, stripe_connect_account_id=f"acct_{uuid.uuid4().hex[:10]}"
        )


async def _earnings_to_pay(world: World) -> dict[str, Any]:
    await _earned(world, world.agency_id, world.s1_id)
    await _earned(world, world.outsider_agency_id, world.outsider_primary_id)
    return {"i": {"idempotencyKey": "payout-1"}}


async def _paid_out(done: Done) -> None:
    found = await done.read("{ viewer { agency { earnings { paidOut { amount } } } } }")
    assert found["viewer"]["agency"]["earnings"] == {"paidOut": {"amount": "1.000000"}}


async def _payout_settings(world: World) -> dict[str, Any]:
    return {"i": {"connectedAccountId": "acct_settings", "payoutThreshold": "50"}}


async def _payout_settings_saved(done: Done) -> None:
    found = await done.read(
        "{ viewer { agency { earnings { connectedAccountId payoutThreshold { amount } } } } }"
    )
    assert found["viewer"]["agency"]["earnings"] == {
        "connectedAccountId": "acct_settings",
        "payoutThreshold": {"amount": "50.000000"},
    }


# ---- merging sub-accounts ---------------------------------------------------------------------

MERGES = "{ viewer { agency { mergeRequests { edges { node { status source { id } } } } } } }"


async def _two_clients(world: World) -> tuple[uuid.UUID, uuid.UUID]:
    from tests.world import secondary

    world.made["source"] = await secondary(world.services, world.agency_id, "Merged Away")
    world.made["target"] = await secondary(world.services, world.agency_id, "Merged Into")
    return world.made["source"], world.made["target"]


async def _merge_asked(world: World) -> dict[str, Any]:
    source, target = await _two_clients(world)
    return {"i": {"sourceId": sub(world, source), "targetId": sub(world, target)}}


async def _merge_pending(done: Done) -> None:
    edges = (await done.read(MERGES))["viewer"]["agency"]["mergeRequests"]["edges"]
    source = {"id": sub(done.world, done.world.made["source"])}
    assert [e["node"] for e in edges] == [{"status": "PENDING", "source": source}]


async def _pending_merge(world: World) -> uuid.UUID:
    """A merge of two fresh clients, asked for by a third admin (so any other may decide)."""
    from domain.merge import request
    from persistence.merges import add_request

    source, target = await _two_clients(world)
    asker = await world.add_user(Role.AGENCY_ADMIN)
    async with world.services.uow() as uow:
        accounts = await sub_accounts_by_id(uow.conn, [source, target])
        assert accounts[0] is not None and accounts[1] is not None
        made, _ = request(
            uuid.uuid4(),
            accounts[0],
            accounts[1],
            None,
            asker,
            "asker@x.example",
            world.services.clock(),
        )
        await add_request(uow.conn, made)
    world.made["merge"] = made.id
    return made.id


async def _merge_decision(world: World) -> dict[str, Any]:
    return {"i": {"id": world.gid("MergeRequest", await _pending_merge(world))}}


def _merge_now(status: str) -> Worked:
    async def worked(done: Done) -> None:
        found = await done.node("MergeRequest", done.world.made["merge"], "status")
        assert found == {"status": status}
        merged = await done.node(
            "SubAccount", done.world.made["source"], "status mergedInto { id }"
        )
        into = {"id": sub(done.world, done.world.made["target"])}
        assert merged == (
            {"status": "MERGED", "mergedInto": into}
            if status == "APPROVED"
            else {"status": "ACTIVE", "mergedInto": None}
        )

    return worked


# ---- phone lines ----------------------------------------------------------------------------


async def _new_line(world: World) -> dict[str, Any]:
    return {"i": {"numbers": ["+1 415 555 0100"], "monthlyPrice": "5"}}


async def _pool_has_it(done: Done) -> None:
    found = await done.read(
        "{ viewer { agency { availableLines { edges { node { number } } } } } }"
    )
    assert found["viewer"]["agency"]["availableLines"]["edges"] == [
        {"node": {"number": "+14155550100"}}
    ]


async def _pool_line_to_s1(world: World) -> dict[str, Any]:
    line = await world.add_line()
    return {"i": {"lineId": world.gid("PhoneLine", line), "subAccountId": sub(world, world.s1_id)}}


async def _line_of_s1(world: World) -> dict[str, Any]:
    world.made["line"] = await world.add_line(world.s1_id)
    return {"i": {"lineId": world.gid("PhoneLine", world.made["line"])}}


async def _line_released(done: Done) -> None:
    assert await done.node("PhoneLine", done.world.made["line"], "number") is None
    assert await done.node("SubAccount", done.world.s1_id, "lineCount") == {"lineCount": 0}


# ---- billing ---------------------------------------------------------------------------------


async def _credit_for_s1(world: World) -> dict[str, Any]:
    day = world.services.clock().date().isoformat()
    return {
        "i": {
            "subAccountId": sub(world, world.s1_id),
            "kind": "CREDIT",
            "amount": "2.5",
            "note": "goodwill",
            "date": day,
        }
    }


async def _s1_credited(done: Done) -> None:
    day = done.world.services.clock().date().isoformat()
    found = await done.read(
        "query($d: Date!) { viewer { agency { billingSummary(range: {from: $d, to: $d}) { "
        "groups { subAccount { id } credits { amount } } } } } }",
        {"d": day},
    )
    assert found["viewer"]["agency"]["billingSummary"]["groups"] == [
        {"subAccount": {"id": sub(done.world, done.world.s1_id)}, "credits": {"amount": "2.500000"}}
    ]


# ---- outgoing webhooks (owners and agency admins) -------------------------------------------

WEBHOOK_ENDPOINTS = "{ viewer { agency { webhookEndpoints { edges { node { id url } } } } } }"
HOOK_URL = "https://127.0.0.1/hook"  # an IP literal: nothing to resolve


async def _webhook_endpoints(done: Done) -> list[dict[str, Any]]:
    edges = (await done.read(WEBHOOK_ENDPOINTS))["viewer"]["agency"]["webhookEndpoints"]["edges"]
    return [e["node"] for e in edges]


async def _new_webhook_endpoint(world: World) -> dict[str, Any]:
    return {"i": {"url": HOOK_URL, "events": ["SUBACCOUNT_SUSPENDED"]}}


async def _endpoint_created(done: Done) -> None:
    assert done.payload["secret"].startswith("whsec_")
    assert [e["url"] for e in await _webhook_endpoints(done)] == [HOOK_URL]


async def _endpoint_key(w: World) -> uuid.UUID:
    from domain.webhooks import WebhookEndpoint, WebhookEventKind
    from persistence.webhooks import add_endpoint

    endpoint = WebhookEndpoint(
        uuid.uuid4(),
        w.agency_id,
        HOOK_URL,
        frozenset({WebhookEventKind.PAYOUT_PAID}),
        True,
        w.services.clock(),
    )
    async with w.services.uow() as uow:
        await add_endpoint(uow.conn, endpoint, w.services.tokens.seal("whsec_x"))
    return endpoint.id


async def _webhook_endpoint(world: World) -> dict[str, Any]:
    world.made["endpoint"] = world.gid("WebhookEndpoint", await _endpoint_key(world))
    return {"i": {"id": world.made["endpoint"]}}


async def _endpoint_deleted(done: Done) -> None:
    assert done.world.made["endpoint"] not in [e["id"] for e in await _webhook_endpoints(done)]


async def _endpoint_pinged(done: Done) -> None:
    query = (
        "query($id: ID!) { node(id: $id) { ... on WebhookEndpoint { deliveries { "
        "edges { node { kind test status } } } } } }"
    )
    found = await done.read(query, {"id": done.world.made["endpoint"]})
    [delivery] = [e["node"] for e in found["node"]["deliveries"]["edges"]]
    assert delivery == {"kind": "PAYOUT_PAID", "test": True, "status": "PENDING"}


MUTATIONS: dict[str, Case] = {
    "signUpAgency": Case(
        op(mutation("signUpAgency", "SignUpAgencyInput", "token"), _sign_up),
        EVERYONE,
        _signed_up,
    ),
    "login": Case(op(mutation("login", "LoginInput", "token"), _login), EVERYONE, _signed_in),
    "acceptInvitation": Case(
        op(mutation("acceptInvitation", "AcceptInvitationInput", "token"), _accept),
        EVERYONE,
        _signed_in,
    ),
    "logout": Case(
        op(mutation("logout", None, "revoked"), _none),
        {**EVERYONE, "ANONYMOUS": UNAUTH},
        _logout_worked,
    ),
    "inviteUser": Case(
        op(mutation("inviteUser", "InviteUserInput"), _invite), expect(*ADMINS), _invited
    ),
    "resendInvitation": Case(
        op(mutation("resendInvitation", "InvitationIdInput"), _invitation),
        expect(*ADMINS),
        _resent,
    ),
    "revokeInvitation": Case(
        op(mutation("revokeInvitation", "InvitationIdInput"), _invitation),
        expect(*ADMINS),
        _revoked_invitation,
    ),
    "changeUserRole": Case(
        op(mutation("changeUserRole", "ChangeUserRoleInput"), _change_role),
        expect(*ADMINS),
        _role_changed,
    ),
    "removeUser": Case(
        op(mutation("removeUser", "RemoveUserInput"), _member_user),
        expect(*ADMINS),
        _removed_user,
    ),
    "transferOwnership": Case(
        op(mutation("transferOwnership", "TransferOwnershipInput"), _admin_user),
        expect("AGENCY_OWNER"),
        _ownership_moved,
    ),
    "createApiKey": Case(
        op(
            'mutation { createApiKey(input: {name: "platform"}) { secret userErrors { code } } }',
            _none,
        ),
        expect("AGENCY_OWNER", outsider=OK),  # the outsider makes one in its own agency
        _key_created,
    ),
    "updateAgency": Case(
        op(
            'mutation { updateAgency(input: {timeZone: "Europe/Berlin"}) { userErrors { code } } }',
            _none,
        ),
        expect(*ADMINS, outsider=OK),  # the outsider changes its own agency
        _agency_updated,
    ),
    "createSubAccount": Case(
        op(mutation("createSubAccount", "CreateSubAccountInput"), _new_client),
        expect(*ADMINS, outsider=OK),
        _client_created,
    ),
    "updateSubAccount": Case(
        op(mutation("updateSubAccount", "UpdateSubAccountInput"), _rename_s1),
        expect(*ADMINS),
        on_s1("name", {"name": "Renamed"}),
    ),
    "suspendSubAccount": Case(
        op(mutation("suspendSubAccount", "SuspendSubAccountInput"), _on_s1),
        expect(*ADMINS),
        on_s1("status", {"status": "SUSPENDED"}),
    ),
    "restoreSubAccount": Case(
        op(mutation("restoreSubAccount", "RestoreSubAccountInput"), _suspended_s2),
        expect(*ADMINS),
        on_s1("status", {"status": "ACTIVE"}, key="s2_id"),
    ),
    "setBalanceSource": Case(
        op(mutation("setBalanceSource", "SetBalanceSourceInput"), _source_s1),
        expect(*ADMINS),
        on_s1("balanceSource", {"balanceSource": "AGENCY"}),
    ),
    "setAutoAllocation": Case(
        op(mutation("setAutoAllocation", "SetAutoAllocationInput"), _allocation_s1),
        expect(*ADMINS),
        on_s1(
            "autoAllocation { enabled basicMinutes }",
            {"autoAllocation": {"enabled": True, "basicMinutes": 100}},
        ),
    ),
    "transferKnowledgePackCredits": Case(
        op(
            mutation("transferKnowledgePackCredits", "TransferKnowledgePackCreditsInput"),
            _credits,
        ),
        expect(*ADMINS),
        on_s1("knowledgePackCredits", {"knowledgePackCredits": 1}),
    ),
    "removeSubAccount": Case(
        op(mutation("removeSubAccount", "RemoveSubAccountInput"), _removal),
        expect(*ADMINS),
        on_s1("status", {"status": "REMOVED"}, key="s2_id"),
    ),
    "transferMinutes": Case(
        op(mutation("transferMinutes", "TransferMinutesInput"), _minutes),
        expect(*ADMINS),
        on_s1(  # the same price at both ends: the minute arrives whole
            "balances { tier seconds }",
            {"balances": [{"tier": "BASIC", "seconds": 0}, {"tier": "PREMIUM", "seconds": 60}]},
        ),
    ),
    "createActivity": Case(
        op(mutation("createActivity", "CreateActivityInput"), _activity_in_s1),
        expect(*WORKERS_IN_S1),
        on_s1("campaigns { totalCount }", {"campaigns": {"totalCount": 1}}),
    ),
    "setActivityStatus": Case(
        op(mutation("setActivityStatus", "SetActivityStatusInput"), _activity_status),
        expect(*WORKERS_IN_S1),
        _activity_paused,
    ),
    "recordCalls": Case(
        op("mutation { recordCalls(input: {calls: []}) { accepted userErrors { code } } }", _none),
        {actor: UNAUTH for actor in ACTORS},  # API keys only: no user session records calls
    ),
    "recordMessages": Case(
        op("mutation { recordMessages(input: {messages: []}) { accepted } }", _none),
        {actor: UNAUTH for actor in ACTORS},  # API keys only, as recordCalls
    ),
    "setMessagingVolumeLimit": Case(
        op(mutation("setMessagingVolumeLimit", "SetMessagingVolumeLimitInput"), _limit_s1),
        expect(*ADMINS),
        on_s1("messagingVolumeLimit", {"messagingVolumeLimit": 500}),
    ),
    "revokeApiKey": Case(
        op(mutation("revokeApiKey", "RevokeApiKeyInput"), _api_key),
        expect("AGENCY_OWNER"),
        _key_revoked,
    ),
    # Payments are the one change a SUBACCOUNT_MEMBER may make (in its granted sub-accounts).
    "addPaymentCard": Case(
        op(mutation("addPaymentCard", "AddPaymentCardInput"), _new_card_for_s1),
        expect(*MEMBERS_OF_S1),
        _s1_has_a_card,
    ),
    "setDefaultPaymentCard": Case(
        op(mutation("setDefaultPaymentCard", "PaymentCardIdInput"), _second_card_of_s1),
        expect(*MEMBERS_OF_S1),
        _card_is_default,
    ),
    "buyMinutes": Case(
        op(mutation("buyMinutes", "BuyMinutesInput"), _purchase_for_s1),
        expect(*MEMBERS_OF_S1),
        on_s1(
            "balances { tier seconds }",
            {"balances": [{"tier": "BASIC", "seconds": 0}, {"tier": "PREMIUM", "seconds": 600}]},
        ),
    ),
    "setAutoRecharge": Case(  # whoever may buy minutes there
        op(mutation("setAutoRecharge", "SetAutoRechargeInput"), _recharge_for_s1),
        expect(*MEMBERS_OF_S1),
        on_s1(
            "autoRecharge { enabled tier thresholdMinutes topUpMinutes }",
            {
                "autoRecharge": {
                    "enabled": True,
                    "tier": "PREMIUM",
                    "thresholdMinutes": 5,
                    "topUpMinutes": 20,
                }
            },
        ),
    ),
    "setSpendingCap": Case(
        op(mutation("setSpendingCap", "SetSpendingCapInput"), _cap_s1),
        expect(*ADMINS),
        on_s1(
            "spendingCap { amount { amount } reached }",
            {"spendingCap": {"amount": {"amount": "100.000000"}, "reached": False}},
        ),
    ),
    "setPayoutSettings": Case(
        op(mutation("setPayoutSettings", "SetPayoutSettingsInput"), _payout_settings),
        expect("AGENCY_OWNER", outsider=OK),  # the outsider sets its own agency's
        _payout_settings_saved,
    ),
    "requestPayout": Case(
        op(mutation("requestPayout", "RequestPayoutInput"), _earnings_to_pay),
        expect("AGENCY_OWNER", outsider=OK),  # the outsider is paid its own earnings
        _paid_out,
    ),
    "removePaymentCard": Case(
        op(mutation("removePaymentCard", "PaymentCardIdInput"), _card_of_s1),
        expect(*MEMBERS_OF_S1),
        _card_removed,
    ),
    "addLines": Case(
        op(mutation("addLines", "AddLinesInput"), _new_line),
        expect(*ADMINS, outsider=OK),  # the outsider adds to its own pool
        _pool_has_it,
    ),
    "assignLine": Case(
        op(mutation("assignLine", "AssignLineInput"), _pool_line_to_s1),
        expect(*ADMINS),
        on_s1("lineCount lines { totalCount }", {"lineCount": 1, "lines": {"totalCount": 1}}),
    ),
    "releaseLine": Case(
        op(mutation("releaseLine", "ReleaseLineInput"), _line_of_s1),
        expect(*ADMINS),
        _line_released,
    ),
    "addBillingAdjustment": Case(
        op(mutation("addBillingAdjustment", "AddBillingAdjustmentInput"), _credit_for_s1),
        expect(*ADMINS),
        _s1_credited,
    ),
    "requestMerge": Case(
        op(mutation("requestMerge", "RequestMergeInput"), _merge_asked),
        expect(*ADMINS),
        _merge_pending,
    ),
    "approveMerge": Case(
        op(mutation("approveMerge", "MergeRequestIdInput"), _merge_decision),
        expect(*ADMINS),
        _merge_now("APPROVED"),
    ),
    "rejectMerge": Case(
        op(mutation("rejectMerge", "MergeRequestIdInput"), _merge_decision),
        expect(*ADMINS),
        _merge_now("REJECTED"),
    ),
    "createWebhookEndpoint": Case(
        op(
            mutation("createWebhookEndpoint", "CreateWebhookEndpointInput", "secret"),
            _new_webhook_endpoint,
        ),
        expect(*ADMINS, outsider=OK),  # the outsider makes one in its own agency
        _endpoint_created,
    ),
    "deleteWebhookEndpoint": Case(
        op(mutation("deleteWebhookEndpoint", "WebhookEndpointIdInput"), _webhook_endpoint),
        expect(*ADMINS),
        _endpoint_deleted,
    ),
    "pingWebhookEndpoint": Case(
        op(mutation("pingWebhookEndpoint", "WebhookEndpointIdInput"), _webhook_endpoint),
        expect(*ADMINS),
        _endpoint_pinged,
    ),
}


def node(type_name: str, key: Callable[[World], Awaitable[uuid.UUID]]) -> Prepare:
    async def variables(world: World) -> dict[str, Any]:
        return {"id": world.gid(type_name, await key(world))}

    fields = "... on SubAccount { name balances { seconds } nextBillingDate }"
    return op(f"query($id: ID!) {{ node(id: $id) {{ id {fields} }} }}", variables)


def viewer(selection: str) -> Prepare:
    return op(f"{{ viewer {{ {selection} }} }}", _none)


async def _s1(w: World) -> uuid.UUID:
    return w.s1_id


async def _s2(w: World) -> uuid.UUID:
    return w.s2_id


async def _primary(w: World) -> uuid.UUID:
    return w.primary_id


async def _agency(w: World) -> uuid.UUID:
    return w.agency_id


async def _owner(w: World) -> uuid.UUID:
    return w.user_ids["AGENCY_OWNER"]


async def _pending(w: World) -> uuid.UUID:
    return await w.add_invitation()


async def _line_in_s1(w: World) -> uuid.UUID:
    return await w.add_line(w.s1_id)


async def _line_in_s2(w: World) -> uuid.UUID:
    return await w.add_line(w.s2_id)


async def _pool_line(w: World) -> uuid.UUID:
    return await w.add_line()


async def _adjustment(w: World) -> uuid.UUID:
    from datetime import date

    from domain.billing import AdjustmentKind, BillingAdjustment
    from persistence.billing import add_adjustment

    adjustment = BillingAdjustment(
        uuid.uuid4(),
        w.agency_id,
        w.s1_id,
        AdjustmentKind.DISCOUNT,
        1,
        "n",
        date(2026, 11, 2),
        w.services.clock(),
    )
    async with w.services.uow() as uow:
        await add_adjustment(uow.conn, adjustment)
    return adjustment.id


async def _key(w: World) -> uuid.UUID:
    from resolvers.api_keys import issue_api_key

    return (await issue_api_key(w.services, w.agency_id, "k", None))[0].id


async def _id_of(world: World, key: uuid.UUID) -> dict[str, Any]:
    return {"id": world.gid("SubAccount", key)}


def nullable(*allowed: str) -> dict[str, str]:
    """Reads of a node the viewer may not see come back null, as if it did not exist."""
    return expect(*allowed, refused=NOT_FOUND)


READS: dict[str, Case] = {
    "node(granted secondary)": Case(node("SubAccount", _s1), nullable(*MEMBERS_OF_S1)),
    "node(ungranted secondary)": Case(node("SubAccount", _s2), nullable(*ADMINS)),
    "node(primary)": Case(node("SubAccount", _primary), nullable(*AGENCY_ROLES)),
    "node(agency)": Case(node("Agency", _agency), nullable(*MEMBERS_OF_S1)),
    "node(owner user)": Case(node("User", _owner), nullable(*ADMINS)),
    "node(invitation)": Case(node("Invitation", _pending), nullable(*ADMINS)),
    "node(api key)": Case(node("ApiKey", _key), nullable("AGENCY_OWNER")),
    "node(line in granted secondary)": Case(
        node("PhoneLine", _line_in_s1), nullable(*MEMBERS_OF_S1)
    ),
    "node(line in ungranted secondary)": Case(node("PhoneLine", _line_in_s2), nullable(*ADMINS)),
    "node(pool line)": Case(node("PhoneLine", _pool_line), nullable(*AGENCY_ROLES)),
    "viewer.agency.availableLines": Case(
        viewer("agency { availableLines { totalCount edges { node { number } } } }"),
        expect(*AGENCY_ROLES, outsider=OK),
    ),
    "node(granted secondary).lines": Case(
        op(
            "query($id: ID!) { node(id: $id) { id ... on SubAccount { lineCount "
            "lines { totalCount edges { node { number subAccount { id } } } } "
            'report(range: {from: "2026-11-01", to: "2026-11-30"}) { lineCount } } } }',
            lambda w: _id_of(w, w.s1_id),
        ),
        nullable(*MEMBERS_OF_S1),
    ),
    "node(billing adjustment)": Case(node("BillingAdjustment", _adjustment), nullable(*ADMINS)),
    "viewer.agency.billingSummary": Case(
        viewer(
            'agency { billingSummary(range: {from: "2026-11-01", to: "2026-11-30"}) { '
            "total { amount } csv groups { subAccount { id } lines { line { id } } } } }"
        ),
        expect(*ADMINS, outsider=OK),
    ),
    "viewer.agency.primarySubAccount": Case(
        viewer("agency { primarySubAccount { id balances { seconds } } }"),
        expect(*AGENCY_ROLES, outsider=OK),
    ),
    "viewer.agency.plan": Case(
        viewer("agency { plan { name } }"), expect(*AGENCY_ROLES, outsider=OK)
    ),
    "viewer.agency.users": Case(
        viewer("agency { users { edges { node { id } } } }"), expect(*ADMINS, outsider=OK)
    ),
    "viewer.agency.invitations": Case(
        viewer("agency { invitations { edges { node { id } } } }"), expect(*ADMINS, outsider=OK)
    ),
    "viewer.agency.apiKeys": Case(
        viewer("agency { apiKeys { edges { node { id } } } }"), expect("AGENCY_OWNER", outsider=OK)
    ),
    "viewer.agency.subAccounts": Case(
        viewer(
            "agency { subAccounts { totalCount edges { node { id walletBalance { amount } "
            "autoAllocation { enabled } banner { active } } } } slotsUsed slotsAvailable }"
        ),
        expect(*AGENCY_ROLES, outsider=OK),
    ),
    "node(granted secondary).campaigns": Case(
        op(
            "query($id: ID!) { node(id: $id) { id ... on SubAccount { campaigns { totalCount } "
            "automations { totalCount } inboundAgents { totalCount } } } }",
            lambda w: _id_of(w, w.s1_id),
        ),
        nullable(*MEMBERS_OF_S1),
    ),
    "node(granted secondary).report": Case(
        op(
            "query($id: ID!) { node(id: $id) { id ... on SubAccount { "
            'report(range: {from: "2026-11-01", to: "2026-11-30"}) { calls { total } '
            "health { kind } } } } }",
            lambda w: _id_of(w, w.s1_id),
        ),
        nullable(*MEMBERS_OF_S1),
    ),
    "node(granted secondary).calls": Case(
        op(
            "query($id: ID!) { node(id: $id) { id ... on SubAccount { "
            'calls(range: {from: "2026-11-01", to: "2026-11-30"}) { totalCount '
            "edges { node { cost { amount } fundedBy { id } } } } } } }",
            lambda w: _id_of(w, w.s1_id),
        ),
        nullable(*MEMBERS_OF_S1),
    ),
    "node(granted secondary).messaging": Case(
        op(
            "query($id: ID!) { node(id: $id) { id ... on SubAccount { messagingVolumeLimit "
            'messaging(range: {from: "2026-11-01", to: "2026-11-30"}) { sent volumeUsed } } } }',
            lambda w: _id_of(w, w.s1_id),
        ),
        nullable(*MEMBERS_OF_S1),
    ),
    "viewer.agency.earnings": Case(
        viewer("agency { earnings { unpaid { amount } } payouts { totalCount } }"),
        expect(*AGENCY_ROLES, outsider=OK),
    ),
    "viewer.agency.report": Case(
        viewer(
            'agency { report(range: {from: "2026-11-01", to: "2026-11-30"}) { '
            "totalMinutesUsed clients { totalCount } } }"
        ),
        expect(*AGENCY_ROLES, outsider=OK),
    ),
    "previewTransfer": Case(
        op(
            "query($i: TransferMinutesInput!) { previewTransfer(input: $i) { receivedSeconds } }",
            _minutes,
        ),
        expect(*ADMINS, outsider=NOT_FOUND),
    ),
    "removalPreview": Case(
        op(
            "query($id: ID!) { removalPreview(subAccountId: $id) { knowledgePackCredits } }",
            lambda w: _id_of(w, w.s2_id),
        ),
        expect(*ADMINS),
    ),
    "node(merge request)": Case(node("MergeRequest", _pending_merge), nullable(*ADMINS)),
    "viewer.agency.mergeRequests": Case(
        viewer("agency { mergeRequests(status: PENDING) { totalCount edges { node { id } } } }"),
        expect(*ADMINS, outsider=OK),
    ),
    "viewer.user.subAccounts": Case(
        viewer("user { subAccounts { id } }"), {**EVERYONE, "ANONYMOUS": UNAUTH}
    ),
    "node(webhook endpoint)": Case(node("WebhookEndpoint", _endpoint_key), nullable(*ADMINS)),
    "viewer.agency.webhookEndpoints": Case(
        viewer(
            "agency { webhookEndpoints { totalCount edges { node { id url events "
            "deliveries { totalCount edges { node { eventId status } } } } } } }"
        ),
        expect(*ADMINS, outsider=OK),
    ),
}


def outcome(body: dict[str, Any]) -> str:
    codes = {e.get("extensions", {}).get("code") for e in body.get("errors", [])}
    for code in (UNAUTH, FORBIDDEN):
        if code in codes:
            return code
    assert not codes, body
    data = body["data"]
    if "node" in data:
        return OK if data["node"] is not None else NOT_FOUND
    payload = next(iter(data.values()))
    user_errors = sorted(e["code"] for e in payload.get("userErrors", []))
    if user_errors == [NOT_FOUND]:
        return NOT_FOUND
    # any other userError: the call was let in but did not work, which no row expects
    return OK if not user_errors else f"FAILED WITH {user_errors}"


def query_outcome(body: dict[str, Any]) -> str:
    """A query field that raised a rule (NOT_FOUND) reads like a missing node."""
    codes = {e.get("extensions", {}).get("code") for e in body.get("errors", [])}
    return NOT_FOUND if codes == {"NOT_FOUND"} else outcome(body)


CASES = [(name, case, actor) for name, case in {**MUTATIONS, **READS}.items() for actor in ACTORS]


@pytest.fixture
async def world(app_client, stripe_server):
    built = await build_world(app_client.app.state.services)
    built.made["stripe"] = stripe_server  # where payments' set-ups make cards
    return built


@pytest.mark.parametrize(("name", "case", "actor"), CASES, ids=[f"{n}-{a}" for n, _, a in CASES])
async def test_access_follows_the_role_table(app_client, world, name, case, actor):
    # given the world, when the actor runs the operation
    query, variables = await case.prepare(world)
    body = await gql(app_client, query, variables, token=world.tokens[actor])
    # then it is allowed or refused as the table says
    assert query_outcome(body) == case.expected[actor], body
    # and what is allowed worked: its effect is there to see
    if case.expected[actor] == OK and case.worked is not None:
        payload = next(iter(body["data"].values()))
        await case.worked(Done(app_client, world, actor, payload))


def test_every_mutation_has_a_row():
    mutation_type = build_schema()._schema.mutation_type
    assert mutation_type is not None
    assert set(mutation_type.fields) == set(MUTATIONS)
