"""Agencies, their plan, and signing up."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated

import strawberry

from domain import agency as entities
from domain.plans import BillingModel
from resolvers import agency as agency_use_cases
from resolvers import auth
from resolvers import sub_account as sub_account_use_cases
from resolvers import viewer as reads
from resolvers.context import RequestContext
from resolvers.global_id import to_global_id
from schema.audit import AuditKindEnum
from schema.dates import DateRangeInput
from schema.errors import UserError, with_user_errors
from schema.merge_status import MergeStatus
from schema.node import Node
from schema.sub_account import (
    SubAccount,
    SubAccountConnection,
    SubAccountStatus,
    sub_accounts_connection,
)

if TYPE_CHECKING:
    from schema.audit import AuditEventConnection
    from schema.billing import BillingSummary
    from schema.lines import PhoneLineConnection
    from schema.merge import MergeRequestConnection
    from schema.payouts import Earnings, PayoutConnection
    from schema.report import AgencyReport
    from schema.team import ApiKeyConnection, InvitationConnection, UserConnection

BillingModelEnum = strawberry.enum(BillingModel, name="BillingModel")
Info = strawberry.Info[RequestContext, None]


@strawberry.type
class Plan:
    name: str
    billing_model: BillingModelEnum
    sub_account_cap: int | None = strawberry.field(
        description="How many secondary sub-accounts the plan allows; null means no cap."
    )
    included_monthly_minutes: int
    renewal_date: date


@strawberry.type(name="Agency")
class Agency(Node):
    id: strawberry.ID
    name: str
    entity: strawberry.Private[entities.Agency]

    @strawberry.field(
        description="IANA name, e.g. Europe/Berlin: report date ranges are days in this zone."
    )
    def time_zone(self) -> str:
        return self.entity.time_zone

    @strawberry.field
    async def plan(self, info: Info) -> Plan:
        await reads.require_agency_details(info.context, self.entity)
        a = self.entity
        return Plan(
            name=a.plan_name,
            billing_model=a.billing_model,
            sub_account_cap=a.sub_account_cap,
            included_monthly_minutes=a.included_monthly_minutes,
            renewal_date=a.plan_renewal_date(reads.today(info.context, a.time_zone)),
        )

    @strawberry.field
    async def primary_sub_account(self, info: Info) -> SubAccount:
        return SubAccount.from_domain(await reads.primary_sub_account(info.context, self.entity))

    @strawberry.field(
        description="Client sub-accounts (and the primary), oldest first. Without "
        "`status`: the live ones (ACTIVE and SUSPENDED)."
    )
    async def sub_accounts(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        status: SubAccountStatus | None = None,
    ) -> SubAccountConnection:
        return await sub_accounts_connection(info, self.entity, first, after, status)

    @strawberry.field(description="Secondary sub-accounts counting against the plan's cap.")
    async def slots_used(self, info: Info) -> int:
        return (await sub_account_use_cases.slots(info.context, self.entity.id))[0]

    @strawberry.field(description="How many more the plan allows; null when it has no cap.")
    async def slots_available(self, info: Info) -> int | None:
        return (await sub_account_use_cases.slots(info.context, self.entity.id))[1]

    @strawberry.field(description="The agency's users (owner and admins only).")
    async def users(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Annotated[UserConnection, strawberry.lazy("schema.team")]:
        from schema.team import users_connection

        return await users_connection(info.context, self.entity, first, after)

    @strawberry.field(description="Invitations, newest last (owner and admins only).")
    async def invitations(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        pending_only: bool | None = None,
    ) -> Annotated[InvitationConnection, strawberry.lazy("schema.team")]:
        from schema.team import invitations_connection

        return await invitations_connection(
            info.context, self.entity, first, after, bool(pending_only)
        )

    @strawberry.field(description="Live API keys for usage ingestion (owner only).")
    async def api_keys(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Annotated[ApiKeyConnection, strawberry.lazy("schema.team")]:
        from schema.team import api_keys_connection

        return await api_keys_connection(info.context, self.entity, first, after)

    @strawberry.field(
        description="Every change and sign-in, newest first, optionally only some kinds "
        "(owners and agency admins)."
    )
    async def audit_log(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        kinds: list[AuditKindEnum] | None = None,
    ) -> Annotated[AuditEventConnection, strawberry.lazy("schema.audit")]:
        from schema.audit import audit_log_connection

        return await audit_log_connection(info, self.entity.id, first, after, kinds)

    @strawberry.field(description="Profit from clients' purchases: total, unpaid, paid out.")
    async def earnings(self, info: Info) -> Annotated[Earnings, strawberry.lazy("schema.payouts")]:
        from resolvers.payouts import earnings_of
        from schema.payouts import Earnings

        return Earnings.from_domain(await earnings_of(info.context, self.entity))

    @strawberry.field(description="Payouts of the agency's earnings, oldest first.")
    async def payouts(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Annotated[PayoutConnection, strawberry.lazy("schema.payouts")]:
        from schema.payouts import payouts_connection

        return await payouts_connection(info, self.entity, first, after)

    @strawberry.field(description="Lines not in any sub-account, oldest first.")
    async def available_lines(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Annotated[PhoneLineConnection, strawberry.lazy("schema.lines")]:
        from schema.lines import available_lines_connection

        return await available_lines_connection(info, self.entity, first, after)

    @strawberry.field(
        description="Merge requests, oldest first, optionally of one status (owners and "
        "agency admins)."
    )
    async def merge_requests(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        status: MergeStatus | None = None,
    ) -> Annotated[MergeRequestConnection, strawberry.lazy("schema.merge")]:
        from schema.merge import merge_requests_connection

        return await merge_requests_connection(info, self.entity, first, after, status)

    @strawberry.field(description="Agency-wide usage and one row per client, for a date range.")
    async def report(
        self, info: Info, range: DateRangeInput
    ) -> Annotated[AgencyReport, strawberry.lazy("schema.report")]:
        from schema.report import agency_report

        return await agency_report(info, self.entity, range)

    @strawberry.field(
        description="Charges per sub-account (and the pool) for a date range: prorated "
        "lines, usage at base cost, discounts and credits (owners and agency admins)."
    )
    async def billing_summary(
        self, info: Info, range: DateRangeInput
    ) -> Annotated[BillingSummary, strawberry.lazy("schema.billing")]:
        from schema.billing import billing_summary

        return await billing_summary(info, self.entity, range)

    @classmethod
    def from_domain(cls, agency: entities.Agency) -> Agency:
        return cls(
            id=strawberry.ID(to_global_id("Agency", agency.id)), name=agency.name, entity=agency
        )


@strawberry.input
class SignUpAgencyInput:
    agency_name: str
    owner_email: str
    password: str
    plan_name: str | None = strawberry.field(default=None, description="Agency Lite when omitted.")


@strawberry.type
class SignUpAgencyPayload:
    agency: Agency | None = None
    token: str | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class UpdateAgencyInput:
    name: str | None = None
    time_zone: str | None = strawberry.field(
        default=None, description="An IANA time zone name such as America/New_York."
    )


@strawberry.type
class UpdateAgencyPayload:
    agency: Agency | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AgencyMutations:
    @strawberry.mutation(description="Rename the agency or set its time zone (owner and admins).")
    @with_user_errors(UpdateAgencyPayload)
    async def update_agency(self, info: Info, input: UpdateAgencyInput) -> UpdateAgencyPayload:
        agency = await agency_use_cases.update_agency(info.context, input.name, input.time_zone)
        return UpdateAgencyPayload(agency=Agency.from_domain(agency))

    @strawberry.mutation(
        description="Create an agency with its plan, owner and Primary sub-account; signs in."
    )
    @with_user_errors(SignUpAgencyPayload)
    async def sign_up_agency(self, info: Info, input: SignUpAgencyInput) -> SignUpAgencyPayload:
        result = await auth.sign_up_agency(
            info.context, input.agency_name, input.owner_email, input.password, input.plan_name
        )
        return SignUpAgencyPayload(agency=Agency.from_domain(result.agency), token=result.token)
