"""Campaigns, inbound agents and automations: their on/off state, which suspension pauses."""

from __future__ import annotations

from typing import Annotated

import strawberry

from domain.activity import Activity as ActivityEntity
from domain.paging import Page
from domain.sub_account import ActivityKind, ActivityStatus
from resolvers import activity as use_cases
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.errors import UserError, with_user_errors
from schema.node import Node
from schema.paging import PageInfo, edges, page_info

ActivityStatusEnum = strawberry.enum(
    ActivityStatus,
    name="ActivityStatus",
    description="What suspension pauses and restore brings back: the sub-account's outbound "
    "campaigns, inbound agents and automations.",
)
ActivityKindEnum = strawberry.enum(ActivityKind, name="ActivityKind")
Info = strawberry.Info[RequestContext, None]


@strawberry.type(name="Campaign")
class Campaign(Node):
    id: strawberry.ID
    name: str
    status: ActivityStatusEnum


@strawberry.type(name="InboundAgent")
class InboundAgent(Node):
    id: strawberry.ID
    name: str
    status: ActivityStatusEnum


@strawberry.type(name="Automation")
class Automation(Node):
    id: strawberry.ID
    name: str
    status: ActivityStatusEnum


GRAPHQL_TYPES: dict[ActivityKind, type] = {
    ActivityKind.CAMPAIGN: Campaign,
    ActivityKind.INBOUND_AGENT: InboundAgent,
    ActivityKind.AUTOMATION: Automation,
}


def to_graphql(activity: ActivityEntity) -> Campaign | InboundAgent | Automation:
    cls = GRAPHQL_TYPES[activity.kind]
    global_id = strawberry.ID(to_global_id(use_cases.TYPE_NAMES[activity.kind], activity.id))
    return cls(id=global_id, name=activity.name, status=activity.status)  # type: ignore[no-any-return]


@strawberry.type
class CampaignEdge:
    node: Campaign
    cursor: str


@strawberry.type
class CampaignConnection:
    edges: list[CampaignEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class InboundAgentEdge:
    node: InboundAgent
    cursor: str


@strawberry.type
class InboundAgentConnection:
    edges: list[InboundAgentEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class AutomationEdge:
    node: Automation
    cursor: str


@strawberry.type
class AutomationConnection:
    edges: list[AutomationEdge]
    page_info: PageInfo
    total_count: int


CONNECTIONS = {
    ActivityKind.CAMPAIGN: (CampaignConnection, CampaignEdge),
    ActivityKind.INBOUND_AGENT: (InboundAgentConnection, InboundAgentEdge),
    ActivityKind.AUTOMATION: (AutomationConnection, AutomationEdge),
}


def connection(kind: ActivityKind, page: Page[ActivityEntity], total: int) -> object:
    connection_type, edge_type = CONNECTIONS[kind]
    return connection_type(
        edges=edges(page, edge_type, to_graphql), page_info=page_info(page), total_count=total
    )


Activity = Annotated[Campaign | InboundAgent | Automation, strawberry.union("Activity")]


@strawberry.input
class CreateActivityInput:
    sub_account_id: strawberry.ID
    kind: ActivityKindEnum
    name: str
    status: ActivityStatusEnum | None = None


@strawberry.input
class SetActivityStatusInput:
    id: strawberry.ID
    status: ActivityStatusEnum


@strawberry.type
class ActivityPayload:
    activity: Activity | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ActivityMutations:
    @strawberry.mutation(
        description="Create a campaign, inbound agent or automation in a sub-account (kind "
        "picks which)."
    )
    @with_user_errors(ActivityPayload)
    async def create_activity(self, info: Info, input: CreateActivityInput) -> ActivityPayload:
        created = await use_cases.create_activity(
            info.context, input.sub_account_id, input.kind, input.name, input.status
        )
        return ActivityPayload(activity=to_graphql(created))

    @strawberry.mutation(
        description="Pause or resume a campaign, inbound agent or automation by its global ID."
    )
    @with_user_errors(ActivityPayload)
    async def set_activity_status(
        self, info: Info, input: SetActivityStatusInput
    ) -> ActivityPayload:
        changed = await use_cases.set_activity_status(info.context, input.id, input.status)
        return ActivityPayload(activity=to_graphql(changed))
