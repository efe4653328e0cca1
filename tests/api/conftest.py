"""Fixtures shared by the API tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from agencyhub.settings import Settings
from resolvers.api_keys import issue_api_key
from resolvers.global_id import from_global_id
from tests.api.test_account_manager import TRANSFER, new_client, transfer_input
from tests.conftest import empty_all_tables, make_settings, stripe_settings
from tests.factories import gql, make_agency
from tests.payment_provider import LocalStripe


@pytest.fixture
def settings(tmp_path: Path, database_url: str, stripe_server: LocalStripe) -> Settings:
    """The API as deployed: payments on, through the test session's own Stripe."""
    return make_settings(tmp_path, database_url, **stripe_settings(stripe_server))


async def make_setup(app_client):
    """An agency, a client at 25 % holding 480 PREMIUM seconds, and an ingest API key."""
    owner = await make_agency(app_client)
    client = await new_client(app_client, owner, markup="25")
    await gql(app_client, TRANSFER, transfer_input(owner.primary_id, client, "10"), owner.token)
    services = app_client.app.state.services
    _, key = await issue_api_key(services, from_global_id(owner.id)[1], "platform", None)
    return owner, client, key


@pytest.fixture
async def setup(app_client):
    return await make_setup(app_client)


@pytest.fixture
def clean_setup(app_client, database_url):
    """`setup` for each hypothesis example: `await clean_setup()` empties every table first,
    so an example sees only its own data and a failing one replays exactly as it ran."""

    async def fresh():
        await empty_all_tables(database_url)
        return await make_setup(app_client)

    return fresh
