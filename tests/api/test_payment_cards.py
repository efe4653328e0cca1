"""Saved cards, against a real Stripe-compatible server (localstripe): each payer's Customer is
made on first use, cards are listed from our own table, one default per payer, removal
detaches them at Stripe."""

from __future__ import annotations

from datetime import timedelta

import httpx

from resolvers.global_id import from_global_id
from tests.api.test_account_manager import SOURCE, SUSPEND, new_client
from tests.api.test_team import join
from tests.conftest import make_settings
from tests.factories import gql, make_agency
from tests.payment_provider import CARD_DECLINED_AT_ATTACH, CARD_OK

ADD_CARD = """mutation($i: AddPaymentCardInput!) { addPaymentCard(input: $i) {
  card { id brand last4 expMonth expYear isDefault } userErrors { code field } } }"""
SET_DEFAULT = """mutation($id: ID!) { setDefaultPaymentCard(input: {id: $id}) {
  card { id isDefault } userErrors { code } } }"""
REMOVE_CARD = """mutation($id: ID!) { removePaymentCard(input: {id: $id}) {
  removedCardId userErrors { code } } }"""
CARDS = """query($id: ID!) { node(id: $id) { ... on SubAccount {
  paymentCards { id last4 isDefault } } } }"""


async def add_card(client, token, sub_account_id, stripe_server, number=CARD_OK, **extra):
    client.app.state.services.clock.advance(timedelta(seconds=1))  # "newest" is well defined
    method = await stripe_server.payment_method(number)
    variables = {"i": {"subAccountId": sub_account_id, "paymentMethodId": method, **extra}}
    payload = (await gql(client, ADD_CARD, variables, token))["data"]["addPaymentCard"]
    return payload, method


async def saved_card(client, token, sub_account_id, stripe_server, **extra) -> str:
    payload, _ = await add_card(client, token, sub_account_id, stripe_server, **extra)
    assert payload["userErrors"] == [], payload
    return str(payload["card"]["id"])


async def cards_of(client, token, sub_account_id):
    return (await gql(client, CARDS, {"id": sub_account_id}, token))["data"]["node"]["paymentCards"]


async def customer_of(client, sub_account_id) -> str | None:
    services = client.app.state.services
    from persistence.payment_cards import customer_id

    async with services.database.read() as conn:
        return await customer_id(conn, from_global_id(sub_account_id)[1])


async def test_a_card_is_saved_listed_and_the_first_is_the_default(app_client, stripe_server):
    # given an agency with no Stripe customer yet
    owner = await make_agency(app_client)
    assert await customer_of(app_client, owner.primary_id) is None
    # when its owner saves a card made by Stripe.js
    payload, method = await add_card(app_client, owner.token, owner.primary_id, stripe_server)
    # then it is listed from our own table, as Stripe described it, and is the default
    assert payload["userErrors"] == []
    assert payload["card"] | {"id": None} == {
        "id": None,
        "brand": "visa",
        "last4": "4242",
        "expMonth": 12,
        "expYear": 2031,
        "isDefault": True,
    }
    assert await cards_of(app_client, owner.token, owner.primary_id) == [
        {"id": payload["card"]["id"], "last4": "4242", "isDefault": True}
    ]
    # and the card is attached to the agency's Customer, made for it
    customer = await customer_of(app_client, owner.primary_id)
    assert customer is not None
    attached = await stripe_server.get(f"/v1/payment_methods/{method}")
    assert attached["customer"] == customer


async def test_the_customer_is_made_once_and_a_new_default_takes_over(app_client, stripe_server):
    owner = await make_agency(app_client)
    first = await saved_card(app_client, owner.token, owner.primary_id, stripe_server)
    customer = await customer_of(app_client, owner.primary_id)
    # when a second card is saved as the default
    second = await saved_card(
        app_client, owner.token, owner.primary_id, stripe_server, makeDefault=True
    )
    # then one Customer holds both and only the new card is the default
    assert await customer_of(app_client, owner.primary_id) == customer
    listed = await cards_of(app_client, owner.token, owner.primary_id)
    assert [(c["id"], c["isDefault"]) for c in listed] == [(second, True), (first, False)]
    # and setDefaultPaymentCard moves it back
    body = await gql(app_client, SET_DEFAULT, {"id": first}, owner.token)
    assert body["data"]["setDefaultPaymentCard"] == {
        "card": {"id": first, "isDefault": True},
        "userErrors": [],
    }
    listed = await cards_of(app_client, owner.token, owner.primary_id)
    assert [(c["id"], c["isDefault"]) for c in listed] == [(first, True), (second, False)]


