"""Outgoing webhooks against real HTTP receivers on loopback: queued with the change that
caused them, signed, delivered at least once and in order per endpoint, retried on the
schedule (the test moves the clock instead of waiting), listed, and never sent to a private
address however the host resolves."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from domain.webhooks import SignatureError, verify
from persistence import webhook_sender
from persistence.tables import AuditLogRow, WebhookDeliveryRow, WebhookEndpointRow
from resolvers import jobs
from resolvers.global_id import from_global_id
from tests.api.test_account_manager import RESTORE, SUSPEND, new_client
from tests.conftest import make_settings
from tests.factories import gql, make_agency
from tests.webhook_receiver import Received, receiver

CREATE = """mutation($i: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $i) {
  endpoint { id url events enabled createdAt } secret userErrors { code field message } } }"""
DELETE = """mutation($id: ID!) { deleteWebhookEndpoint(input: {id: $id}) {
  endpoint { id } userErrors { code } } }"""
PING = """mutation($id: ID!) { pingWebhookEndpoint(input: {id: $id}) {
  endpoint { id } userErrors { code } } }"""
DELIVERIES = """query($id: ID!, $first: Int, $after: String) { node(id: $id) {
  ... on WebhookEndpoint { deliveries(first: $first, after: $after) { totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { eventId kind status attempts lastResponseStatus lastError test
                   nextAttemptAt createdAt deliveredAt } } } } } }"""
ENDPOINTS = """{ viewer { agency { webhookEndpoints { totalCount
  edges { node { id url events } } } } } }"""
AUDIT = """{ viewer { agency { auditLog(first: 10) { edges { node { kind summary } } } } } }"""
SUSPENSIONS = ["SUBACCOUNT_SUSPENDED", "SUBACCOUNT_RESTORED"]


async def create(client, token, url, events=SUSPENSIONS):
    body = await gql(client, CREATE, {"i": {"url": url, "events": events}}, token)
    return body["data"]["createWebhookEndpoint"]


async def endpoint_for(client, owner, url, events=SUSPENSIONS):
    made = await create(client, owner.token, url, events)
    assert made["userErrors"] == [], made
    return made["endpoint"]["id"], made["secret"]


async def deliveries(client, token, endpoint_id, first=50):
    body = await gql(client, DELIVERIES, {"id": endpoint_id, "first": first}, token)
    return [e["node"] for e in body["data"]["node"]["deliveries"]["edges"]]


async def deliver(client) -> int:
    """One run of the server's delivery job."""
    return await jobs.deliver_webhooks(client.app.state.services)


def check_signature(received: Received, secret: str, now: datetime) -> int:
    return verify(
        secret, received.headers.get("Agencyhub-Signature"), received.body, now=now.timestamp()
    )


async def test_a_receiver_failing_twice_gets_the_event_on_the_third_attempt_in_order(
    app_client, clock
):
    owner = await make_agency(app_client)
    acme = await new_client(app_client, owner, "Acme")
    with receiver() as hook:
        endpoint_id, secret = await endpoint_for(app_client, owner, hook.url)
        hook.script(500, 503)  # then 200
        # given two events: a suspension, then a restoration
        await gql(app_client, SUSPEND, {"id": acme, "note": "unpaid"}, owner.token)
        await gql(app_client, RESTORE, {"id": acme}, owner.token)
        # when the worker runs: the first event fails; the second waits behind it
        assert await deliver(app_client) == 0
        assert hook.kinds() == ["SUBACCOUNT_SUSPENDED"]
        # nothing is retried before its time (1 s)
        clock.advance(timedelta(milliseconds=900))
        await deliver(app_client)
        assert len(hook.got) == 1
        clock.advance(timedelta(milliseconds=100))
        assert await deliver(app_client) == 0  # second attempt: 503
        assert len(hook.got) == 2
        clock.advance(timedelta(seconds=5))
        # then the third attempt succeeds, and the restoration follows in the same run
        assert await deliver(app_client) == 2
        assert hook.kinds() == ["SUBACCOUNT_SUSPENDED"] * 3 + ["SUBACCOUNT_RESTORED"]
        assert await deliver(app_client) == 0  # delivered once: nothing more goes out
        assert len(hook.got) == 4
    # every attempt carries the same event, signed with the endpoint's secret
    first, *retries, restored = hook.got
    assert all(r.body == first.body for r in retries)
    for received in hook.got:
        check_signature(received, secret, clock.now)
        assert received.headers["Content-Type"] == "application/json"
        assert received.headers["Agencyhub-Event-Id"] == received.event["id"]
    event = first.event
    assert list(event) == ["id", "kind", "occurredAt", "agencyId", "subAccountId", "data"]
    assert event["id"].startswith("evt_")
    assert (event["agencyId"], event["subAccountId"]) == (owner.id, acme)
    assert event["data"] == {"name": "Acme", "note": "unpaid"}
    assert restored.event["data"] == {"name": "Acme"}
    # and the log lists both, newest first, with their attempts
    log = await deliveries(app_client, owner.token, endpoint_id)
    assert [(d["kind"], d["status"], d["attempts"], d["lastResponseStatus"]) for d in log] == [
        ("SUBACCOUNT_RESTORED", "DELIVERED", 1, 200),
        ("SUBACCOUNT_SUSPENDED", "DELIVERED", 3, 200),
    ]
    assert [d["eventId"] for d in log] == [restored.event["id"], event["id"]]
    assert all(d["deliveredAt"] and d["lastError"] is None for d in log)


