"""Fields resolved by calling their Python method directly, not through strawberry's wrapper.

strawberry gives every field with a resolver the same generic path per call: an `Info`
object, argument conversion against the field's definition, field extensions chained with
`functools.partial`, `get_result`, the resolver object's `__call__`, and for an async field one
more coroutine around the resolver's. For a list of 500 clients that is about ten thousand
times per request, and it was about a third of the request's CPU (BENCHMARKS.md, "The Account
Manager list of 500 clients").

`resolve_directly` replaces, in the built graphql-core schema, the resolver of every field
whose definition needs none of that generality with a function that calls the method itself:

- plain attributes: `getattr(source, python_name)` (strawberry's default resolver);
- methods (`self`, optionally `info`) with no field extensions (permissions are extensions)
  and arguments of scalar types passed through as graphql-core coerced them (`str`, `int`,
  `bool`, `ID`) or of enum types (converted to the Python enum, as strawberry does); an async
  method's coroutine goes to graphql-core as it is.

Any other field (input objects, lists or custom scalars as arguments, root or parent
parameters, extensions) keeps strawberry's resolver. A schema whose config has a default
resolver other than `getattr` is left alone.

`DirectExecution`, the executor, also completes those fields' scalar values in one step and,
for a document whose selections no variable can change, keeps the sub-selections it collects
for the next request of the same text (`SharedCollections`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from enum import Enum
from typing import Any, NamedTuple

import strawberry
from graphql import (
    DocumentNode,
    GraphQLEnumType,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    Undefined,
)
from graphql.execution.collect_fields import CollectedFields, FieldDetailsList, collect_subfields
from graphql.language import DirectiveNode, FragmentDefinitionNode, Visitor, visit
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.arguments import StrawberryArgument
from strawberry.types.base import StrawberryOptional
from strawberry.types.enum import StrawberryEnumDefinition
from strawberry.types.field import StrawberryField

_PASSED_THROUGH = (str, int, bool, strawberry.ID)


def _converter(argument: StrawberryArgument) -> Callable[[Any], Any] | bool | None:
    """How a coerced argument becomes the resolver's: None to pass it as it is, a function to
    convert it, False when this module does not know (the field keeps strawberry's path)."""
    if argument.is_maybe:
        return False
    kind = argument.type
    if isinstance(kind, StrawberryOptional):
        kind = kind.of_type
    if isinstance(kind, StrawberryEnumDefinition):
        enum: type[Enum] = kind.wrapped_cls
        return lambda value: None if value is None else enum(value)
    if kind in _PASSED_THROUGH:
        return None
    return False


class DirectLeaf(NamedTuple):
    """A scalar or enum field whose value is `get(source)` (an attribute, or a synchronous
    method of no arguments): `DirectExecution` completes it without graphql-core's per-field
    machinery."""

    get: Callable[[Any], Any]
    type: GraphQLScalarType | GraphQLEnumType
    nullable: bool


def _leaf(graphql_field: GraphQLField, get: Callable[[Any], Any]) -> DirectLeaf | None:
    kind = graphql_field.type
    nullable = not isinstance(kind, GraphQLNonNull)
    if not nullable:
        kind = kind.of_type  # type: ignore[union-attr]
    if isinstance(kind, GraphQLScalarType | GraphQLEnumType):
        return DirectLeaf(get, kind, nullable)
    return None


def _direct(
    field: StrawberryField, graphql_field: GraphQLField, info_class: type
) -> Callable[..., Any] | None:
    if field.extensions:
        return None
    resolver = field.base_resolver
    if resolver is None:
        name = field.python_name

        def attribute(source: Any, info: GraphQLResolveInfo) -> Any:
            return getattr(source, name)

        attribute.direct_leaf = _leaf(graphql_field, operator.attrgetter(name))  # type: ignore[attr-defined]
        return attribute
    if resolver.self_parameter is None or resolver.root_parameter or resolver.parent_parameter:
        return None
    arguments = graphql_field.args
    converters: list[tuple[str, str, Callable[[Any], Any] | None]] = []
    for graphql_name, graphql_argument in arguments.items():
        argument = (graphql_argument.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        if not isinstance(argument, StrawberryArgument):
            return None
        convert = _converter(argument)
        if convert is False:
            return None
        converters.append((graphql_name, argument.python_name, convert))  # type: ignore[arg-type]
    method = resolver.wrapped_func
    info_parameter = resolver.info_parameter
    info_name = None if info_parameter is None else info_parameter.name

    def method_call(source: Any, info: GraphQLResolveInfo, **given: Any) -> Any:
        kwargs = {}
        for graphql_name, python_name, convert in converters:
            if graphql_name in given:
                value = given[graphql_name]
                kwargs[python_name] = value if convert is None else convert(value)
        if info_name is not None:
            kwargs[info_name] = info_class(_raw_info=info, _field=field)
        return method(source, **kwargs)

    if not converters and info_name is None and not resolver.is_async:
        method_call.direct_leaf = _leaf(graphql_field, method)  # type: ignore[attr-defined]
    return method_call


def resolve_directly(schema: strawberry.Schema) -> int:
    """Installs the direct resolvers; returns how many fields got one."""
    if schema.config.default_resolver is not getattr:
        return 0
    installed = 0
    for graphql_type in schema._schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType) or graphql_type.name.startswith("__"):
            continue
        for graphql_field in graphql_type.fields.values():
            field = (graphql_field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
            if not isinstance(field, StrawberryField) or field.is_subscription:
                continue
            direct = _direct(field, graphql_field, schema.config.info_class)
            if direct is not None:
                graphql_field.resolve = direct
                installed += 1
    return installed


_COLLECTION_DIRECTIVES = frozenset({"skip", "include", "defer", "stream"})


class _Variability(Visitor):
    found = False

    def enter_directive(self, node: DirectiveNode, *_: Any) -> Any:
        if node.name.value in _COLLECTION_DIRECTIVES:
            self.found = True
            return self.BREAK
        return None

    def enter_fragment_definition(self, node: FragmentDefinitionNode, *_: Any) -> Any:
        if node.variable_definitions:  # fragment arguments (experimental)
            self.found = True
            return self.BREAK
        return None


class SharedCollections:
    """The sub-selections of one document as graphql-core collects them, kept across its
    requests.

    graphql-core collects each object's sub-selection (fragments spread, aliases grouped)
    anew for every request, and memoises it only within one (by the identity of lists it
    builds per request). What it collects depends on the schema, the document, the object
    type, and the variables through `@skip`, `@include`, `@defer`, `@stream` and fragment
    arguments; for a document with none of those it is the same every time. py-spy put the
    collection at 5 % of the `viewer` query's server CPU (BENCHMARKS.md, "viewer query over
    HTTP"). Keyed by the type and the identity of the document's field nodes, which live as
    long as the document does: so is this, kept beside it (schema/documents.py).
    """

    __slots__ = ("_collected",)

    def __init__(self) -> None:
        self._collected: dict[tuple[Any, ...], tuple[FieldDetailsList, CollectedFields]] = {}

    @staticmethod
    def for_document(document: DocumentNode) -> SharedCollections | None:
        """A store for the document, or None when a variable can change what it selects."""
        variability = _Variability()
        visit(document, variability)
        return None if variability.found else SharedCollections()

    def collected(
        self, execution: DirectExecution, return_type: GraphQLObjectType, fields: FieldDetailsList
    ) -> CollectedFields:
        key = (return_type, *[id(details.node) for details in fields])
        found = self._collected.get(key)
        if found is None:
            collected = collect_subfields(
                execution.schema,
                execution.fragments,
                execution.variable_values,
                execution.operation,
                return_type,
                fields,
                execution.hide_suggestions,
            )
            # the field list kept with it: its nodes' identities are the key
            found = self._collected[key] = (fields, collected)
        return found[1]


class DirectExecution(StrawberryGraphQLCoreExecutionContext):
    """strawberry's executor, completing `DirectLeaf` fields in one step: the value read and
    coerced for output, without a resolve-info object, argument values or the general
    completion. A value that needs more (null on a non-null field, one that does not coerce,
    an exception) goes the general way, which reports it as graphql-core does.

    Given `collections` (the document's `SharedCollections`), sub-selections are collected
    once per document, not once per request."""

    def __init__(self, *args: Any, collections: SharedCollections | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.collections = collections

    def collect_subfields(
        self, return_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> CollectedFields:
        collections = self.collections
        if collections is None:
            return super().collect_subfields(return_type, field_details_list)
        # graphql-core's memo of this request first: a list's items ask with the same list
        memo = self._relevant_sub_fields
        key = (return_type, id(field_details_list))
        found = memo.get(key)
        if found is None:
            collected = collections.collected(self, return_type, field_details_list)
            found = memo[key] = (field_details_list, collected)
        return found[1]

    def execute_field(  # type: ignore[override]
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        field_def = parent_type.fields.get(field_details_list[0].node.name.value)
        leaf: DirectLeaf | None = getattr(field_def and field_def.resolve, "direct_leaf", None)
        manager = self.middleware_manager
        if leaf is not None and (manager is None or not manager.middlewares):
            try:
                value = leaf.get(source)  # a leaf's getter is pure: the general way may call again
                if value is None:
                    if leaf.nullable:
                        return None
                elif not isinstance(value, Exception):  # returned, not raised: graphql-core's
                    coerced = leaf.type.coerce_output_value(value)
                    if coerced is not None and coerced is not Undefined:
                        return coerced
            except Exception:
                pass
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
