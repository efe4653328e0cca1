"""Query, Mutation and Subscription roots, and the Schema with its safety limits."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import strawberry
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import (
    GraphQLError,
    OperationType,
    default_field_resolver,
    default_type_resolver,
    execute,
)
from strawberry.execution import optimized_is_awaitable
from strawberry.tools import merge_types
from strawberry.types import ExecutionResult

from domain import agency as entities
from domain.activity import Activity as ActivityEntity
from domain.api_key import ApiKey as ApiKeyEntity
from domain.billing import BillingAdjustment as BillingAdjustmentEntity
from domain.invitation import Invitation as InvitationEntity
from domain.lines import PhoneLine as PhoneLineEntity
from domain.merge import MergeRequest as MergeRequestEntity
from domain.payments import PaymentCard as PaymentCardEntity
from domain.payments import Purchase as PurchaseEntity
from domain.payouts import Payout as PayoutEntity
from domain.webhooks import WebhookEndpoint as WebhookEndpointEntity
from resolvers import viewer as reads
from resolvers.context import RequestContext
from schema.activity import ActivityMutations, Automation, Campaign, InboundAgent, to_graphql
from schema.agency import Agency, AgencyMutations
from schema.audit import AuditSubscriptions
from schema.billing import BillingAdjustment, BillingMutations
from schema.dates import DATETIME
from schema.direct import resolve_directly
from schema.documents import DocumentCache, PreparedDocuments
from schema.errors import ErrorPolicy, Observer
from schema.lines import LineMutations, PhoneLine
from schema.merge import MergeMutations, MergeRequest
from schema.messaging import MessagingMutations
from schema.monitoring import MonitoringSubscriptions
from schema.node import Node
from schema.payments import PaymentCard, PaymentMutations, Purchase
from schema.payouts import Payout, PayoutMutations
from schema.sharing import SharedEventExecution
from schema.sub_account import SubAccount, SubAccountMutations, SubAccountQueries
from schema.team import ApiKey, Invitation, TeamMutations
from schema.transfer import Transfer, TransferMutations, TransferQueries
from schema.usage import UsageMutations
from schema.user import User, UserMutations, Viewer
from schema.wallet import WalletMutations
from schema.webhooks import WebhookEndpoint, WebhookMutations

Info = strawberry.Info[RequestContext, None]

_NODE_TYPES = {
    entities.Agency: Agency.from_domain,
    entities.SubAccount: SubAccount.from_domain,
    entities.User: User.from_domain,
    InvitationEntity: Invitation.from_domain,
    ApiKeyEntity: ApiKey.from_domain,
    ActivityEntity: to_graphql,
    PaymentCardEntity: PaymentCard.from_domain,
    PurchaseEntity: Purchase.from_domain,
    PayoutEntity: Payout.from_domain,
    PhoneLineEntity: PhoneLine.from_domain,
    BillingAdjustmentEntity: BillingAdjustment.from_domain,
    MergeRequestEntity: MergeRequest.from_domain,
    WebhookEndpointEntity: WebhookEndpoint.from_domain,
}


@strawberry.type
class ViewerQueries:
    @strawberry.field(description="The signed-in user and their agency.")
    async def viewer(self, info: Info) -> Viewer | None:
        session = await reads.viewer(info.context)
        return Viewer(
            user=User.from_domain(session.user), agency=Agency.from_domain(session.agency)
        )

    @strawberry.field(description="Any object by its global ID; null if absent or not yours.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        found = await reads.node(info.context, id)
        return None if found is None else _NODE_TYPES[type(found)](found)  # type: ignore[operator]


Query = merge_types("Query", (ViewerQueries, TransferQueries, SubAccountQueries))
Mutation = merge_types(
    "Mutation",
    (
        AgencyMutations,
        UserMutations,
        SubAccountMutations,
        TransferMutations,
        ActivityMutations,
        TeamMutations,
        UsageMutations,
        PaymentMutations,
        PayoutMutations,
        LineMutations,
        BillingMutations,
        MergeMutations,
        MessagingMutations,
        WebhookMutations,
        WalletMutations,
    ),
)
Subscription = merge_types("Subscription", (MonitoringSubscriptions, AuditSubscriptions))

_HTTP_OPERATIONS = (OperationType.QUERY, OperationType.MUTATION)


class Schema(strawberry.Schema):
    """strawberry's schema with our two extensions (schema/errors.py, schema/documents.py) and
    a shorter way through for the texts it has seen before (`execute_prepared`)."""

    def __init__(
        self, *, documents: DocumentCache, observers: Sequence[Observer] = (), **options: Any
    ) -> None:
        self.documents = documents
        self.error_policy = ErrorPolicy(observers)  # the prepared path's; stateless
        super().__init__(
            **options,
            extensions=[lambda: ErrorPolicy(observers), lambda: PreparedDocuments(documents)],
        )

    async def execute_prepared(
        self,
        query: str,
        variables: dict[str, Any] | None,
        context: Any,
        operation_name: str | None,
    ) -> ExecutionResult | None:
        """What `execute` answers for a query or mutation whose text was parsed and validated
        before and which is within the cost limit, without building strawberry's extensions
        and their hooks for this request: the same data, the same coded errors, the same
        observers told. None for anything else (a text not seen, or invalid; a subscription;
        no such operation; over the cost limit): the caller gives those to `execute`, which
        answers them as always.

        Most requests are of this kind (a front end sends the same few texts again and
        again), and strawberry's machinery around them cost more than the execution of a
        small query (BENCHMARKS.md, "viewer query over HTTP").
        """
        documents = self.documents
        prepared = documents.known(query)
        if prepared is None:
            return None
        operation = prepared.operation(operation_name)
        if operation is None or operation.operation not in _HTTP_OPERATIONS:
            return None
        if operation_name is None and operation.name is not None:
            # As strawberry names it: to the cost limit (which, given no name, would price
            # nothing of a text of several operations), to graphql-core, to the observers.
            operation_name = operation.name.value
        if documents.cost(self._schema, prepared, operation_name, variables) > documents.max_cost:
            return None  # refused by the full path, with its error
        try:
            plan = prepared.plan(self._schema, operation)
            values = None if plan is None else plan.variable_values(variables)
            if plan is None or values is None:  # graphql-core's way: its defaults, its errors
                result = execute(
                    self._schema,
                    prepared.document,
                    context_value=context,
                    variable_values=variables,
                    operation_name=operation_name,
                    executor_class=self.execution_context_class,
                    is_awaitable=optimized_is_awaitable,
                    operation_extensions=None,
                    collections=prepared.collections,
                )
            else:  # what `execute` would build, from what the plan worked out before
                result = self.execution_context_class(
                    schema=self._schema,
                    fragment_definitions=plan.fragment_definitions,
                    fragments=plan.fragments,
                    root_value=None,
                    context_value=context,
                    operation=plan.operation,
                    variable_values=values,
                    field_resolver=default_field_resolver,
                    type_resolver=default_type_resolver,
                    subscribe_field_resolver=default_field_resolver,
                    is_awaitable=optimized_is_awaitable,
                    operation_extensions=None,
                    collections=prepared.collections,
                ).execute_operation()
            if inspect.isawaitable(result):
                result = await result
        except Exception as error:  # as strawberry's `execute`: answered (coded, masked)
            if not isinstance(error, GraphQLError):
                error = GraphQLError(str(error), original_error=error)
            result = GraphQLExecutionResult(data=None, errors=[error])
        errors = result.errors
        if errors:  # every one coded by the policy (`process_errors` adds nothing to that)
            errors = self.error_policy.coded(errors)
        self.error_policy.observe(operation_name, errors or ())
        return ExecutionResult(data=result.data, errors=errors)

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Label errors from before execution (parse, validate) as the client's.

        No logging here: ErrorPolicy logs what is unexpected, and an expected refusal is not
        worth a traceback.
        """
        for error in errors:
            if error.path is None and not (error.extensions or {}).get("code"):
                error.extensions = {**(error.extensions or {}), "code": "BAD_REQUEST"}


def build_schema(
    max_depth: int = 10,
    max_aliases: int = 15,
    max_tokens: int = 2_000,
    max_cost: int = 1_000,
    observers: Sequence[Observer] = (),
) -> Schema:
    """`observers` see each operation's outcome once the error policy has coded its errors
    (the app's request logs and metrics).

    Two extensions, each a context manager per hook per request in strawberry: the error
    policy (with the observers) and the documents' limits and caches (schema/documents.py).
    """
    documents = DocumentCache(
        max_tokens=max_tokens, max_depth=max_depth, max_aliases=max_aliases, max_cost=max_cost
    )
    schema = Schema(
        execution_context_class=SharedEventExecution,
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[
            Agency,
            SubAccount,
            User,
            Invitation,
            ApiKey,
            Transfer,
            Campaign,
            InboundAgent,
            Automation,
            PaymentCard,
            Purchase,
            Payout,
            PhoneLine,
            BillingAdjustment,
            MergeRequest,
            WebhookEndpoint,
        ],
        documents=documents,
        observers=observers,
        scalar_overrides={datetime: DATETIME},
    )
    resolve_directly(schema)  # most fields skip strawberry's per-call wrapper (schema/direct.py)
    return schema