async def test_retries_give_up_after_24_hours_and_later_events_then_proceed(app_client, clock):
    owner = await make_agency(app_client)
    acme = await new_client(app_client, owner, "Acme")
    with receiver() as hook:
        endpoint_id, _ = await endpoint_for(app_client, owner, hook.url)
        hook.answer = lambda r: (
            (500 if r.event["kind"] == "SUBACCOUNT_SUSPENDED" else 204),
            {},
            0.0,
        )
        await gql(app_client, SUSPEND, {"id": acme}, owner.token)
        await gql(app_client, RESTORE, {"id": acme}, owner.token)
        started = clock.now
        attempts_at = []
        while True:
            attempts_at.append(clock.now)
            await deliver(app_client)
            [_, suspension] = await deliveries(app_client, owner.token, endpoint_id)
            if suspension["status"] != "PENDING":
                break
            assert hook.kinds() == ["SUBACCOUNT_SUSPENDED"] * len(attempts_at)  # still waits
            clock.now = datetime.fromisoformat(suspension["nextAttemptAt"])
        log = await deliveries(app_client, owner.token, endpoint_id)
    gaps = [round((b - a).total_seconds()) for a, b in itertools.pairwise(attempts_at)]
    assert gaps[:6] == [1, 5, 30, 120, 600, 3600] and set(gaps[6:]) == {3600}
    assert attempts_at[-1] - started <= timedelta(hours=24)
    assert [(d["kind"], d["status"], d["attempts"]) for d in log] == [
        ("SUBACCOUNT_RESTORED", "DELIVERED", 1),
        ("SUBACCOUNT_SUSPENDED", "FAILED", 29),
    ]
    assert log[1]["lastResponseStatus"] == 500 and log[1]["lastError"] == "HTTP 500"
    assert hook.kinds()[-1] == "SUBACCOUNT_RESTORED"


async def test_redirects_are_not_followed_and_count_as_failures(app_client, clock):
    owner = await make_agency(app_client)
    acme = await new_client(app_client, owner)
    with receiver() as hook:
        hook.answer = lambda r: (302, {"Location": "http://169.254.169.254/latest"}, 0.0)
        endpoint_id, _ = await endpoint_for(app_client, owner, hook.url)
        await gql(app_client, SUSPEND, {"id": acme}, owner.token)
        await deliver(app_client)
        assert [r.path for r in hook.got] == ["/hook"]
    [delivery] = await deliveries(app_client, owner.token, endpoint_id)
    assert (delivery["status"], delivery["attempts"], delivery["lastResponseStatus"]) == (
        "PENDING",
        1,
        302,
    )


