"""Outgoing webhooks (owners and agency admins): endpoints, their delivery log, and the
mutations that create, delete and ping them."""

from __future__ import annotations

from datetime import datetime

import strawberry

from domain.webhooks import DeliveryStatus, WebhookDelivery, WebhookEventKind, event_id_text
from domain.webhooks import WebhookEndpoint as WebhookEndpointEntity
from resolvers import webhooks
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.errors import UserError, with_user_errors
from schema.node import Node
from schema.paging import PageInfo, edges, page_info

Info = strawberry.Info[RequestContext, None]

WebhookEventKindEnum = strawberry.enum(WebhookEventKind, name="WebhookEventKind")
DeliveryStatusEnum = strawberry.enum(DeliveryStatus, name="DeliveryStatus")


@strawberry.type(
    name="WebhookDelivery", description="One event sent (or being sent) to one endpoint."
)
class WebhookDeliveryType:
    event_id: strawberry.ID = strawberry.field(
        description="The event's id, as in the body's `id` (evt_…): the same for every endpoint "
        "that received it and on every attempt, so a receiver can drop repeats."
    )
    kind: WebhookEventKindEnum
    status: DeliveryStatusEnum
    attempts: int
    last_response_status: int | None = strawberry.field(
        description="The HTTP status of the last attempt; null when it got none (timeout, "
        "refused address, connection error: see lastError)."
    )
    last_error: str | None = strawberry.field(
        description="Why the last attempt got no answer, or `HTTP <status>`; null once delivered."
    )
    test: bool = strawberry.field(
        description="A ping (pingWebhookEndpoint): sent once, at once, outside the endpoint's "
        "order, with data {test: true}."
    )
    next_attempt_at: datetime | None = strawberry.field(
        description="When a PENDING delivery is tried next (if earlier events of the endpoint "
        "are delivered by then)."
    )
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def from_domain(cls, delivery: WebhookDelivery) -> WebhookDeliveryType:
        pending = delivery.status is DeliveryStatus.PENDING
        return cls(
            event_id=strawberry.ID(event_id_text(delivery.event_id)),
            kind=delivery.kind,
            status=delivery.status,
            attempts=delivery.attempts,
            last_response_status=delivery.last_response_status,
            last_error=delivery.last_error,
            test=delivery.test,
            next_attempt_at=delivery.next_attempt_at if pending else None,
            created_at=delivery.created_at,
            delivered_at=delivery.delivered_at,
        )


@strawberry.type
class WebhookDeliveryEdge:
    node: WebhookDeliveryType
    cursor: str


@strawberry.type
class WebhookDeliveryConnection:
    edges: list[WebhookDeliveryEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type(
    name="WebhookEndpoint",
    description="An HTTPS endpoint of the agency that receives signed JSON events (header "
    "Agencyhub-Signature: t=<unix>,v1=<hex HMAC-SHA256 of '<t>.<body>' with the secret).",
)
class WebhookEndpoint(Node):
    id: strawberry.ID
    url: str
    events: list[WebhookEventKindEnum]
    enabled: bool
    created_at: datetime
    entity: strawberry.Private[WebhookEndpointEntity]

    @classmethod
    def from_domain(cls, endpoint: WebhookEndpointEntity) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(to_global_id("WebhookEndpoint", endpoint.id)),
            url=endpoint.url,
            events=[k for k in WebhookEventKind if k in endpoint.events],
            enabled=endpoint.enabled,
            created_at=endpoint.created_at,
            entity=endpoint,
        )

    @strawberry.field(description="Its deliveries and their attempts, newest first.")
    async def deliveries(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> WebhookDeliveryConnection:
        page, total = await webhooks.deliveries(info.context, self.entity, first, after)
        return WebhookDeliveryConnection(
            edges=edges(page, WebhookDeliveryEdge, WebhookDeliveryType.from_domain),
            page_info=page_info(page),
            total_count=total,
        )


@strawberry.type
class WebhookEndpointEdge:
    node: WebhookEndpoint
    cursor: str


@strawberry.type
class WebhookEndpointConnection:
    edges: list[WebhookEndpointEdge]
    page_info: PageInfo
    total_count: int


async def webhook_endpoints_connection(
    info: Info, agency_id: object, first: int | None, after: str | None
) -> WebhookEndpointConnection:
    page, total = await webhooks.webhook_endpoints(info.context, agency_id, first, after)  # type: ignore[arg-type]
    return WebhookEndpointConnection(
        edges=edges(page, WebhookEndpointEdge, WebhookEndpoint.from_domain),
        page_info=page_info(page),
        total_count=total,
    )


@strawberry.input
class CreateWebhookEndpointInput:
    url: str
    events: list[WebhookEventKindEnum]


@strawberry.type
class CreateWebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = None
    secret: str | None = strawberry.field(
        default=None,
        description="The signing secret (whsec_...) is shown once.",
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class WebhookEndpointIdInput:
    id: strawberry.ID


@strawberry.type
class WebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(
        description="Owners and agency admins: an endpoint (https, or http to loopback) for "
        "the chosen kinds of event. Private, link-local and metadata addresses are refused."
    )
    @with_user_errors(CreateWebhookEndpointPayload)
    async def create_webhook_endpoint(
        self, info: Info, input: CreateWebhookEndpointInput
    ) -> CreateWebhookEndpointPayload:
        endpoint, secret = await webhooks.create_webhook_endpoint(
            info.context, input.url, list(input.events)
        )
        return CreateWebhookEndpointPayload(
            endpoint=WebhookEndpoint.from_domain(endpoint), secret=secret
        )

    @strawberry.mutation(description="Delete an endpoint with its delivery log and queue.")
    @with_user_errors(WebhookEndpointPayload)
    async def delete_webhook_endpoint(
        self, info: Info, input: WebhookEndpointIdInput
    ) -> WebhookEndpointPayload:
        endpoint = await webhooks.delete_webhook_endpoint(info.context, input.id)
        return WebhookEndpointPayload(endpoint=WebhookEndpoint.from_domain(endpoint))

    @strawberry.mutation(
        description="Send a test event to the endpoint now: one attempt, shown in its "
        "deliveries with test: true."
    )
    @with_user_errors(WebhookEndpointPayload)
    async def ping_webhook_endpoint(
        self, info: Info, input: WebhookEndpointIdInput
    ) -> WebhookEndpointPayload:
        endpoint = await webhooks.ping_webhook_endpoint(info.context, input.id)
        return WebhookEndpointPayload(endpoint=WebhookEndpoint.from_domain(endpoint))
