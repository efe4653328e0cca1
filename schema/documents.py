"""Each query text parsed, validated and priced once: one extension for what five did.

A request used to pass through five strawberry extensions before its first resolver
(`MaxTokensLimiter`, `ParserCache`, `AddValidationRules`, `ValidationCache`, `QueryCostLimit`),
and strawberry wraps every hook of every extension in a context manager of its own per
request: a fixed cost on every operation, HTTP and WebSocket alike, larger than the lookups
it guards (BENCHMARKS.md, "viewer query over HTTP"). `PreparedDocuments` does the same work in
three hooks:

- parse: the text's document from an LRU, parsed under the token limit when absent (a text
  over the limit, or not GraphQL, raises and is not stored);
- validate: graphql-core's rules plus the depth and alias limits, what they found kept beside
  the text's document;
- execute: the cost limit (schema/cost.py), each operation's shape worked out once, kept
  beside the document, and multiplied through each request's variables.

A text seen before and found valid need not pass through strawberry's per-request machinery
at all: `known` finds it, and `Schema.execute_prepared` (schema/roots.py) runs it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    get_operation_ast,
    parse,
)
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.schema.schema import validate_document
from strawberry.utils.operation import get_first_operation

from schema.cost import QueryTooCostly, Term, connection_terms, cost_of
from schema.direct import SharedCollections
from schema.variables import OperationPlan


@dataclass
class PreparedDocument:
    """A query text's document and, once worked out, what validation found and the shape of
    each operation's cost."""

    document: DocumentNode
    errors: list[GraphQLError] | None = None
    terms: dict[str | None, list[Term]] = field(default_factory=dict)
    operations: dict[str | None, OperationDefinitionNode] = field(default_factory=dict)
    _collections: SharedCollections | bool | None = False  # False: not yet looked at
    _plans: dict[int, OperationPlan | None] = field(default_factory=dict)

    @property
    def collections(self) -> SharedCollections | None:
        """The document's sub-selections kept across requests; None when its variables can
        change them (schema/direct.py)."""
        found = self._collections
        if found is False:
            found = self._collections = SharedCollections.for_document(self.document)
        return found  # type: ignore[return-value]

    def plan(
        self, schema: GraphQLSchema, operation: OperationDefinitionNode
    ) -> OperationPlan | None:
        """The operation's plan (schema/variables.py), worked out on its first request; None
        when graphql-core's own way is needed for it."""
        key = id(operation)  # an operation of this document: it lives as long as the entry
        if key not in self._plans:
            self._plans[key] = OperationPlan.of(schema, self.document, operation)
        return self._plans[key]

    def operation(self, name: str | None) -> OperationDefinitionNode | None:
        """The operation a request names; when it names none, the first (strawberry runs the
        first of several, where graphql-core alone would refuse); None when there is no such
        operation."""
        found = self.operations.get(name)
        if found is not None:
            return found
        if name is None:
            found = get_first_operation(self.document)  # as strawberry chooses it
        else:
            found = get_operation_ast(self.document, name)
        if found is not None:  # only what the text holds: a client's made-up names are not kept
            self.operations[name] = found
        return found


class DocumentCache:
    """The schema's limits and what they found for the last `maxsize` query texts: shared by
    every request of one schema."""

    def __init__(
        self,
        *,
        max_tokens: int,
        max_depth: int,
        max_aliases: int,
        max_cost: int,
        maxsize: int = 512,
    ) -> None:
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        # Built once: a rule class made per request would be a new rule every time.
        self.limit_rules: tuple[type[ASTValidationRule], ...] = (
            *QueryDepthLimiter(max_depth=max_depth).validation_rules,
            *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules,
        )
        self._maxsize = maxsize
        self._prepared: OrderedDict[str, PreparedDocument] = OrderedDict()

    def prepared(self, query: str) -> PreparedDocument:
        """The text's entry; a text that is not GraphQL, or over the token limit, raises its
        GraphQLError and is not stored."""
        found = self._prepared.get(query)
        if found is not None:
            self._prepared.move_to_end(query)
            return found
        found = self._prepared[query] = PreparedDocument(parse(query, max_tokens=self.max_tokens))
        if len(self._prepared) > self._maxsize:
            self._prepared.popitem(last=False)
        return found

    def known(self, query: str) -> PreparedDocument | None:
        """The text's entry when it was parsed and validated before and found valid; None for
        a text not seen (or no longer kept), not yet validated, or invalid."""
        found = self._prepared.get(query)
        if found is None or found.errors is None or found.errors:
            return None
        self._prepared.move_to_end(query)
        return found

    def validation_errors(
        self,
        schema: GraphQLSchema,
        prepared: PreparedDocument,
        rules: Sequence[type[ASTValidationRule]],
    ) -> list[GraphQLError]:
        """What strawberry's validation finds with `rules` (the same for every request of a
        schema) and the limits."""
        if prepared.errors is None:
            prepared.errors = validate_document(
                schema, prepared.document, (*rules, *self.limit_rules)
            )
        return prepared.errors

    def check_cost(
        self,
        schema: GraphQLSchema,
        prepared: PreparedDocument,
        operation_name: str | None,
        variables: dict[str, Any] | None,
    ) -> None:
        cost = self.cost(schema, prepared, operation_name, variables)
        if cost > self.max_cost:
            raise QueryTooCostly(cost, self.max_cost).as_graphql_error()

    def cost(
        self,
        schema: GraphQLSchema,
        prepared: PreparedDocument,
        operation_name: str | None,
        variables: dict[str, Any] | None,
    ) -> int:
        """The operation's cost with these variables; 0 when there is no cost limit."""
        if self.max_cost <= 0:
            return 0
        terms = prepared.terms.get(operation_name)
        if terms is None:
            terms = prepared.terms[operation_name] = connection_terms(
                schema, prepared.document, operation_name
            )
        return cost_of(terms, variables)


class PreparedDocuments(SchemaExtension):
    """Refuses over the token, depth, alias and cost limits, before any resolver runs."""

    def __init__(self, documents: DocumentCache) -> None:
        self._documents = documents
        self._prepared: PreparedDocument | None = None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is None and context.query:
            self._prepared = self._documents.prepared(context.query)
            context.graphql_document = self._prepared.document
        yield

    def _current(self, document: DocumentNode) -> PreparedDocument:
        prepared = self._prepared
        if prepared is None or prepared.document is not document:
            # A document given whole, not parsed here: worked out for this request only.
            prepared = self._prepared = PreparedDocument(document)
        return prepared

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.pre_execution_errors is None:
            context.pre_execution_errors = self._documents.validation_errors(
                context.schema._schema, self._current(document), context.validation_rules
            )
        yield

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None:
            self._documents.check_cost(
                context.schema._schema,
                self._current(context.graphql_document),
                context.operation_name,
                context.variables,
            )
        yield