async def test_a_slow_endpoint_times_out_and_is_tried_again(app_client, clock, monkeypatch):
    monkeypatch.setattr(webhook_sender, "DELIVERY_TIMEOUT_SECONDS", 0.3)
    owner = await make_agency(app_client)
    acme = await new_client(app_client, owner)
    with receiver() as hook:
        hook.answer = lambda r: (200, {}, 1.5)
        endpoint_id, _ = await endpoint_for(app_client, owner, hook.url)
        started = time.monotonic()
        await gql(app_client, SUSPEND, {"id": acme}, owner.token)  # the API does not wait
        assert time.monotonic() - started < 1.0
        await deliver(app_client)
        assert time.monotonic() - started < 1.4
    [delivery] = await deliveries(app_client, owner.token, endpoint_id)
    assert (delivery["status"], delivery["attempts"], delivery["lastResponseStatus"]) == (
        "PENDING",
        1,
        None,
    )
    assert delivery["lastError"].startswith("timed out")


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/hook",
        "https://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/latest",
        "https://[::ffff:10.0.0.1]/hook",
        "https://[fe80::1]/hook",
        "https://0.0.0.0/hook",
        "http://8.8.8.8/hook",  # public, but plain http
        "https://internal.example/hook",  # a name resolving to a private address
        "https://mixed.example/hook",  # one public and one private address
        "ftp://127.0.0.1/hook",
    ],
)
async def test_private_link_local_and_metadata_targets_are_refused(app_client, url):
    services = app_client.app.state.services
    names = {
        "internal.example": ["10.1.2.3"],
        "mixed.example": ["93.184.216.34", "169.254.169.254"],
    }

    async def resolve(host: str, port: int):
        if host in names:
            return [ipaddress.ip_address(a) for a in names[host]]
        return await webhook_sender.resolve_host(host, port)

    services.resolve_host = resolve
    owner = await make_agency(app_client)
    made = await create(app_client, owner.token, url)
    assert made["endpoint"] is None and made["secret"] is None
    assert [(e["code"], e["field"]) for e in made["userErrors"]] == [
        ("URL_NOT_ALLOWED", ["input", "url"])
    ]
    listed = (await gql(app_client, ENDPOINTS, None, owner.token))["data"]
    assert listed["viewer"]["agency"]["webhookEndpoints"]["totalCount"] == 0


async def test_each_delivery_resolves_again_and_connects_to_the_address_it_checked(
    app_client, clock
):
    """DNS rebinding: the host resolved to loopback when the endpoint was made and to a
    private address later; nothing is sent then. The name is not in any real DNS: the request
    reaching the receiver proves it went to the checked address (with Host: the name)."""
    services = app_client.app.state.services
    answers = {"hooks.rebind.example": "127.0.0.1"}

    async def resolve(host: str, port: int):
        return [ipaddress.ip_address(answers[host])]

    services.resolve_host = resolve
    owner = await make_agency(app_client)
    acme = await new_client(app_client, owner)
    with receiver() as hook:
        url = f"http://hooks.rebind.example:{hook.port}/hook"
        endpoint_id, _ = await endpoint_for(app_client, owner, url)
        answers["hooks.rebind.example"] = "10.0.0.7"
        await gql(app_client, SUSPEND, {"id": acme}, owner.token)
        await deliver(app_client)
        assert hook.got == []
        [refused] = await deliveries(app_client, owner.token, endpoint_id)
        assert (refused["status"], refused["attempts"], refused["lastResponseStatus"]) == (
            "PENDING",
            1,
            None,
        )
        assert "10.0.0.7" in refused["lastError"]
        # back on loopback, the retry goes through, to the checked address
        answers["hooks.rebind.example"] = "127.0.0.1"
        clock.advance(timedelta(seconds=1))
        assert await deliver(app_client) == 1
        [received] = hook.got
        assert received.headers["Host"] == f"hooks.rebind.example:{hook.port}"


async def test_the_signing_secret_is_shown_once_and_never_stored_in_clear(app_client):
    owner = await make_agency(app_client)
    with receiver() as hook:
        endpoint_id, secret = await endpoint_for(app_client, owner, hook.url)
    assert secret.startswith("whsec_") and len(secret) > 40
    services = app_client.app.state.services
    async with services.database.read() as conn:
        [row] = (await conn.execute(select(WebhookEndpointRow.__table__))).all()
        summaries = (await conn.execute(select(AuditLogRow.summary))).scalars().all()
    stored = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row._mapping.values())
    assert secret.encode() not in stored
    assert secret.encode()[6:] not in stored  # nor its random part
    assert all(secret not in s for s in summaries)
    # sealed under a key derived from SECRET_KEY: it opens with that key alone
    assert services.tokens.unseal(row.secret_sealed) == secret
    listed = (await gql(app_client, ENDPOINTS, None, owner.token))["data"]
    assert "whsec_" not in str(listed)
    assert from_global_id(endpoint_id) is not None


