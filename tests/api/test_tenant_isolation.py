"""Property: whatever ID of another agency (or any made-up ID) is sent to any ID argument,
the caller gets nothing back and the other agency is left exactly as it was."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from domain.policy import Role
from resolvers.api_keys import issue_api_key
from resolvers.global_id import to_global_id
from tests.conftest import empty_all_tables
from tests.factories import gql
from tests.world import World, build_world

TYPE_NAMES = (
    "Agency",
    "SubAccount",
    "User",
    "Invitation",
    "ApiKey",
    "Transfer",
    "PaymentCard",
    "PhoneLine",
    "BillingAdjustment",
    "MergeRequest",
    "WebhookEndpoint",
    "",
)

ID_ARGUMENTS: dict[str, tuple[str, Any]] = {
    "node.id": ("query($id: ID!) { node(id: $id) { id } }", lambda g, w: {"id": g}),
    "changeUserRole.userId": (
        "mutation($i: ChangeUserRoleInput!) { changeUserRole(input: $i) { userErrors { code } } }",
        lambda g, w: {"i": {"userId": g, "role": "AGENCY_ADMIN"}},
    ),
    "changeUserRole.subAccountIds": (
        "mutation($i: ChangeUserRoleInput!) { changeUserRole(input: $i) { userErrors { code } } }",
        lambda g, w: {
            "i": {"userId": w.member_gid, "role": "SUBACCOUNT_MEMBER", "subAccountIds": [g]}
        },
    ),
    "removeUser.userId": (
        "mutation($i: RemoveUserInput!) { removeUser(input: $i) { userErrors { code } } }",
        lambda g, w: {"i": {"userId": g}},
    ),
    "transferOwnership.toUserId": (
        "mutation($i: TransferOwnershipInput!) { transferOwnership(input: $i) "
        "{ userErrors { code } } }",
        lambda g, w: {"i": {"toUserId": g}},
    ),
    "resendInvitation.id": (
        "mutation($i: InvitationIdInput!) { resendInvitation(input: $i) { userErrors { code } } }",
        lambda g, w: {"i": {"id": g}},
    ),
    "revokeInvitation.id": (
        "mutation($i: InvitationIdInput!) { revokeInvitation(input: $i) { userErrors { code } } }",
        lambda g, w: {"i": {"id": g}},
    ),
    "revokeApiKey.id": (
        "mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { userErrors { code } } }",
        lambda g, w: {"i": {"id": g}},
    ),
    "addPaymentCard.subAccountId": (
        "mutation($i: AddPaymentCardInput!) { addPaymentCard(input: $i) { userErrors { code } } }",
        lambda g, w: {"i": {"subAccountId": g, "paymentMethodId": "pm_never_attached"}},
    ),
    "buyMinutes.subAccountId": (
        "mutation($i: BuyMinutesInput!) { buyMinutes(input: $i) { userErrors { code } } }",
        lambda g, w: {
            "i": {"subAccountId": g, "tier": "BASIC", "minutes": 10, "idempotencyKey": "k"}
        },
    ),
    "buyMinutes.cardId": (
        "mutation($i: BuyMinutesInput!) { buyMinutes(input: $i) { userErrors { code } } }",
        lambda g, w: {
            "i": {
                "subAccountId": to_global_id("SubAccount", w.primary_id),
                "tier": "BASIC",
                "minutes": 10,
                "cardId": g,
                "idempotencyKey": "k",
            }
        },
    ),
    "setDefaultPaymentCard.id": (
        "mutation($i: PaymentCardIdInput!) { setDefaultPaymentCard(input: $i) "
        "{ userErrors { code } } }",
        lambda g, w: {"i": {"id": g}},
    ),
    "removePaymentCard.id": (
        "mutation($i: PaymentCardIdInput!) { removePaymentCard(input: $i) "
        "{ userErrors { code } } }",
        lambda g, w: {"i": {"id": g}},
    ),
    "assignLine.lineId": (
        "mutation($i: AssignLineInput!) { assignLine(input: $i) { userErrors { code } } }",
        lambda g, w: {"i": {"lineId": g, "subAccountId": to_global_id("SubAccount", w.s1_id)}},
    ),
    "assignLine.lineId(to the pool)": (
        "mutation($i: AssignLineInput!) { assignLine(input: $i) { userErrors { code } } }",
        lambda g, w: {"i": {"lineId": g, "subAccountId": None}},
    ),
    "assignLine.subAccountId": (
        "mutation($i: AssignLineInput!) { assignLine(input: $i) { userErrors { code } } }",
        lambda g, w: {"i": {"lineId": w.own_line_gid, "subAccountId": g}},
    ),
    "releaseLine.lineId": (
        "mutation($i: ReleaseLineInput!) { releaseLine(input: $i) { userErrors { code } } }",
        lambda g, w: {"i": {"lineId": g}},
    ),
    "addBillingAdjustment.subAccountId": (
        "mutation($i: AddBillingAdjustmentInput!) { addBillingAdjustment(input: $i) "
        "{ userErrors { code } } }",
        lambda g, w: {
            "i": {
                "subAccountId": g,
                "kind": "CREDIT",
                "amount": "1",
                "note": "n",
                "date": "2026-11-02",
            }
        },
    ),
    "requestMerge.sourceId": (
        "mutation($i: RequestMergeInput!) { requestMerge(input: $i) { userErrors { code } } }",
        lambda g, w: {"i": {"sourceId": g, "targetId": to_global_id("SubAccount", w.s1_id)}},
    ),
    "requestMerge.targetId": (
        "mutation($i: RequestMergeInput!) { requestMerge(input: $i) { userErrors { code } } }",
        lambda g, w: {"i": {"sourceId": to_global_id("SubAccount", w.s1_id), "targetId": g}},
    ),
    "approveMerge.id": (
        "mutation($i: MergeRequestIdInput!) { approveMerge(input: $i) { userErrors { code } } }",
        lambda g, w: {"i": {"id": g}},
    ),
    "rejectMerge.id": (
        "mutation($i: MergeRequestIdInput!) { rejectMerge(input: $i) { userErrors { code } } }",
        lambda g, w: {"i": {"id": g}},
    ),
    "deleteWebhookEndpoint.id": (
        "mutation($i: WebhookEndpointIdInput!) { deleteWebhookEndpoint(input: $i) "
        "{ userErrors { code } } }",
        lambda g, w: {"i": {"id": g}},
    ),
    "pingWebhookEndpoint.id": (
        "mutation($i: WebhookEndpointIdInput!) { pingWebhookEndpoint(input: $i) "
        "{ userErrors { code } } }",
        lambda g, w: {"i": {"id": g}},
    ),
    "inviteUser.subAccountIds": (
        "mutation($i: InviteUserInput!) { inviteUser(input: $i) { userErrors { code } } }",
        lambda g, w: {
            "i": {
                "email": f"{uuid.uuid4().hex[:8]}@fuzz.example",
                "role": "SUBACCOUNT_ADMIN",
                "subAccountIds": [g],
            }
        },
    ),
}


@pytest.fixture
def fuzz_world(app_client, database_url):
    """`await fuzz_world()` in each hypothesis example: empty tables, then a new world, so an
    example sees nothing an earlier one did and a failing one replays exactly as it ran."""

    async def fresh() -> World:
        await empty_all_tables(database_url)
        return await _fuzz_world(app_client.app.state.services)

    return fresh


async def _fuzz_world(services) -> World:
    world = await build_world(services)
    outsider = world.outsider_agency_id
    world.foreign_keys = [  # type: ignore[attr-defined]
        outsider,
        world.outsider_primary_id,
        world.user_ids["OUTSIDER"],
        await world.add_user(Role.AGENCY_ADMIN, agency_id=outsider),
        await world.add_invitation(agency_id=outsider),
        (await issue_api_key(world.services, outsider, "theirs", None))[0].id,
        await _card(world, world.outsider_primary_id),
        await world.add_line(agency_id=outsider),  # in their pool
        await world.add_line(world.outsider_primary_id, agency_id=outsider),
        await _adjustment(world, world.outsider_primary_id),
        *await _merge_pending(world),  # their two clients and their pending merge request
        await _webhook_endpoint(world),
    ]
    world.own_line_gid = to_global_id(  # type: ignore[attr-defined]
        "PhoneLine", await world.add_line()
    )
    world.member_gid = to_global_id(  # type: ignore[attr-defined]
        "User", await world.add_user(Role.AGENCY_MEMBER)
    )
    return world


async def _adjustment(world: World, sub_account_id: uuid.UUID) -> uuid.UUID:
    """A credit of the outsider's primary."""
    from datetime import date

    from domain.billing import AdjustmentKind, BillingAdjustment
    from persistence.billing import add_adjustment

    adjustment = BillingAdjustment(
        uuid.uuid4(),
        world.outsider_agency_id,
        sub_account_id,
        AdjustmentKind.CREDIT,
        1_000_000,
        "theirs",
        date(2026, 11, 2),
        world.services.clock(),
    )
    async with world.services.uow() as uow:
        await add_adjustment(uow.conn, adjustment)
    return adjustment.id


