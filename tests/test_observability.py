"""What an operator sees: /metrics (guarded), request metrics by operation and outcome, one
log line per request with its id, ingestion and job counters, the outbox's backlog, and a
database that cannot be reached answered SERVICE_UNAVAILABLE."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from agencyhub import metrics as app_metrics
from agencyhub.app import create_app
from agencyhub.background import run_counted
from agencyhub.logs import JsonFormatter, request_id_from
from agencyhub.metrics import OperationNames, multiprocess_directory
from domain.events import access_changed
from persistence import metrics
from persistence.database import Database, database_unreachable
from persistence.outbox import OutboxRelay, write_events
from resolvers import viewer as reads
from resolvers.api_keys import issue_api_key
from resolvers.global_id import from_global_id
from tests.api.test_account_manager import TRANSFER, new_client, transfer_input
from tests.api.test_usage import RECORD, call
from tests.conftest import make_settings
from tests.e2e.server import free_port
from tests.factories import gql, make_agency

VIEWER = "query OpsViewer { viewer { agency { name } } }"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def guarded_client(tmp_path, database_url):
    """The app with METRICS_TOKEN set."""
    app = create_app(make_settings(tmp_path, database_url, metrics_token="s3cret-metrics"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_metrics_need_the_bearer_token_when_one_is_set(guarded_client):
    # when a scraper calls without the token, with a wrong one, then with the right one
    missing = await guarded_client.get("/metrics")
    wrong = await guarded_client.get("/metrics", headers={"Authorization": "Bearer nope"})
    right = await guarded_client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics"})

    # then only the last is served
    assert missing.status_code == wrong.status_code == 401
    assert right.status_code == 200
    assert "agencyhub_outbox_oldest_waiting_seconds" in right.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_metrics_without_a_token_are_served_to_loopback_clients_only(app_client):
    app = app_client.app

    async def scrape(host: str) -> int:
        transport = httpx.ASGITransport(app=app, client=(host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return (await client.get("/metrics")).status_code

    assert await scrape("203.0.113.9") == 403
    assert await scrape("10.1.2.3") == 403
    assert await scrape("127.0.0.1") == 200
    assert await scrape("::1") == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_requests_are_counted_by_operation_and_outcome_and_errors_by_code(app_client):
    owner = await make_agency(app_client)
    ok = ("agencyhub_graphql_request_duration_seconds_count", "OpsViewer", "ok")
    rejected = ("agencyhub_graphql_request_duration_seconds_count", "OpsViewer", "rejected")
    before = {k: sample(k[0], operation=k[1], outcome=k[2]) for k in (ok, rejected)}
    unauthenticated = sample("agencyhub_graphql_errors_total", code="UNAUTHENTICATED")

    # when one request is signed in and another is not
    assert "errors" not in await gql(app_client, VIEWER, token=owner.token)
    refused = await gql(app_client, VIEWER)

    # then one is counted ok, the other rejected with its code
    assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    after = {k: sample(k[0], operation=k[1], outcome=k[2]) for k in (ok, rejected)}
    assert after[ok] == before[ok] + 1
    assert after[rejected] == before[rejected] + 1
    assert sample("agencyhub_graphql_errors_total", code="UNAUTHENTICATED") == (unauthenticated + 1)


def test_operation_names_beyond_the_limit_or_odd_share_one_label():
    names = OperationNames(limit=2)
    assert names.label("Dashboard") == "Dashboard"
    assert names.label(None) == "anonymous"
    assert names.label("x" * 65) == "other"  # too long
    assert names.label("drop table;") == "other"  # not a GraphQL name
    assert names.label("Reports") == "Reports"
    assert names.label("Third") == "other"  # past the limit
    assert names.label("Dashboard") == "Dashboard"  # known ones keep theirs


def test_a_callers_request_id_is_kept_only_when_it_is_a_plain_token():
    assert request_id_from(b"abc-123.X:9_z") == "abc-123.X:9_z"
    for insane in (b"a b", b"x" * 129, b"<script>", b""):
        generated = request_id_from(insane)
        assert generated != insane.decode() and len(generated) == 32
    assert request_id_from(None) != request_id_from(None)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_each_request_logs_one_line_with_its_id_operation_and_agency_and_no_secret(
    app_client, caplog
):
    owner = await make_agency(app_client)
    agency_id = str(from_global_id(owner.id)[1])
    caplog.set_level(logging.INFO)
    caplog.clear()

    # when a signed-in request runs, with an id from the caller's proxy
    response = await app_client.post(
        "/graphql",
        json={"query": VIEWER},
        headers={"Authorization": f"Bearer {owner.token}", "X-Request-ID": "edge-42"},
    )

    # then its id comes back, and one JSON line says what happened, without the token
    assert response.headers["x-request-id"] == "edge-42"
    lines = [r for r in caplog.records if r.name == "agencyhub.request"]
    assert len(lines) == 1
    text = JsonFormatter().format(lines[0])
    line = orjson.loads(text)
    assert line["request_id"] == "edge-42"
    assert line["operation"] == "OpsViewer"
    assert line["agency_id"] == agency_id
    assert line["outcome"] == "ok"
    assert line["message"] == "POST /graphql 200"
    assert isinstance(line["duration_ms"], float)
    assert owner.token not in text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_what_is_logged_while_serving_a_request_carries_its_id(
    app_client, caplog, monkeypatch
):
    # given a resolver that logs, then fails unexpectedly (the error policy logs that too)
    owner = await make_agency(app_client)
    caplog.set_level(logging.INFO)
    caplog.clear()
    logger = logging.getLogger("agencyhub.test")

    async def logging_viewer(ctx):
        logger.warning("inside the request")
        raise RuntimeError("boom")

    monkeypatch.setattr(reads, "viewer", logging_viewer)

    # when a request hits it
    response = await app_client.post(
        "/graphql",
        json={"query": "{ viewer { agency { name } } }"},
        headers={"Authorization": f"Bearer {owner.token}"},
    )

    # then the client gets a masked error, and every line of the request has its id
    request_id = response.headers["x-request-id"]
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "boom" not in response.text
    inside = [r for r in caplog.records if r.getMessage() == "inside the request"]
    masked = [r for r in caplog.records if r.name == "agencyhub.errors"]
    request = [r for r in caplog.records if r.name == "agencyhub.request"]
    assert inside and masked and request
    for record in (*inside, *masked, *request):
        assert orjson.loads(JsonFormatter().format(record))["request_id"] == request_id


async def test_ingested_calls_are_counted_accepted_duplicate_and_rejected(app_client):
    owner = await make_agency(app_client)
    client = await new_client(app_client, owner)
    await gql(app_client, TRANSFER, transfer_input(owner.primary_id, client, "10"), owner.token)
    services = app_client.app.state.services
    _, key = await issue_api_key(services, from_global_id(owner.id)[1], "platform", None)
    results = ("accepted", "duplicate", "rejected")
    before = {r: sample("agencyhub_ingested_total", kind="calls", result=r) for r in results}

    # when a batch has two new calls, one repeated and one for an unknown sub-account
    unknown = "U3ViQWNjb3VudDo" + "0" * 10
    batch = [call(client, "a", 60), call(client, "b", 30), call(client, "a", 60)]
    batch.append(call(unknown, "c", 10))
    body = await gql(app_client, RECORD, {"calls": batch}, key)

    # then each is counted as the answer counts it
    answer = body["data"]["recordCalls"]
    after = {r: sample("agencyhub_ingested_total", kind="calls", result=r) for r in before}
    assert after["accepted"] - before["accepted"] == answer["accepted"] == 2
    assert after["duplicate"] - before["duplicate"] == answer["duplicates"] == 1
    assert after["rejected"] - before["rejected"] == len(answer["rejected"]) == 1


async def test_job_runs_are_counted_ok_and_failed(app_client):
    services = app_client.app.state.services

    async def nothing(_):
        return 3

    async def failing(_):
        raise RuntimeError("Stripe is away")

    ok = sample("agencyhub_job_runs_total", job="pay-out", outcome="ok")
    failed = sample("agencyhub_job_runs_total", job="pay-out", outcome="failed")
    items = sample("agencyhub_job_items_total", job="pay-out")
    assert await run_counted("pay-out", nothing, services) == 3
    with pytest.raises(RuntimeError):
        await run_counted("pay-out", failing, services)
    assert sample("agencyhub_job_runs_total", job="pay-out", outcome="ok") == ok + 1
    assert sample("agencyhub_job_runs_total", job="pay-out", outcome="failed") == failed + 1
    assert sample("agencyhub_job_items_total", job="pay-out") == items + 3


async def test_the_outbox_backlog_is_what_waits_and_the_age_of_the_oldest(database, broker, clock):
    # given events committed at two moments and not yet published
    first = clock()
    await OutboxRelay(database, broker, clock).relay_once()  # what earlier tests left
    event = access_changed(uuid.uuid4())
    async with database.transaction() as conn:
        await write_events(conn, [event], first)
    async with database.transaction() as conn:
        await write_events(conn, [event, event], first + timedelta(seconds=30))

    # then the backlog counts three, the oldest from `first`
    async with database.read() as conn:
        waiting, oldest = await metrics.outbox_backlog(conn)
    assert waiting == 3 and oldest == first
    metrics.record_outbox_backlog(waiting, oldest, first + timedelta(seconds=45))
    assert sample("agencyhub_outbox_oldest_waiting_seconds") == 45
    assert sample("agencyhub_outbox_waiting_events") == 3

    # and once the relay has published them, nothing waits
    await OutboxRelay(database, broker, clock).relay_once()
    async with database.read() as conn:
        assert await metrics.outbox_backlog(conn) == (0, None)


def test_errors_that_say_the_database_is_gone_are_told_from_the_others():
    from sqlalchemy import exc

    class Driver(Exception):
        def __init__(self, sqlstate):
            self.sqlstate = sqlstate

    assert database_unreachable(ConnectionRefusedError(111, "refused"))
    assert database_unreachable(exc.OperationalError("SELECT 1", {}, Driver("57P01")))
    assert database_unreachable(exc.DBAPIError("SELECT 1", {}, Driver("08006")))
    assert database_unreachable(exc.DBAPIError("x", {}, Exception(), connection_invalidated=True))
    assert not database_unreachable(exc.IntegrityError("INSERT", {}, Driver("23505")))
    assert not database_unreachable(exc.DBAPIError("x", {}, Driver("40P01")))
    assert not database_unreachable(ValueError("bad input"))


async def test_a_database_that_cannot_be_reached_is_answered_service_unavailable(tmp_path):
    # given a server whose PostgreSQL is not there (nothing listens on the port)
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/agencyhub"
    app = create_app(make_settings(tmp_path, url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            # when a signed-in screen asks for something
            response = await client.post(
                "/graphql",
                json={"query": VIEWER},
                headers={"Authorization": "Bearer ahs_" + "x" * 43},
            )
            ready = await client.get("/readyz")

    # then the error says so, with no driver message or SQL, and /readyz says the database is down
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert error["message"] == "The database is unavailable; try again in a moment."
    assert ready.status_code == 503 and ready.json()["database"] == "down"


def test_the_multiprocess_directory_is_emptied_at_start(tmp_path, monkeypatch):
    directory = tmp_path / "prom"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    assert multiprocess_directory(workers=2) == directory
    assert list(directory.iterdir()) == []


def test_one_worker_without_a_directory_keeps_metrics_in_memory(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert multiprocess_directory(workers=1) is None
    assert not app_metrics.is_multiprocess()


def test_pools_in_use_are_read_without_a_round_trip(tmp_path):
    database = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x")
    assert database.connections_in_use() == {"write": 0, "read": 0}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_pooled_connection_the_server_closed_is_replaced_before_a_request_uses_it(
    database_url,
):
    # given a pool holding an idle connection that PostgreSQL then terminates (as a restart
    # terminates every session)
    database = Database(database_url, pool_size=1)
    try:
        async with database.read() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        async with Database(database_url).read() as other:
            assert await other.scalar(text(f"SELECT pg_terminate_backend({pid})"))
        await asyncio.sleep(0.2)  # the termination reaches the idle connection

        # when the next request reads, then it is served on a new connection
        async with database.read() as conn:
            assert await conn.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await database.dispose()


async def test_events_handed_to_local_subscriptions_are_counted(broker):
    from tests.persistence.test_broker import confirmed, messages, wire

    topic = f"t:metrics-{uuid.uuid4().hex}"  # Redis channels are shared by every database
    delivered = sample("agencyhub_events_delivered_total")
    async with broker.subscribe([topic]) as a, broker.subscribe([topic]) as b:
        await confirmed(a, b)
        await broker.publish(topic, wire(1, topic))
        await messages(a, 1)
        await messages(b, 1)
    assert sample("agencyhub_events_delivered_total") == delivered + 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_stream_cut_off_as_too_slow_is_counted(app_client, monkeypatch):
    from dataclasses import replace

    from domain.errors import SubscriberTooSlow
    from resolvers.context import RequestContext
    from resolvers.live import authorized_messages
    from tests.persistence.test_broker import wire

    # given a signed-in stream on a topic, with room for 2 waiting events
    owner = await make_agency(app_client)
    services = replace(app_client.app.state.services, subscriber_queue_size=2)
    topic = f"t:slow-{uuid.uuid4().hex}"
    ctx = RequestContext(services, f"Bearer {owner.token}")
    stream = authorized_messages(ctx, lambda viewer: [topic], lambda viewer: None)
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.2)  # subscribed (the in-process broker confirms at once)
    cut = sample("agencyhub_subscribers_too_slow_total")

    # when 10 events arrive before it reads any
    for n in range(10):
        await services.broker.publish(topic, wire(10_000 + n, topic))

    # then it ends with SubscriberTooSlow, and the cut is counted
    with pytest.raises(SubscriberTooSlow):
        await asyncio.wait_for(first, 5)
        while True:
            await asyncio.wait_for(anext(stream), 5)
    assert sample("agencyhub_subscribers_too_slow_total") == cut + 1