async def test_a_ping_is_sent_at_once_outside_the_order_and_listed_as_a_test(app_client, clock):
    owner = await make_agency(app_client)
    acme = await new_client(app_client, owner)
    with receiver() as hook:
        endpoint_id, secret = await endpoint_for(app_client, owner, hook.url, ["PAYOUT_PAID"])
        other_id, _ = await endpoint_for(app_client, owner, hook.url)
        # an event stuck behind failures on the other endpoint does not hold a ping back
        hook.script(500)
        await gql(app_client, SUSPEND, {"id": acme}, owner.token)
        await deliver(app_client)
        ping = await gql(app_client, PING, {"id": other_id}, owner.token)
        assert ping["data"]["pingWebhookEndpoint"]["userErrors"] == []
        [queued, _] = await deliveries(app_client, owner.token, other_id)
        assert (queued["test"], queued["status"], queued["attempts"]) == (True, "PENDING", 0)
        assert await deliver(app_client) == 1
        test_event = hook.got[-1].event
        assert (test_event["kind"], test_event["data"]) == ("SUBACCOUNT_SUSPENDED", {"test": True})
        assert test_event["subAccountId"] is None
        check_signature(hook.got[-1], (await _secret_of(app_client, other_id)), clock.now)
        # a ping that fails is not retried
        hook.script(500)
        await gql(app_client, PING, {"id": endpoint_id}, owner.token)
        await deliver(app_client)
        clock.advance(timedelta(hours=2))
        await deliver(app_client)
        [failed] = await deliveries(app_client, owner.token, endpoint_id)
        assert hook.got[-2].event["kind"] == "PAYOUT_PAID"
    assert (failed["test"], failed["status"], failed["attempts"]) == (True, "FAILED", 1)
    assert failed["kind"] == "PAYOUT_PAID" and failed["lastResponseStatus"] == 500
    [pinged, _] = await deliveries(app_client, owner.token, other_id)
    assert (pinged["status"], pinged["test"]) == ("DELIVERED", True)
    del secret


async def _secret_of(client, endpoint_id: str) -> str:
    services = client.app.state.services
    async with services.database.read() as conn:
        sealed = await conn.scalar(
            select(WebhookEndpointRow.secret_sealed).where(
                WebhookEndpointRow.id == from_global_id(endpoint_id)[1]  # type: ignore[index]
            )
        )
    return services.tokens.unseal(sealed)


async def test_events_reach_only_subscribed_endpoints_of_their_own_agency(app_client):
    owner = await make_agency(app_client)
    other = await make_agency(app_client)
    acme = await new_client(app_client, owner)
    with receiver() as hook:
        await endpoint_for(app_client, owner, hook.url, ["PAYOUT_PAID"])
        await endpoint_for(app_client, other, hook.url)
        # a suspension in the owner's agency: no endpoint of its own listens to it
        await gql(app_client, SUSPEND, {"id": acme}, owner.token)
        services = app_client.app.state.services
        async with services.database.read() as conn:
            rows = (await conn.execute(select(WebhookDeliveryRow.__table__))).all()
        assert rows == []
        await deliver(app_client)
        assert hook.got == []


async def test_a_second_suspension_only_edits_the_note_and_raises_nothing(app_client):
    owner = await make_agency(app_client)
    acme = await new_client(app_client, owner)
    with receiver() as hook:
        endpoint_id, _ = await endpoint_for(app_client, owner, hook.url)
        await gql(app_client, SUSPEND, {"id": acme, "note": "a"}, owner.token)
        await gql(app_client, SUSPEND, {"id": acme, "note": "b"}, owner.token)
        assert len(await deliveries(app_client, owner.token, endpoint_id)) == 1


async def test_deleting_an_endpoint_drops_its_queue_and_every_step_is_audited(app_client):
    owner = await make_agency(app_client)
    acme = await new_client(app_client, owner)
    with receiver() as hook:
        endpoint_id, _ = await endpoint_for(app_client, owner, hook.url)
        await gql(app_client, PING, {"id": endpoint_id}, owner.token)
        await gql(app_client, SUSPEND, {"id": acme}, owner.token)
        deleted = await gql(app_client, DELETE, {"id": endpoint_id}, owner.token)
        assert deleted["data"]["deleteWebhookEndpoint"] == {
            "endpoint": {"id": endpoint_id},
            "userErrors": [],
        }
        assert await deliver(app_client) == 0
        assert hook.got == []
        again = await gql(app_client, DELETE, {"id": endpoint_id}, owner.token)
        assert again["data"]["deleteWebhookEndpoint"]["userErrors"] == [{"code": "NOT_FOUND"}]
    log = (await gql(app_client, AUDIT, None, owner.token))["data"]["viewer"]["agency"]
    kinds = [e["node"]["kind"] for e in log["auditLog"]["edges"]]
    assert kinds[:4] == [
        "WEBHOOK_ENDPOINT_DELETED",
        "SUBACCOUNT_SUSPENDED",
        "WEBHOOK_ENDPOINT_PINGED",
        "WEBHOOK_ENDPOINT_CREATED",
    ]
    created = log["auditLog"]["edges"][3]["node"]["summary"]
    assert created == (
        f"added the webhook endpoint {hook.url} for SUBACCOUNT_SUSPENDED, SUBACCOUNT_RESTORED"
    )