async def _merge_pending(world: World) -> list[uuid.UUID]:
    """Two secondaries of the outsider agency and a PENDING request to merge them, asked for
    by one of its admins (so the fuzzing owner would be allowed to decide were it theirs)."""
    from domain.merge import request
    from persistence.merges import add_request
    from persistence.queries.loaders import sub_accounts_by_id
    from tests.world import secondary

    outsider = world.outsider_agency_id
    source = await secondary(world.services, outsider, "Their Source")
    target = await secondary(world.services, outsider, "Their Target")
    asker = await world.add_user(Role.AGENCY_ADMIN, agency_id=outsider)
    async with world.services.uow() as uow:
        found = await sub_accounts_by_id(uow.conn, [source, target])
        assert found[0] is not None and found[1] is not None
        made, _ = request(
            uuid.uuid4(), found[0], found[1], None, asker, "a@x.example", world.services.clock()
        )
        await add_request(uow.conn, made)
    return [source, target, made.id]


async def _webhook_endpoint(world: World) -> uuid.UUID:
    """An endpoint of the outsider agency, with one delivery in its log."""
    from domain.webhooks import WebhookEndpoint, WebhookEvent, WebhookEventKind
    from persistence.webhooks import add_endpoint, add_test_delivery

    endpoint = WebhookEndpoint(
        uuid.uuid4(),
        world.outsider_agency_id,
        "https://127.0.0.1/theirs",
        frozenset({WebhookEventKind.PAYOUT_PAID}),
        True,
        world.services.clock(),
    )
    async with world.services.uow() as uow:
        await add_endpoint(uow.conn, endpoint, world.services.tokens.seal("whsec_theirs"))
        event = WebhookEvent(WebhookEventKind.PAYOUT_PAID, endpoint.agency_id, None, {})
        await add_test_delivery(uow.conn, endpoint, event, world.services.clock())
    return endpoint.id


