"""Phone lines and the agency's Available pool: the line type, its connection and the
mutations that add, assign, move and release lines."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry

from domain import agency as entities
from domain import lines as line_entities
from resolvers import lines as use_cases
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.errors import UserError, with_user_errors
from schema.money import Money
from schema.node import Node
from schema.paging import PageInfo, edges, page_info
from schema.sub_account import SubAccount

Info = strawberry.Info[RequestContext, None]


@strawberry.type(
    name="PhoneLine",
    description="A phone line: in exactly one sub-account, or in the agency's Available pool "
    "(subAccount null).",
)
class PhoneLine(Node):
    id: strawberry.ID
    number: str = strawberry.field(description="E.164, e.g. +14155550100.")
    monthly_price: Money
    created_at: datetime
    entity: strawberry.Private[line_entities.PhoneLine]

    @strawberry.field(description="Who holds the line; null while it is in the Available pool.")
    async def sub_account(self, info: Info) -> SubAccount | None:
        if self.entity.sub_account_id is None:
            return None
        found = await info.context.loaders.sub_account_by_id.load(self.entity.sub_account_id)
        return None if found is None else SubAccount.from_domain(found)

    @classmethod
    def from_domain(cls, line: line_entities.PhoneLine) -> PhoneLine:
        return cls(
            id=strawberry.ID(to_global_id("PhoneLine", line.id)),
            number=line.number,
            monthly_price=Money.of_micros(line.monthly_price_micros),
            created_at=line.created_at,
            entity=line,
        )


@strawberry.type
class PhoneLineEdge:
    node: PhoneLine
    cursor: str


@strawberry.type
class PhoneLineConnection:
    edges: list[PhoneLineEdge]
    page_info: PageInfo
    total_count: int


async def available_lines_connection(
    info: Info, agency: entities.Agency, first: int | None, after: str | None
) -> PhoneLineConnection:
    page, total = await use_cases.available_lines_page(info.context, agency, first, after)
    return PhoneLineConnection(
        edges=edges(page, PhoneLineEdge, PhoneLine.from_domain),
        page_info=page_info(page),
        total_count=total,
    )


async def lines_connection(
    info: Info, sub_account: entities.SubAccount, first: int | None, after: str | None
) -> PhoneLineConnection:
    page, total = await use_cases.lines_page(info.context, sub_account, first, after)
    return PhoneLineConnection(
        edges=edges(page, PhoneLineEdge, PhoneLine.from_domain),
        page_info=page_info(page),
        total_count=total,
    )


@strawberry.input
class AddLinesInput:
    numbers: list[str] = strawberry.field(
        description="1 to 100 numbers with their country code (+...); stored as E.164."
    )
    monthly_price: Decimal = strawberry.field(description="USD a month per line, zero or more.")


@strawberry.type
class AddLinesPayload:
    lines: list[PhoneLine] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(
    description="Assign from the pool, move between sub-accounts, or (subAccountId null) "
    "return to the pool."
)
class AssignLineInput:
    line_id: strawberry.ID
    sub_account_id: strawberry.ID | None = None


@strawberry.type
class PhoneLinePayload:
    line: PhoneLine | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ReleaseLineInput:
    line_id: strawberry.ID


@strawberry.type
class ReleaseLinePayload:
    released_line_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class LineMutations:
    @strawberry.mutation(
        description="Add lines to the Available pool (owners and agency admins): all or none."
    )
    @with_user_errors(AddLinesPayload)
    async def add_lines(self, info: Info, input: AddLinesInput) -> AddLinesPayload:
        added = await use_cases.add_lines(info.context, input.numbers, input.monthly_price)
        return AddLinesPayload(lines=[PhoneLine.from_domain(line) for line in added])

    @strawberry.mutation(
        description="Give a line to a sub-account (from the pool or another sub-account), or "
        "return it to the pool; kept in the line's history."
    )
    @with_user_errors(PhoneLinePayload)
    async def assign_line(self, info: Info, input: AssignLineInput) -> PhoneLinePayload:
        line = await use_cases.assign_line(info.context, input.line_id, input.sub_account_id)
        return PhoneLinePayload(line=PhoneLine.from_domain(line))

    @strawberry.mutation(description="Delete a line for good; it stays in past billing.")
    @with_user_errors(ReleaseLinePayload)
    async def release_line(self, info: Info, input: ReleaseLineInput) -> ReleaseLinePayload:
        released = await use_cases.release_line(info.context, input.line_id)
        return ReleaseLinePayload(
            released_line_id=strawberry.ID(to_global_id("PhoneLine", released))
        )