async def test_deliveries_are_paged_newest_first(app_client):
    owner = await make_agency(app_client)
    acme = await new_client(app_client, owner)
    with receiver() as hook:
        endpoint_id, _ = await endpoint_for(app_client, owner, hook.url)
        for _ in range(3):
            await gql(app_client, SUSPEND, {"id": acme}, owner.token)
            await gql(app_client, RESTORE, {"id": acme}, owner.token)
    seen, after = [], None
    while True:
        body = await gql(
            app_client, DELIVERIES, {"id": endpoint_id, "first": 4, "after": after}, owner.token
        )
        connection = body["data"]["node"]["deliveries"]
        assert connection["totalCount"] == 6
        seen += [e["node"] for e in connection["edges"]]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert [d["kind"] for d in seen] == ["SUBACCOUNT_RESTORED", "SUBACCOUNT_SUSPENDED"] * 3
    assert len({d["eventId"] for d in seen}) == 6


async def test_a_paid_payout_is_announced(app_client, stripe_server):
    from tests.api.test_buy_minutes import buy, paying_client
    from tests.api.test_payouts import account, request, settings

    owner, client = await paying_client(app_client, stripe_server)
    with receiver() as hook:
        await endpoint_for(app_client, owner, hook.url, ["PAYOUT_PAID"])
        await buy(app_client, owner.token, client, 10)
        await settings(app_client, owner.token, connectedAccountId=account("hooked"))
        payout = (await request(app_client, owner.token, key="now"))["payout"]
        assert payout["status"] == "PAID"
        assert await deliver(app_client) == 1
    [received] = hook.got
    event = received.event
    assert (event["kind"], event["agencyId"], event["subAccountId"]) == (
        "PAYOUT_PAID",
        owner.id,
        None,
    )
    assert event["data"]["payoutId"] == payout["id"]
    assert (event["data"]["amount"], event["data"]["currency"]) == ("0.75", "USD")


async def test_the_server_delivers_by_itself_soon_after_the_commit(tmp_path, database_url):
    """With the server's jobs on, a commit that queues a delivery wakes the worker: it goes
    out well before the (here 60 s) poll would have found it."""
    import httpx

    from agencyhub.app import create_app

    settings = make_settings(tmp_path, database_url, server_jobs=True, webhook_poll_seconds=60)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            owner = await make_agency(client)
            acme = await new_client(client, owner)
            with receiver() as hook:
                await endpoint_for(client, owner, hook.url)
                await asyncio.sleep(0.2)  # the worker's first pass is over: it now sleeps
                await gql(client, SUSPEND, {"id": acme}, owner.token)
                for _ in range(100):
                    if hook.got:
                        break
                    await asyncio.sleep(0.05)
                assert hook.kinds() == ["SUBACCOUNT_SUSPENDED"]


def test_a_forged_or_stale_delivery_fails_the_documented_check():
    """The receiver's side, end to end over a real body: see tests/domain for the cases."""
    from domain.webhooks import sign

    body = b'{"id":"evt_x"}'
    header = sign("whsec_right", 1_700_000_000, body)
    assert verify("whsec_right", header, body, now=1_700_000_000) == 1_700_000_000
    with pytest.raises(SignatureError) as forged:
        verify("whsec_right", sign("whsec_wrong", 1_700_000_000, body), body, now=1_700_000_000)
    with pytest.raises(SignatureError) as stale:
        verify("whsec_right", header, body, now=1_700_000_000 + 3600)
    assert (forged.value.reason, stale.value.reason) == ("mismatch", "stale")