async def _card(world: World, payer_id: uuid.UUID) -> uuid.UUID:
    """A saved card row of that payer (never charged here, so no Stripe behind it)."""
    from domain.payments import PaymentCard
    from persistence.payment_cards import add_card

    card = PaymentCard(
        uuid.uuid4(),
        world.outsider_agency_id,
        payer_id,
        f"pm_{uuid.uuid4().hex}",
        "visa",
        "4242",
        12,
        2031,
        True,
        world.services.clock(),
    )
    async with world.services.uow() as uow:
        await add_card(uow.conn, card)
    return card.id


async def snapshot(world: World) -> dict[str, list[Any]]:
    """Everything of the outsider agency that an ID argument could touch."""
    queries = {
        "users": "SELECT id, role, all_sub_accounts FROM app_user WHERE agency_id = :a ORDER BY id",
        "invitations": "SELECT id, expires_at, revoked_at, accepted_at FROM invitation "
        "WHERE agency_id = :a ORDER BY id",
        "keys": "SELECT id, revoked_at FROM api_key WHERE agency_id = :a ORDER BY id",
        "cards": "SELECT id, is_default FROM payment_card WHERE agency_id = :a ORDER BY id",
        "purchases": "SELECT id, status FROM purchase WHERE agency_id = :a ORDER BY id",
        "lines": "SELECT id, sub_account_id, released_at FROM phone_line WHERE agency_id = :a "
        "ORDER BY id",
        "holdings": "SELECT id, to_date FROM line_holding WHERE agency_id = :a ORDER BY id",
        # theirs, or any made for one of their sub-accounts
        "adjustments": "SELECT b.id, b.amount_micros FROM billing_adjustment b JOIN sub_account s "
        "ON s.id = b.sub_account_id WHERE b.agency_id = :a OR s.agency_id = :a ORDER BY 1",
        "grants": "SELECT g.user_id, g.sub_account_id FROM user_grant g JOIN sub_account s "
        "ON s.id = g.sub_account_id WHERE s.agency_id = :a ORDER BY 1, 2",
        "invitation_grants": "SELECT g.invitation_id FROM invitation_grant g JOIN sub_account s "
        "ON s.id = g.sub_account_id WHERE s.agency_id = :a ORDER BY 1",
        "sub_accounts": "SELECT id, status, knowledge_pack_credits FROM sub_account "
        "WHERE agency_id = :a ORDER BY id",
        "merges": "SELECT id, status, decided_at FROM merge_request WHERE agency_id = :a "
        "ORDER BY id",
        "webhook_endpoints": "SELECT id, url FROM webhook_endpoint WHERE agency_id = :a "
        "ORDER BY id",
        "webhook_deliveries": "SELECT id, status, attempts FROM webhook_delivery "
        "WHERE agency_id = :a ORDER BY id",
    }
    key = world.outsider_agency_id
    param = key.hex if world.services.database.is_sqlite else key
    async with world.services.database.read() as conn:
        return {
            name: [tuple(r) for r in await conn.execute(text(sql), {"a": param})]
            for name, sql in queries.items()
        }


