"""Live events are built and executed once per process for subscribers that ask the same
thing with the same access, and separately for anyone else."""

from __future__ import annotations

import asyncio

from resolvers.context import RequestContext
from schema import build_schema
from tests.api.test_account_manager import new_client
from tests.api.test_usage import RECORD, call
from tests.factories import gql

USAGE = """subscription($id: ID) { usageUpdated(subAccountId: $id) {
  sequence balances { tier seconds } walletBalance { amount } } }"""


async def next_result(stream):
    return await asyncio.wait_for(anext(stream), 10)  # strawberry's ExecutionResult


async def open_stream(schema, services, token, variables):
    context = RequestContext(services, None, long_lived=True)
    context.connection_params = {"authorization": f"Bearer {token}"}
    return await schema.subscribe(USAGE, variable_values=variables, context_value=context)


async def test_identical_subscriptions_share_one_execution_per_event(app_client, setup):
    owner, client, key = setup
    other = await new_client(app_client, owner, "Other", markup="10")
    services = app_client.app.state.services
    schema = build_schema()
    # given two screens with the same query and access, and two that differ from them
    same_a = await open_stream(schema, services, owner.token, {"id": client})
    same_b = await open_stream(schema, services, owner.token, {"id": client})
    everything = await open_stream(schema, services, owner.token, {})
    elsewhere = await open_stream(schema, services, owner.token, {"id": other})
    waiting = [asyncio.ensure_future(next_result(s)) for s in (same_a, same_b, everything)]
    await asyncio.sleep(0.3)  # the streams reach the broker
    # when a call is recorded for the client
    await gql(app_client, RECORD, {"calls": [call(client, duration=42)]}, key)
    first, second, wide = await asyncio.gather(*waiting)
    # then the identical screens got the very same result, the other query its own
    assert first.errors is None and first.data["usageUpdated"]["balances"]
    assert first.data is second.data
    assert wide.data is not first.data
    assert wide.data == first.data  # same event, same figures
    # and the screen on another sub-account got nothing
    quiet = asyncio.ensure_future(next_result(elsewhere))
    await asyncio.sleep(0.3)
    assert not quiet.done()
    quiet.cancel()
    await asyncio.gather(quiet, return_exceptions=True)
    for stream in (same_a, same_b, everything, elsewhere):
        await stream.aclose()