async def test_removing_the_default_detaches_it_and_the_newest_other_card_takes_over(
    app_client, stripe_server
):
    owner = await make_agency(app_client)
    oldest = await saved_card(app_client, owner.token, owner.primary_id, stripe_server)
    newest = await saved_card(app_client, owner.token, owner.primary_id, stripe_server)
    payload, method = await add_card(
        app_client, owner.token, owner.primary_id, stripe_server, makeDefault=True
    )
    default = payload["card"]["id"]
    # when the default is removed
    body = await gql(app_client, REMOVE_CARD, {"id": default}, owner.token)
    # then it is gone here and detached at Stripe, and the most recent other card is default
    assert body["data"]["removePaymentCard"] == {"removedCardId": default, "userErrors": []}
    listed = await cards_of(app_client, owner.token, owner.primary_id)
    assert [(c["id"], c["isDefault"]) for c in listed] == [(newest, True), (oldest, False)]
    assert (await stripe_server.get(f"/v1/payment_methods/{method}"))["customer"] is None
    # and removing it again finds nothing
    again = await gql(app_client, REMOVE_CARD, {"id": default}, owner.token)
    assert again["data"]["removePaymentCard"]["userErrors"] == [{"code": "NOT_FOUND"}]


async def test_a_client_paying_itself_has_its_own_customer_an_agency_funded_one_the_agencys(
    app_client, stripe_server
):
    owner = await make_agency(app_client)
    agency_card = await saved_card(app_client, owner.token, owner.primary_id, stripe_server)
    client = await new_client(app_client, owner)
    # a CUSTOMER-funded client: its own Customer and cards
    own_card = await saved_card(app_client, owner.token, client, stripe_server)
    assert await customer_of(app_client, client) not in (
        None,
        await customer_of(app_client, owner.primary_id),
    )
    assert [c["id"] for c in await cards_of(app_client, owner.token, client)] == [own_card]
    # once the agency funds it, it shows (and adds to) the agency's cards
    await gql(app_client, SOURCE, {"id": client}, owner.token)
    assert [c["id"] for c in await cards_of(app_client, owner.token, client)] == [agency_card]
    added = await saved_card(app_client, owner.token, client, stripe_server)
    assert {c["id"] for c in await cards_of(app_client, owner.token, owner.primary_id)} == {
        agency_card,
        added,
    }


async def test_a_card_declined_at_attach_is_not_saved(app_client, stripe_server):
    owner = await make_agency(app_client)
    payload, _ = await add_card(
        app_client, owner.token, owner.primary_id, stripe_server, number=CARD_DECLINED_AT_ATTACH
    )
    assert payload == {
        "card": None,
        "userErrors": [{"code": "CARD_DECLINED", "field": ["input", "paymentMethodId"]}],
    }
    assert await cards_of(app_client, owner.token, owner.primary_id) == []


async def test_no_card_changes_in_a_suspended_sub_account(app_client, stripe_server):
    owner = await make_agency(app_client)
    client = await new_client(app_client, owner)
    card = await saved_card(app_client, owner.token, client, stripe_server)
    await gql(app_client, SUSPEND, {"id": client}, owner.token)
    payload, _ = await add_card(app_client, owner.token, client, stripe_server)
    assert [e["code"] for e in payload["userErrors"]] == ["SUBACCOUNT_SUSPENDED"]
    for query in (SET_DEFAULT, REMOVE_CARD):
        body = await gql(app_client, query, {"id": card}, owner.token)
        assert [e["code"] for e in next(iter(body["data"].values()))["userErrors"]] == [
            "SUBACCOUNT_SUSPENDED"
        ]
    assert len(await cards_of(app_client, owner.token, client)) == 1


async def test_a_subaccount_member_manages_its_clients_cards_but_never_the_agencys(
    app_client, stripe_server
):
    owner = await make_agency(app_client)
    client = await new_client(app_client, owner)
    agency_card = await saved_card(app_client, owner.token, owner.primary_id, stripe_server)
    _, member = await join(
        app_client,
        owner.token,
        "member@clients.example",
        "SUBACCOUNT_MEMBER",
        subAccountIds=[client],
    )
    # a member saves and removes its own client's cards (payments are the exception to
    # read-only)
    card = await saved_card(app_client, member, client, stripe_server)
    removed = await gql(app_client, REMOVE_CARD, {"id": card}, member)
    assert removed["data"]["removePaymentCard"]["userErrors"] == []
    # but not the agency's, even through a client the agency funds
    body = await gql(app_client, REMOVE_CARD, {"id": agency_card}, member)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    await gql(app_client, SOURCE, {"id": client}, owner.token)
    method = await stripe_server.payment_method()
    variables = {"i": {"subAccountId": client, "paymentMethodId": method}}
    body = await gql(app_client, ADD_CARD, variables, member)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await cards_of(app_client, member, client) == []  # the agency's cards stay unseen
    assert len(await cards_of(app_client, owner.token, owner.primary_id)) == 1


async def test_without_a_stripe_key_payments_say_so_and_everything_else_works(
    tmp_path, database_url
):
    from agencyhub.app import create_app

    app = create_app(make_settings(tmp_path, database_url))  # no STRIPE_SECRET_KEY
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            owner = await make_agency(client)
            variables = {"i": {"subAccountId": owner.primary_id, "paymentMethodId": "pm_x"}}
            body = await gql(client, ADD_CARD, variables, owner.token)
            assert body["data"]["addPaymentCard"]["userErrors"] == [
                {"code": "PAYMENTS_NOT_CONFIGURED", "field": None}
            ]
            await new_client(client, owner)  # the rest of the API is untouched
            assert await cards_of(client, owner.token, owner.primary_id) == []
