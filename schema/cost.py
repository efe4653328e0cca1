"""A query's cost, estimated before it runs, and the limit on it (QUERY_TOO_COSTLY).

The cost is how many list items the operation can ask the database for, at most:

    cost = 1 + Σ over every connection field selected (Σ over aliases, through fragments and
               inline fragments) of the product of its page size and the page sizes of the
               connections it is nested in

where a page size is the field's `first` (a literal, or a variable's value, or that
variable's default), or `DEFAULT_PAGE_SIZE` (20, what the resolvers use) when absent. Other
fields are free: objects are loaded in batches, and lists that are not connections are
bounded by the data (a sub-account's balances, one per tier). Fields repeated under one
response key are counted once, as GraphQL runs them once; the branches of inline fragments on
different types are added up (an upper bound).

    { viewer { agency { subAccounts(first: 500) { edges { node { name } } } } } }      →  501
    { viewer { agency { subAccounts(first: 100) { edges { node {
        lines(first: 10) { edges { node { number } } } } } } } } }                      → 1101

A connection is a field with a `first` argument whose type's name ends in `Connection`.
The shape of each document (`connection_terms`) is worked out once per operation and kept with
the query's prepared document (schema/documents.py); a request only multiplies its variables
through it (`cost_of`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
)

from resolvers.paging import DEFAULT_PAGE_SIZE

# A page size: a literal, a variable (its name and its default), or None for the default size.
Size = int | tuple[str, int | None] | None
# One connection: its page size and those of the connections around it, outermost first.
Term = tuple[Size, ...]


class QueryTooCostly(Exception):
    def __init__(self, cost: int, maximum: int) -> None:
        super().__init__(
            f"This query could cost {cost}, more than the maximum of {maximum}: ask for "
            "smaller pages (`first`) or fewer nested connections."
        )
        self.cost = cost
        self.maximum = maximum

    def as_graphql_error(self) -> GraphQLError:
        return GraphQLError(
            str(self),
            original_error=self,
            extensions={"code": "QUERY_TOO_COSTLY", "cost": self.cost, "maximum": self.maximum},
        )


@dataclass
class _Walk:
    schema: GraphQLSchema
    fragments: Mapping[str, FragmentDefinitionNode]
    defaults: Mapping[str, int | None]
    terms: list[Term]

    def selection_sets(
        self, sets: list[SelectionSetNode], parent: Any, sizes: Term, seen: frozenset[str]
    ) -> None:
        fields: dict[tuple[str, str], list[FieldNode]] = {}
        for node, on in self._fields(sets, parent, seen):
            key = (on.name, node.alias.value if node.alias else node.name.value)
            fields.setdefault(key, []).append(node)
        for (type_name, _), nodes in fields.items():
            on = self.schema.get_type(type_name)
            assert isinstance(on, GraphQLObjectType | GraphQLInterfaceType)
            field = on.fields.get(nodes[0].name.value)
            if field is None:
                continue  # __typename, or a field validation refuses
            named = get_named_type(field.type)
            inner = sizes
            if "first" in field.args and named.name.endswith("Connection"):
                inner = (*sizes, self._size(nodes[0]))
                self.terms.append(inner)
            children = [node.selection_set for node in nodes if node.selection_set]
            if children:
                self.selection_sets(children, named, inner, seen)

    def _fields(
        self, sets: list[SelectionSetNode], parent: Any, seen: frozenset[str]
    ) -> Iterator[tuple[FieldNode, Any]]:
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            parent = None  # a union: only its fragments select fields
        for selection_set in sets:
            for selection in selection_set.selections:
                if isinstance(selection, FieldNode):
                    if parent is not None:
                        yield selection, parent
                elif isinstance(selection, InlineFragmentNode):
                    condition = selection.type_condition
                    on = self.schema.get_type(condition.name.value) if condition else parent
                    yield from self._fields([selection.selection_set], on, seen)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self.fragments.get(name)
                    if fragment is None or name in seen:
                        continue  # validation refuses unknown and cyclic fragments
                    on = self.schema.get_type(fragment.type_condition.name.value)
                    yield from self._fields([fragment.selection_set], on, seen | {name})

    def _size(self, node: FieldNode) -> Size:
        for argument in node.arguments or ():
            if argument.name.value != "first":
                continue
            value = argument.value
            if isinstance(value, IntValueNode):
                return int(value.value)
            if isinstance(value, VariableNode):
                name = value.name.value
                return (name, self.defaults.get(name))
        return None


def connection_terms(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> list[Term]:
    """Each connection the operation selects, as the page sizes to multiply."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return []
    root = schema.get_root_type(operation.operation)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    walk = _Walk(schema, fragments, _variable_defaults(operation), [])
    walk.selection_sets([operation.selection_set], root, (), frozenset())
    return walk.terms


def _variable_defaults(operation: OperationDefinitionNode) -> dict[str, int | None]:
    defaults: dict[str, int | None] = {}
    for definition in operation.variable_definitions or ():
        value = definition.default_value
        defaults[definition.variable.name.value] = (
            int(value.value) if isinstance(value, IntValueNode) else None
        )
    return defaults


def _page_size(size: Size, variables: Mapping[str, Any]) -> int:
    if isinstance(size, tuple):
        name, default = size
        value = variables.get(name, default)
        size = value if isinstance(value, int) and not isinstance(value, bool) else None
    return DEFAULT_PAGE_SIZE if size is None else max(size, 0)


def cost_of(terms: list[Term], variables: Mapping[str, Any] | None) -> int:
    variables = variables or {}
    total = 1
    for term in terms:
        product = 1
        for size in term:
            product *= _page_size(size, variables)
        total += product
    return total
