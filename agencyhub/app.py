"""The ASGI app: GraphQL over HTTP and WebSocket at /graphql, /healthz, /readyz and /metrics.

`create_app(settings)` builds nothing at import time; the lifespan opens the database, the
broker and the outbox relay, and closes them again. Browser front ends on the origins in
`CORS_ALLOWED_ORIGINS` may call it (CORS preflights, WebSocket upgrades); others may not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData, process_result
from strawberry.http.websocket_origin import normalize_allowed_origins
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET

from agencyhub.background import JobRunner, payment_jobs, wallet_jobs, webhook_job
from agencyhub.collector import SurvivorFreezer
from agencyhub.limits import BodySizeLimit, RequestLimit, RequestRateLimit
from agencyhub.logs import CURRENT_REQUEST, stamp_request_ids
from agencyhub.metrics import Sampler, metrics_endpoint, process_exiting
from agencyhub.observability import RequestObserver, observe_operation
from agencyhub.persisted_queries import AutomaticPersistedQueries, PersistedQueryProblem
from agencyhub.settings import Settings
from agencyhub.websocket import KeepAlive, KeptAliveHandler, TextFrames
from persistence.broker import Broker, InProcessBroker, RedisBroker
from persistence.database import Database
from persistence.mail import build_mailer
from persistence.migrate import upgrade
from persistence.outbox import OutboxRelay
from persistence.persisted_queries import build_persisted_queries
from persistence.rate_limit import build_rate_limiter
from persistence.stripe_gateway import StripeGateway
from resolvers.context import LoginLimits, RequestContext, Services
from resolvers.purchases import receive_webhook
from resolvers.security import Passwords, Tokens
from schema import build_schema
from schema.roots import Schema

log = logging.getLogger("agencyhub")


def utc_now() -> datetime:
    return datetime.now(UTC)


class GraphQLApp(GraphQL[RequestContext, None]):
    """strawberry's ASGI view with our context, fast JSON, connection-time auth, text frames
    and keep-alive pings on WebSocket."""

    services: Services
    persisted_queries: AutomaticPersistedQueries
    websocket_adapter_class = TextFrames

    schema: Schema

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        try:
            if isinstance(request, Request) and request.method == "POST" and context is UNSET:
                answered = await self._answer_prepared(request)
                if isinstance(answered, Response):
                    return answered
                context = answered
            return await super().run(request, context, root_value)
        except PersistedQueryProblem as problem:
            return Response(problem.body(), problem.status, media_type="application/json")

    async def _answer_prepared(self, request: Request) -> Response | Any:
        """A JSON POST of a query or mutation the schema has seen before, answered by
        `Schema.execute_prepared` without strawberry's view: no content negotiation, request
        adapter or sub-response per request. Anything else (another content type, a batch, a
        text not seen or invalid, a subscription) gets the request's context or UNSET back and
        goes through strawberry's view, which reads the body Starlette kept and answers as it
        always has. A persisted query's hash is turned into its text here as there (and the
        text sent with its hash kept)."""
        headers = request.headers
        if not headers.get("content-type", "").startswith("application/json"):
            return UNSET
        if self._stream_transport_map and self._get_stream_transport_from_headers(headers):
            return UNSET  # a subscription over HTTP (multipart, SSE)
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return UNSET
        if type(data) is not dict:
            return UNSET
        query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
        extensions = data.get("extensions")
        if (
            (query is not None and type(query) is not str)
            or (variables is not None and type(variables) is not dict)
            or (name is not None and type(name) is not str)
            or (extensions is not None and type(extensions) is not dict)
        ):
            return UNSET
        if extensions:
            query = await self.persisted_queries.query_for(query, extensions)
        if query is None:
            return UNSET
        context = await self.get_context(request, None)
        result = await self.schema.execute_prepared(query, variables, context, name)
        if result is None:
            return context
        return Response(orjson.dumps(process_result(result)), media_type="application/json")

    async def parse_http_body(self, request: Any) -> Any:
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData) and data.extensions:
            data.query = await self.persisted_queries.query_for(data.query, data.extensions)
        return data

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET with a persisted query's hash carries no `query`, and may accept */*.
        return "extensions" not in request.query_params and super().should_render_graphql_ide(
            request
        )

    async def get_context(self, request: Request | WebSocket, response: Any) -> RequestContext:
        client = request.client.host if request.client else None
        if isinstance(request, WebSocket):
            return RequestContext(self.services, None, long_lived=True, client_host=client)
        context = RequestContext(
            self.services, request.headers.get("authorization"), client_host=client
        )
        observed = CURRENT_REQUEST.get()
        if observed is not None:
            observed.context = context  # the request's log line names the viewer's agency
        return context

    async def on_ws_connect(self, context: RequestContext) -> None:
        # A socket that presents a token must present a valid one; no token means anonymous.
        if context.token is not None and await context.session() is None:
            raise ConnectionRejectionError({"code": "UNAUTHENTICATED"})

    def encode_json(self, data: object) -> bytes:  # type: ignore[override]
        return orjson.dumps(data)  # HTTP bodies; WebSocket frames are text (TextFrames)

    def decode_json(self, data: str | bytes) -> object:
        # orjson.JSONDecodeError is a json.JSONDecodeError: bad bodies still get a clear 400.
        return orjson.loads(data)


def browser_origins(settings: Settings) -> list[str]:
    """CORS_ALLOWED_ORIGINS, normalised as browsers send them ("https://App.example:443" is
    "https://app.example"); anything but an exact origin stops the start with a clear error."""
    if "*" in settings.allowed_origins:
        raise ValueError("CORS_ALLOWED_ORIGINS lists exact origins; '*' is not accepted.")
    try:
        return sorted(normalize_allowed_origins(settings.allowed_origins))
    except ValueError as error:
        raise ValueError(f"CORS_ALLOWED_ORIGINS: {error}") from None


def build_broker(settings: Settings) -> Broker:
    return RedisBroker(settings.redis_url) if settings.redis_url else InProcessBroker()


def build_stripe(settings: Settings) -> StripeGateway | None:
    """Stripe when STRIPE_SECRET_KEY is set; without it payments answer PAYMENTS_NOT_CONFIGURED."""
    if settings.stripe_secret_key is None:
        return None
    webhook_secret = settings.stripe_webhook_secret
    return StripeGateway(
        settings.stripe_secret_key.get_secret_value(),
        None if webhook_secret is None else webhook_secret.get_secret_value(),
        settings.stripe_api_base,
        settings.stripe_max_network_retries,
    )


@contextlib.asynccontextmanager
async def running_services(settings: Settings) -> AsyncIterator[tuple[Services, OutboxRelay]]:
    """Database (migrated in the embedded default), broker and relay, closed on exit."""
    tokens = Tokens(settings.secret())  # first: no SECRET_KEY stops before the database opens
    if settings.is_embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        pool_pre_ping=settings.db_pool_pre_ping,
    )
    try:
        if settings.should_auto_migrate:
            await upgrade(database.engine)
        broker = build_broker(settings)
        await broker.start()
        relay = OutboxRelay(database, broker, utc_now, poll_interval=settings.outbox_poll_seconds)
        rate_limiter = build_rate_limiter(settings.redis_url)
        try:
            yield (
                Services(
                    database=database,
                    broker=broker,
                    passwords=Passwords(settings.argon2_time_cost, settings.argon2_memory_kib),
                    tokens=tokens,
                    clock=utc_now,
                    wake_relay=relay.committed,
                    session_ttl=timedelta(hours=settings.session_ttl_hours),
                    subscriber_queue_size=settings.subscriber_queue_size,
                    mailer=build_mailer(settings.mail_url, settings.effective_mail_dir),
                    rate_limiter=rate_limiter,
                    public_url=settings.public_url,
                    mail_from=settings.mail_from,
                    prices=settings.price_book(),
                    removed_retention=timedelta(days=settings.removed_retention_days),
                    health=settings.health_thresholds(),
                    stripe=build_stripe(settings),
                    webhook_allow_loopback=settings.webhook_allow_loopback,
                    login_limits=LoginLimits(
                        settings.login_attempts_per_email,
                        settings.login_attempts_per_client,
                        settings.login_window_seconds,
                    ),
                ),
                relay,
            )
        finally:
            await relay.stop()
            await rate_limiter.close()
            await broker.close()
    finally:
        await database.dispose()


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    origins = browser_origins(settings)
    stamp_request_ids()
    token = settings.metrics_token
    metrics_token = None if token is None else token.get_secret_value()
    keep_alive = KeepAlive(settings.ws_keepalive_seconds)
    request_limit = RequestLimit(settings.rate_limit_per_minute)
    handler = type(
        "Handler", (KeptAliveHandler,), {"keep_alive": keep_alive, "request_limit": request_limit}
    )
    graphql = GraphQLApp(
        build_schema(
            settings.max_query_depth,
            settings.max_aliases,
            settings.max_tokens,
            settings.query_cost_limit,
            observers=[observe_operation],
        ),
        graphql_ide="graphiql" if settings.graphiql else None,
        allow_queries_via_get=True,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        connection_init_wait_timeout=timedelta(seconds=settings.ws_connection_init_timeout_seconds),
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        allowed_origins=origins,
    )
    graphql.graphql_transport_ws_handler_class = handler
    graphql.persisted_queries = AutomaticPersistedQueries(settings.persisted_query_max_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running_services(settings) as (services, relay):
            graphql.services = services
            app.state.services = services
            request_limit.services = services
            persisted = build_persisted_queries(
                settings.redis_url,
                settings.persisted_query_max_entries,
                settings.persisted_query_ttl_seconds,
            )
            graphql.persisted_queries.store = persisted
            relay.start()
            keep_alive.start()
            jobs = (
                payment_jobs(settings.reconcile_payments_seconds)
                if settings.server_jobs and services.stripe is not None
                else []
            )
            if settings.server_jobs:
                jobs += [*wallet_jobs(), webhook_job(settings.webhook_poll_seconds)]
            runner = JobRunner(services, jobs)
            runner.start()
            sampler = Sampler(services, settings.metrics_sample_seconds)
            sampler.start()
            # What start-up built and what each full collection finds alive (sockets,
            # subscriptions) move out of the cyclic collector's way, so full collections under
            # load walk only recent objects (agencyhub/collector.py): at 10,000 screens a full
            # walk stopped each process for up to 1.8 s, and about half of a 500-client list's
            # time went to full collections.
            freezer = SurvivorFreezer(young_threshold=settings.gc_young_threshold)
            freezer.install(asyncio.get_running_loop())
            try:
                yield
            finally:
                freezer.uninstall()
                await sampler.stop()
                await persisted.close()
                await runner.stop()
                await keep_alive.stop()
                process_exiting()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        services: Services = request.app.state.services
        checks = {}
        for name, probe in (("database", services.database.ping), ("broker", services.broker.ping)):
            try:
                async with asyncio.timeout(2):
                    await probe()
                checks[name] = "ok"
            except Exception:
                checks[name] = "down"
        ready = all(state == "ok" for state in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", **checks},
            status_code=200 if ready else 503,
        )

    async def stripe_webhook(request: Request) -> Response:
        """Stripe's events: applied once each, after their signature verifies (else 400)."""
        services: Services = request.app.state.services
        signature = request.headers.get("stripe-signature")
        status = await receive_webhook(services, await request.body(), signature)
        return JSONResponse({"received": status == 200}, status_code=status)

    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/webhooks/stripe", stripe_webhook, methods=["POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint(metrics_token)),
        ],
        middleware=[
            # Outermost: every request gets its id before anything else runs or logs.
            Middleware(RequestObserver, log_requests=settings.access_log),
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST"],
                allow_headers=["content-type", "authorization", "x-request-id"],
                expose_headers=["x-request-id"],
                max_age=600,
            ),
            Middleware(RequestRateLimit, limit=request_limit),
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
        ],
        lifespan=lifespan,
    )
