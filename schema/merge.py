"""Merging sub-accounts: the request type, its connection and the mutations that request,
approve and reject a merge."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import strawberry

from domain import agency as entities
from domain import merge as merge_entities
from resolvers import merge as use_cases
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.errors import UserError, with_user_errors
from schema.merge_status import MergeStatus
from schema.node import Node
from schema.paging import PageInfo, edges, page_info
from schema.sub_account import SubAccount
from schema.user import User

Info = strawberry.Info[RequestContext, None]


async def _sub_account(info: Info, key: UUID) -> SubAccount:
    found = await info.context.loaders.sub_account_by_id.load(key)
    assert found is not None  # a request's accounts are never deleted (tombstones stay)
    return SubAccount.from_domain(found)


@strawberry.type(
    name="MergeRequest",
    description="Merging source into target: asked by one owner or admin, decided by another.",
)
class MergeRequest(Node):
    id: strawberry.ID
    status: MergeStatus
    note: str | None
    requested_at: datetime
    decided_at: datetime | None
    entity: strawberry.Private[merge_entities.MergeRequest]

    @strawberry.field
    async def source(self, info: Info) -> SubAccount:
        return await _sub_account(info, self.entity.source_id)

    @strawberry.field
    async def target(self, info: Info) -> SubAccount:
        return await _sub_account(info, self.entity.target_id)

    @strawberry.field
    async def requested_by(self, info: Info) -> User:
        key = self.entity.requested_by
        found = None if key is None else await info.context.loaders.user_by_id.load(key)
        if found is None:
            raise LookupError("the user who asked for this merge was removed")
        return User.from_domain(found)

    @strawberry.field
    async def decided_by(self, info: Info) -> User | None:
        key = self.entity.decided_by
        found = None if key is None else await info.context.loaders.user_by_id.load(key)
        return None if found is None else User.from_domain(found)

    @classmethod
    def from_domain(cls, merge: merge_entities.MergeRequest) -> MergeRequest:
        return cls(
            id=strawberry.ID(to_global_id("MergeRequest", merge.id)),
            status=merge.status,
            note=merge.note,
            requested_at=merge.requested_at,
            decided_at=merge.decided_at,
            entity=merge,
        )


@strawberry.type
class MergeRequestEdge:
    node: MergeRequest
    cursor: str


@strawberry.type
class MergeRequestConnection:
    edges: list[MergeRequestEdge]
    page_info: PageInfo
    total_count: int


async def merge_requests_connection(
    info: Info,
    agency: entities.Agency,
    first: int | None,
    after: str | None,
    status: merge_entities.MergeStatus | None,
) -> MergeRequestConnection:
    page, total = await use_cases.requests_page(info.context, agency.id, status, first, after)
    return MergeRequestConnection(
        edges=edges(page, MergeRequestEdge, MergeRequest.from_domain),
        page_info=page_info(page),
        total_count=total,
    )


async def merged_into(info: Info, sub_account: entities.SubAccount) -> SubAccount | None:
    found = await use_cases.merged_into(info.context, sub_account)
    return None if found is None else SubAccount.from_domain(found)


@strawberry.input
class RequestMergeInput:
    source_id: strawberry.ID
    target_id: strawberry.ID
    note: str | None = None


@strawberry.input
class MergeRequestIdInput:
    id: strawberry.ID


@strawberry.type
class MergeRequestPayload:
    merge_request: MergeRequest | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class MergeMutations:
    @strawberry.mutation(
        description="Ask to merge one active secondary into another (owners and agency "
        "admins); another owner or admin decides."
    )
    @with_user_errors(MergeRequestPayload)
    async def request_merge(self, info: Info, input: RequestMergeInput) -> MergeRequestPayload:
        made = await use_cases.request_merge(
            info.context, input.source_id, input.target_id, input.note
        )
        return MergeRequestPayload(merge_request=MergeRequest.from_domain(made))

    @strawberry.mutation(
        description="Merge now, irreversibly: the source's minutes (converted by value), "
        "credits, lines, activities and user grants go to the target; the source becomes "
        "MERGED. Not by whoever asked for it."
    )
    @with_user_errors(MergeRequestPayload)
    async def approve_merge(self, info: Info, input: MergeRequestIdInput) -> MergeRequestPayload:
        approved = await use_cases.approve_merge(info.context, input.id)
        return MergeRequestPayload(merge_request=MergeRequest.from_domain(approved))

    @strawberry.mutation(description="Refuse a pending merge; not by whoever asked for it.")
    @with_user_errors(MergeRequestPayload)
    async def reject_merge(self, info: Info, input: MergeRequestIdInput) -> MergeRequestPayload:
        rejected = await use_cases.reject_merge(info.context, input.id)
        return MergeRequestPayload(merge_request=MergeRequest.from_domain(rejected))