async def test_another_agencys_endpoint_is_neither_seen_nor_touched(app_client):
    owner = await make_agency(app_client)
    other = await make_agency(app_client)
    with receiver() as hook:
        theirs, _ = await endpoint_for(app_client, other, hook.url)
        await gql(app_client, PING, {"id": theirs}, other.token)
        for mutation, name in ((DELETE, "deleteWebhookEndpoint"), (PING, "pingWebhookEndpoint")):
            body = await gql(app_client, mutation, {"id": theirs}, owner.token)
            assert body["data"][name] == {"endpoint": None, "userErrors": [{"code": "NOT_FOUND"}]}
        seen = await gql(app_client, DELIVERIES, {"id": theirs}, owner.token)
        assert seen["data"]["node"] is None
        listed = (await gql(app_client, ENDPOINTS, None, owner.token))["data"]
        assert listed["viewer"]["agency"]["webhookEndpoints"]["totalCount"] == 0
        assert len(await deliveries(app_client, other.token, theirs)) == 1  # still theirs alone


async def test_a_secret_sealed_under_another_secret_key_is_a_failed_attempt_not_a_crash(
    app_client,
):
    from resolvers.security import Tokens

    owner = await make_agency(app_client)
    acme = await new_client(app_client, owner)
    with receiver() as hook:
        endpoint_id, _ = await endpoint_for(app_client, owner, hook.url)
        await gql(app_client, SUSPEND, {"id": acme}, owner.token)
        services = app_client.app.state.services
        kept, services.tokens = services.tokens, Tokens(b"another-secret-key")
        assert await deliver(app_client) == 0  # as if SECRET_KEY had changed since
        services.tokens = kept  # (sessions are hashed with it too)
        assert hook.got == []
    [delivery] = await deliveries(app_client, owner.token, endpoint_id)
    assert (delivery["status"], delivery["attempts"]) == ("PENDING", 1)
    assert "SECRET_KEY" in delivery["lastError"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_https_goes_to_the_checked_address_and_verifies_the_certificate_for_the_name(
    app_client,
):
    """Over real TLS: the request is addressed to the IP that was checked, and the
    certificate must still be valid for the URL's host name (sent as SNI)."""
    import ssl

    import trustme

    ca = trustme.CA()
    services = app_client.app.state.services
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    services.webhook_tls = client_tls

    async def resolve(host: str, port: int):
        return [ipaddress.ip_address("127.0.0.1")]

    services.resolve_host = resolve
    owner = await make_agency(app_client)
    acme = await new_client(app_client, owner)
    for certified_name, delivered in (("hooks.tls.example", 1), ("someone-else.example", 0)):
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(certified_name).configure_cert(server_tls)
        with receiver(server_tls) as hook:
            url = f"https://hooks.tls.example:{hook.port}/hook"
            endpoint_id, _ = await endpoint_for(app_client, owner, url)
            await gql(app_client, SUSPEND, {"id": acme}, owner.token)
            await gql(app_client, RESTORE, {"id": acme}, owner.token)
            assert await deliver(app_client) == 2 * delivered
            assert len(hook.got) == 2 * delivered
        if delivered:
            assert hook.got[0].headers["Host"] == f"hooks.tls.example:{hook.port}"
        else:
            [_, refused] = await deliveries(app_client, owner.token, endpoint_id)
            assert "CERTIFICATE_VERIFY_FAILED" in refused["lastError"]
        await gql(app_client, DELETE, {"id": endpoint_id}, owner.token)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_operators_can_refuse_loopback_targets(tmp_path, database_url):
    import httpx

    from agencyhub.app import create_app

    settings = make_settings(tmp_path, database_url, webhook_allow_loopback=False)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            owner = await make_agency(client)
            for url in ("http://127.0.0.1:9/hook", "https://[::1]/hook"):
                made = await create(client, owner.token, url)
                assert [e["code"] for e in made["userErrors"]] == ["URL_NOT_ALLOWED"], url


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_agency_has_at_most_20_endpoints(app_client):
    owner = await make_agency(app_client)
    made = await asyncio.gather(
        *(create(app_client, owner.token, f"https://127.0.0.1/{n}") for n in range(22))
    )
    codes = sorted(e["code"] for m in made for e in m["userErrors"])
    assert codes == ["WEBHOOK_ENDPOINT_LIMIT"] * 2
    listed = (await gql(app_client, ENDPOINTS, None, owner.token))["data"]
    assert listed["viewer"]["agency"]["webhookEndpoints"]["totalCount"] == 20
