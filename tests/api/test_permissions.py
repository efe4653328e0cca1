"""Every mutation and every sub-account-scoped read, as each role of the SPEC's table, as an
outsider from another agency and with no token: allowed or refused exactly as the table says.

Adding a mutation without a row here fails `test_every_mutation_has_a_row`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from domain.policy import Role
from schema import build_schema
from tests.factories import gql
from tests.world import ACTORS, World, build_world

OK, FORBIDDEN, UNAUTH, NOT_FOUND = "OK", "FORBIDDEN", "UNAUTHENTICATED", "NOT_FOUND"
Prepare = Callable[[World], Awaitable[tuple[str, dict[str, Any]]]]


@dataclass(frozen=True)
class Case:
    prepare: Prepare
    expected: dict[str, str]


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


async def _none(world: World) -> dict[str, Any]:
    return {}


def _email() -> str:
    return f"{uuid.uuid4().hex[:10]}@new.example"


async def _sign_up(world: World) -> dict[str, Any]:
    return {"i": {"agencyName": "New", "ownerEmail": _email(), "password": "correct-horse-battery"}}


async def _invite(world: World) -> dict[str, Any]:
    return {
        "i": {
            "email": _email(),
            "role": "SUBACCOUNT_MEMBER",
            "subAccountIds": [world.gid("SubAccount", world.s1_id)],
        }
    }


async def _invitation(world: World) -> dict[str, Any]:
    return {"i": {"id": world.gid("Invitation", await world.add_invitation())}}


async def _member_user(world: World) -> dict[str, Any]:
    return {"i": {"userId": world.gid("User", await world.add_user(Role.AGENCY_MEMBER))}}


async def _change_role(world: World) -> dict[str, Any]:
    user = await world.add_user(Role.AGENCY_MEMBER)
    return {"i": {"userId": world.gid("User", user), "role": "AGENCY_ADMIN"}}


async def _admin_user(world: World) -> dict[str, Any]:
    return {"i": {"toUserId": world.gid("User", await world.add_user(Role.AGENCY_ADMIN))}}


async def _api_key(world: World) -> dict[str, Any]:
    from resolvers.api_keys import issue_api_key

    key, _ = await issue_api_key(world.services, world.agency_id, "ingest", None)
    return {"i": {"id": world.gid("ApiKey", key.id)}}


PAYLOAD = "userErrors { code }"
WORKERS_IN_S1 = ("AGENCY_OWNER", "AGENCY_ADMIN", "AGENCY_MEMBER", "SUBACCOUNT_ADMIN")


def sub(world: World, key: uuid.UUID) -> str:
    return world.gid("SubAccount", key)


async def _new_client(world: World) -> dict[str, Any]:
    return {"i": {"name": "New client", "loginEmail": _email(), "markupPercent": "10"}}


async def _on_s1(world: World) -> dict[str, Any]:
    return {"i": {"id": sub(world, world.s1_id)}}


async def _rename_s1(world: World) -> dict[str, Any]:
    return {"i": {"id": sub(world, world.s1_id), "name": "Renamed"}}


async def _suspended_s2(world: World) -> dict[str, Any]:
    await world.suspend(world.s2_id)
    return {"i": {"id": sub(world, world.s2_id)}}


async def _source_s1(world: World) -> dict[str, Any]:
    return {"i": {"id": sub(world, world.s1_id), "source": "AGENCY"}}


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
    activity = await world.add_activity(world.s1_id)
    return {"i": {"id": world.gid("Campaign", activity), "status": "PAUSED"}}


MUTATIONS: dict[str, Case] = {
    "signUpAgency": Case(
        op(
            f"mutation($i: SignUpAgencyInput!) {{ signUpAgency(input: $i) {{ {PAYLOAD} }} }}",
            _sign_up,
        ),
        EVERYONE,
    ),
    "login": Case(
        op(
            f'mutation {{ login(input: {{email: "nobody@x.example", password: "x"}}) '
            f"{{ {PAYLOAD} }} }}",
            _none,
        ),
        EVERYONE,
    ),
    "acceptInvitation": Case(
        op(
            f'mutation {{ acceptInvitation(input: {{token: "ahi_unknown", '
            f'password: "correct-horse-battery"}}) {{ {PAYLOAD} }} }}',
            _none,
        ),
        EVERYONE,
    ),
    "logout": Case(
        op("mutation { logout { revoked userErrors { code } } }", _none),
        {**EVERYONE, "ANONYMOUS": UNAUTH},
    ),
    "inviteUser": Case(
        op(f"mutation($i: InviteUserInput!) {{ inviteUser(input: $i) {{ {PAYLOAD} }} }}", _invite),
        expect(*ADMINS),
    ),
    "resendInvitation": Case(
        op(
            f"mutation($i: InvitationIdInput!) {{ resendInvitation(input: $i) {{ {PAYLOAD} }} }}",
            _invitation,
        ),
        expect(*ADMINS),
    ),
    "revokeInvitation": Case(
        op(
            f"mutation($i: InvitationIdInput!) {{ revokeInvitation(input: $i) {{ {PAYLOAD} }} }}",
            _invitation,
        ),
        expect(*ADMINS),
    ),
    "changeUserRole": Case(
        op(
            f"mutation($i: ChangeUserRoleInput!) {{ changeUserRole(input: $i) {{ {PAYLOAD} }} }}",
            _change_role,
        ),
        expect(*ADMINS),
    ),
    "removeUser": Case(
        op(
            f"mutation($i: RemoveUserInput!) {{ removeUser(input: $i) {{ {PAYLOAD} }} }}",
            _member_user,
        ),
        expect(*ADMINS),
    ),
    "transferOwnership": Case(
        op(
            f"mutation($i: TransferOwnershipInput!) {{ transferOwnership(input: $i) "
            f"{{ {PAYLOAD} }} }}",
            _admin_user,
        ),
        expect("AGENCY_OWNER"),
    ),
    "createApiKey": Case(
        op(f'mutation {{ createApiKey(input: {{name: "platform"}}) {{ {PAYLOAD} }} }}', _none),
        expect("AGENCY_OWNER", outsider=OK),
    ),  # the outsider makes one in its own agency
    "updateAgency": Case(
        op(
            f'mutation {{ updateAgency(input: {{timeZone: "Europe/Berlin"}}) {{ {PAYLOAD} }} }}',
            _none,
        ),
        expect(*ADMINS, outsider=OK),
    ),  # the outsider changes its own agency
    "createSubAccount": Case(
        op(
            f"mutation($i: CreateSubAccountInput!) "
            f"{{ createSubAccount(input: $i) {{ {PAYLOAD} }} }}",
            _new_client,
        ),
        expect(*ADMINS, outsider=OK),
    ),
    "updateSubAccount": Case(
        op(
            f"mutation($i: UpdateSubAccountInput!) "
            f"{{ updateSubAccount(input: $i) {{ {PAYLOAD} }} }}",
            _rename_s1,
        ),
        expect(*ADMINS),
    ),
    "suspendSubAccount": Case(
        op(
            f"mutation($i: SuspendSubAccountInput!) {{ suspendSubAccount(input: $i) "
            f"{{ {PAYLOAD} }} }}",
            _on_s1,
        ),
        expect(*ADMINS),
    ),
    "restoreSubAccount": Case(
        op(
            f"mutation($i: RestoreSubAccountInput!) {{ restoreSubAccount(input: $i) "
            f"{{ {PAYLOAD} }} }}",
            _suspended_s2,
        ),
        expect(*ADMINS),
    ),
    "setBalanceSource": Case(
        op(
            f"mutation($i: SetBalanceSourceInput!) "
            f"{{ setBalanceSource(input: $i) {{ {PAYLOAD} }} }}",
            _source_s1,
        ),
        expect(*ADMINS),
    ),
    "setAutoAllocation": Case(
        op(
            f"mutation($i: SetAutoAllocationInput!) {{ setAutoAllocation(input: $i) "
            f"{{ {PAYLOAD} }} }}",
            _allocation_s1,
        ),
        expect(*ADMINS),
    ),
    "transferKnowledgePackCredits": Case(
        op(
            f"mutation($i: TransferKnowledgePackCreditsInput!) "
            f"{{ transferKnowledgePackCredits(input: $i) {{ {PAYLOAD} }} }}",
            _credits,
        ),
        expect(*ADMINS),
    ),
    "removeSubAccount": Case(
        op(
            f"mutation($i: RemoveSubAccountInput!) "
            f"{{ removeSubAccount(input: $i) {{ {PAYLOAD} }} }}",
            _removal,
        ),
        expect(*ADMINS),
    ),
    "transferMinutes": Case(
        op(
            f"mutation($i: TransferMinutesInput!) {{ transferMinutes(input: $i) {{ {PAYLOAD} }} }}",
            _minutes,
        ),
        expect(*ADMINS),
    ),
    "createActivity": Case(
        op(
            f"mutation($i: CreateActivityInput!) {{ createActivity(input: $i) {{ {PAYLOAD} }} }}",
            _activity_in_s1,
        ),
        expect(*WORKERS_IN_S1),
    ),
    "setActivityStatus": Case(
        op(
            f"mutation($i: SetActivityStatusInput!) {{ setActivityStatus(input: $i) "
            f"{{ {PAYLOAD} }} }}",
            _activity_status,
        ),
        expect(*WORKERS_IN_S1),
    ),
    "recordCalls": Case(
        op("mutation { recordCalls(input: {calls: []}) { accepted userErrors { code } } }", _none),
        {actor: UNAUTH for actor in ACTORS},  # API keys only: no user session records calls
    ),
    "revokeApiKey": Case(
        op(
            f"mutation($i: RevokeApiKeyInput!) {{ revokeApiKey(input: $i) {{ {PAYLOAD} }} }}",
            _api_key,
        ),
        expect("AGENCY_OWNER"),
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
    "viewer.user.subAccounts": Case(
        viewer("user { subAccounts { id } }"), {**EVERYONE, "ANONYMOUS": UNAUTH}
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
    user_errors = {e["code"] for e in payload.get("userErrors", [])} if payload else set()
    return NOT_FOUND if "NOT_FOUND" in user_errors else OK


def query_outcome(body: dict[str, Any]) -> str:
    """A query field that raised a rule (NOT_FOUND) reads like a missing node."""
    codes = {e.get("extensions", {}).get("code") for e in body.get("errors", [])}
    return NOT_FOUND if codes == {"NOT_FOUND"} else outcome(body)


CASES = [(name, case, actor) for name, case in {**MUTATIONS, **READS}.items() for actor in ACTORS]


@pytest.fixture
async def world(app_client):
    return await build_world(app_client.app.state.services)


@pytest.mark.parametrize(("name", "case", "actor"), CASES, ids=[f"{n}-{a}" for n, _, a in CASES])
async def test_access_follows_the_role_table(app_client, world, name, case, actor):
    # given the world, when the actor runs the operation
    query, variables = await case.prepare(world)
    body = await gql(app_client, query, variables, token=world.tokens[actor])
    # then it is allowed or refused as the table says
    assert query_outcome(body) == case.expected[actor], body


def test_every_mutation_has_a_row():
    mutation_type = build_schema()._schema.mutation_type
    assert mutation_type is not None
    assert set(mutation_type.fields) == set(MUTATIONS)
