"""The request's session: looked up once however many fields ask at once, in the first
asker's own task, and what goes wrong reaches every asker."""

from __future__ import annotations

import asyncio
import gc

import pytest

from domain.errors import ServiceUnavailable
from resolvers import context as request_context
from resolvers.context import RequestContext
from tests.factories import make_agency

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def lookups(monkeypatch):
    """Each call of the session lookup; `failing` makes the next ones raise (a new error each
    time: one kept here would keep its traceback, and what it refers to, alive)."""
    calls: list[bytes] = []
    failing: list[type[BaseException]] = []
    real = request_context.load_session

    async def counted(database, digest, now):
        calls.append(digest)
        await asyncio.sleep(0)  # the other askers arrive while it runs
        if failing:
            raise failing[0]("the database is gone")
        return await real(database, digest, now)

    monkeypatch.setattr(request_context, "load_session", counted)
    return calls, failing


async def test_concurrent_askers_share_one_lookup(app_client, lookups):
    owner = await make_agency(app_client)
    calls, _ = lookups
    calls.clear()  # the sign-up's
    context = RequestContext(app_client.app.state.services, f"Bearer {owner.token}")

    found = await asyncio.gather(context.session(), context.session(), context.viewer())

    assert len(calls) == 1
    assert found[0] is found[1] and found[2] is found[0].viewer
    assert context.loaded_viewer() is found[2]
    assert await context.session() is found[0] and len(calls) == 1  # later askers too


async def only_asker_fails(services, token):
    """The name of what one asker alone got (nothing else holds the lookup's outcome)."""
    try:
        await RequestContext(services, f"Bearer {token}").session()
    except ServiceUnavailable as error:
        return type(error).__name__
    return None


async def test_a_failed_lookup_reaches_every_asker_and_is_not_reported_unretrieved(
    app_client, lookups
):
    owner = await make_agency(app_client)
    calls, failing = lookups
    calls.clear()  # the sign-up's
    failing.append(ServiceUnavailable)
    reported = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, details: reported.append(details))
    try:
        context = RequestContext(app_client.app.state.services, f"Bearer {owner.token}")
        outcomes = await asyncio.gather(
            context.session(), context.session(), return_exceptions=True
        )
        alone = await only_asker_fails(app_client.app.state.services, owner.token)
        del context
        gc.collect()
    finally:
        loop.set_exception_handler(None)

    assert len(calls) == 2
    assert all(isinstance(outcome, ServiceUnavailable) for outcome in outcomes)
    assert alone == "ServiceUnavailable"
    assert reported == []


async def asked_twice(app_client):
    """A request's context, the owner it is signed in as, and two askers of its session: the
    first inside the lookup, the second waiting for it."""
    owner = await make_agency(app_client)
    context = RequestContext(app_client.app.state.services, f"Bearer {owner.token}")
    first = asyncio.ensure_future(context.session())
    await asyncio.sleep(0)  # the first asker is inside the lookup
    second = asyncio.ensure_future(context.session())
    await asyncio.sleep(0)
    return context, owner, first, second


async def test_a_cancelled_first_asker_cancels_the_lookup_for_the_others(app_client, lookups):
    context, _, first, second = await asked_twice(app_client)
    first.cancel()

    outcomes = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 5)

    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)
    assert context.loaded_viewer() is None


async def test_a_cancelled_waiter_leaves_the_lookup_to_the_others(app_client, lookups):
    context, owner, first, waiter = await asked_twice(app_client)
    waiter.cancel()  # a sibling field failed, say

    found = await asyncio.wait_for(first, 5)

    assert found is not None and found.user.email == owner.email
    assert waiter.cancelled()
    assert await context.session() is found  # later askers get it too