foreign_id = st.one_of(
    # a real object of the other agency, under its own type name or another one
    st.tuples(st.sampled_from(TYPE_NAMES), st.integers(min_value=0, max_value=13)).map(
        lambda t: ("foreign", t[0], t[1])
    ),
    st.tuples(st.sampled_from(TYPE_NAMES), st.uuids()).map(lambda t: ("made-up", t[0], t[1])),
    st.text(max_size=60).map(lambda s: ("garbage", s, None)),
)


def realise(world: World, drawn: tuple[str, Any, Any]) -> str:
    kind, a, b = drawn
    if kind == "foreign":
        return to_global_id(a, world.foreign_keys[b])  # type: ignore[attr-defined]
    if kind == "made-up":
        return to_global_id(a, b)
    return a


@pytest.mark.parametrize("argument", list(ID_ARGUMENTS))
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drawn=foreign_id)
async def test_foreign_ids_reveal_and_change_nothing(app_client, fuzz_world, argument, drawn):
    world = await fuzz_world()
    before = await snapshot(world)
    assert len(before["users"]) == 3 and before["invitations"] and before["keys"]
    assert before["merges"] and len(before["sub_accounts"]) == 3
    assert before["webhook_endpoints"] and before["webhook_deliveries"]
    query, make = ID_ARGUMENTS[argument]
    body = await gql(
        app_client, query, make(realise(world, drawn), world), token=world.tokens["AGENCY_OWNER"]
    )
    # nothing comes back: a null node, a NOT_FOUND user error, or a refusal
    data = body.get("data") or {}
    if "node" in data:
        assert data["node"] is None, body
    else:
        codes = {c for p in data.values() if p for c in (e["code"] for e in p["userErrors"])}
        refused = {e.get("extensions", {}).get("code") for e in body.get("errors", [])}
        assert codes <= {"NOT_FOUND"} and (codes or refused), body
        assert refused <= {"FORBIDDEN", "BAD_REQUEST"}, body
    # and the other agency is exactly as it was
    assert await snapshot(world) == before
