"""Live events are built and executed once per process for subscribers that ask the same
thing with the same access, and separately for anyone else."""

from __future__ import annotations

import asyncio

from resolvers.context import RequestContext
from schema import build_schema
from tests.api.test_account_manager import TRANSFER, new_client, transfer_input
from tests.api.test_usage import RECORD, call
from tests.factories import gql

USAGE = """subscription($id: ID, $after: String) { usageUpdated(subAccountId: $id,
  afterSequence: $after) { sequence subAccount { id } balances { tier seconds }
  walletBalance { amount } } }"""


async def next_result(stream):
    return await asyncio.wait_for(anext(stream), 10)  # strawberry's ExecutionResult


async def open_stream(schema, services, token, variables):
    """A screen that replays from the first event (afterSequence 0): once it has shown what
    was there before, it is live, and nothing committed afterwards can miss it."""
    context = RequestContext(services, None, long_lived=True)
    context.connection_params = {"authorization": f"Bearer {token}"}
    return await schema.subscribe(
        USAGE, variable_values={**variables, "after": "0"}, context_value=context
    )


async def test_identical_subscriptions_share_one_execution_per_event(app_client, setup):
    owner, client, key = setup  # the client holds minutes from a transfer: two usage events
    other = await new_client(app_client, owner, "Other", markup="10")
    moved = await gql(
        app_client, TRANSFER, transfer_input(owner.primary_id, other, "1"), owner.token
    )
    assert moved["data"]["transferMinutes"]["userErrors"] == []  # two more usage events
    services = app_client.app.state.services
    schema = build_schema()
    # given two screens with the same query and access, and two that differ from them
    same_a = await open_stream(schema, services, owner.token, {"id": client})
    same_b = await open_stream(schema, services, owner.token, {"id": client})
    everything = await open_stream(schema, services, owner.token, {})
    elsewhere = await open_stream(schema, services, owner.token, {"id": other})
    # each live once it has replayed the transfers of what it watches
    for stream, transfers in ((same_a, 1), (same_b, 1), (everything, 4), (elsewhere, 1)):
        for _ in range(transfers):
            assert (await next_result(stream)).errors is None
    # when a call is recorded for the client
    await gql(app_client, RECORD, {"calls": [call(client, duration=42)]}, key)
    first, second, wide = await asyncio.gather(
        *(next_result(s) for s in (same_a, same_b, everything))
    )
    # then the identical screens got the very same result, the other query its own
    assert first.errors is None and first.data["usageUpdated"]["balances"]
    assert first.data["usageUpdated"]["subAccount"]["id"] == client
    assert first.data is second.data
    assert wide.data is not first.data
    assert wide.data == first.data  # same event, same figures
    # and the screen on another sub-account got nothing: the next it shows is its own call
    await gql(app_client, RECORD, {"calls": [call(other, duration=7)]}, key)
    own = await next_result(elsewhere)
    assert own.errors is None and own.data["usageUpdated"]["subAccount"]["id"] == other
    for stream in (same_a, same_b, everything, elsewhere):
        await stream.aclose()
