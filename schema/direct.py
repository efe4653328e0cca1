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

`DirectExecution`, the executor, then resolves and completes the synchronous ones itself
(`DirectField`), without graphql-core's resolve-info object and its per-field dispatch: a
scalar or enum coerced in one step (an attribute or argument-less method read in the object's
own loop over its fields, without a path or a call per field), an object's sub-selection
executed on it (after its type's `is_type_of`, if any), a list of objects item by item;
arguments coerced once per field node when they hold no variable; a method's `info` given a
resolve-info object that is built only if something other than its context is read
(`_LazyInfo`). Anything unusual (a null on a non-null field or in a list, an exception
returned, an awaitable, a type check that says no, a value that does not coerce) goes to
graphql-core's completion with the value already resolved, which reports it as always. For a
document whose selections no variable can change it also keeps the sub-selections it
collects, and those literal arguments and plans, for the next request of the same text
(`SharedCollections`).
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, NamedTuple
from uuid import UUID

import strawberry
from graphql import (
    DocumentNode,
    GraphQLEnumType,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    Undefined,
)
from graphql.execution.collect_fields import (
    CollectedFields,
    FieldDetailsList,
    GroupedFieldSet,
    collect_subfields,
)
from graphql.execution.executor import to_nodes
from graphql.execution.values import get_argument_values
from graphql.language import (
    DirectiveNode,
    FragmentDefinitionNode,
    ListValueNode,
    ObjectValueNode,
    ValueNode,
    VariableNode,
    Visitor,
    visit,
)
from graphql.pyutils import Path, gather_with_cancel
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


class DirectField(NamedTuple):
    """What `DirectExecution` needs to resolve and complete a field itself: how to get the
    value (`get(source, arguments, info)`: an attribute, or a synchronous method), whether
    that method takes `info` (then given a `_LazyInfo`), how to convert the field's coerced
    arguments for it (None: it takes none), and how the value completes (`complete`)."""

    get: Callable[[Any, dict[str, Any], Any], Any]
    takes_info: bool
    arguments: Callable[[dict[str, Any]], dict[str, Any]] | None
    complete: DirectLeaf | DirectObject | DirectList | None  # None: graphql-core's completion


class DirectLeaf(NamedTuple):
    """A scalar or enum: the value coerced for output in one step."""

    type: GraphQLScalarType | GraphQLEnumType
    nullable: bool


class DirectObject(NamedTuple):
    """An object type: its sub-selection executed on the value, once the type's
    `is_type_of` (strawberry's, for the types that implement an interface) accepts it."""

    type: GraphQLObjectType
    nullable: bool


class DirectList(NamedTuple):
    """A list of such objects: each item's sub-selection executed on it."""

    item: DirectObject
    nullable: bool


def _completion(kind: Any) -> DirectLeaf | DirectObject | DirectList | None:
    nullable = not isinstance(kind, GraphQLNonNull)
    if not nullable:
        kind = kind.of_type
    if isinstance(kind, GraphQLScalarType | GraphQLEnumType):
        return DirectLeaf(kind, nullable)
    if isinstance(kind, GraphQLObjectType):
        return DirectObject(kind, nullable)
    if isinstance(kind, GraphQLList):
        item = _completion(kind.of_type)
        return DirectList(item, nullable) if isinstance(item, DirectObject) else None
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

        read = operator.attrgetter(name)
        attribute.direct = DirectField(  # type: ignore[attr-defined]
            lambda source, _arguments, _info: read(source),
            False,
            None,
            _completion(graphql_field.type),
        )
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

    def converted(given: dict[str, Any]) -> dict[str, Any]:
        kwargs = {}
        for graphql_name, python_name, convert in converters:
            if graphql_name in given:
                value = given[graphql_name]
                kwargs[python_name] = value if convert is None else convert(value)
        return kwargs

    def method_call(source: Any, info: GraphQLResolveInfo, **given: Any) -> Any:
        kwargs = converted(given)
        if info_name is not None:
            kwargs[info_name] = info_class(_raw_info=info, _field=field)
        return method(source, **kwargs)

    if not resolver.is_async:
        method_call.direct = DirectField(  # type: ignore[attr-defined]
            _caller(method, info_name, info_class, field),
            info_name is not None,
            converted if converters else None,
            _completion(graphql_field.type),
        )
    return method_call


def _caller(
    method: Callable[..., Any], info_name: str | None, info_class: type, field: StrawberryField
) -> Callable[[Any, dict[str, Any], Any], Any]:
    """`DirectField.get` for a method: called with its converted arguments and, if it takes
    one, strawberry's `Info` around the lazy resolve-info object."""
    if info_name is None:
        return lambda source, kwargs, _: method(source, **kwargs) if kwargs else method(source)

    def with_info(source: Any, kwargs: dict[str, Any], info: Any) -> Any:
        return method(source, **kwargs, **{info_name: info_class(_raw_info=info, _field=field)})

    return with_info


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

    __slots__ = ("_collected", "arguments", "field_sets", "plans")

    def __init__(self) -> None:
        self._collected: dict[tuple[Any, ...], tuple[FieldDetailsList, CollectedFields]] = {}
        # a field's converted arguments by (field node, field definition), for the nodes
        # whose arguments hold no variable (`DirectExecution._arguments`)
        self.arguments: dict[tuple[int, int], dict[str, Any]] = {}
        # the field sets collected above (alive as long as this is), and each one's fields with
        # its plain leaves (`DirectExecution._plan`) by (type, field set). A field set made for
        # one request (the root's) is planned for that request only: kept here, each request
        # would add one.
        self.field_sets: set[int] = set()
        self.plans: dict[tuple[int, int], tuple[GroupedFieldSet, Any]] = {}

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
            self.field_sets.add(id(collected.grouped_field_set))
        return found[1]


class DirectExecution(StrawberryGraphQLCoreExecutionContext):
    """strawberry's executor, resolving and completing `DirectField`s itself (the module's
    docstring says how, and which values still go graphql-core's way).

    Given `collections` (the document's `SharedCollections`), sub-selections and literal
    arguments are worked out once per document, not once per request, and lists of objects
    are completed directly too (such a document has no `@stream` that could ask for them to be
    streamed)."""

    def __init__(self, *args: Any, collections: SharedCollections | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.collections = collections
        self._plans: dict[tuple[int, int], tuple[GroupedFieldSet, Any]] = {}  # this request's

    def build_per_event_executor(self, payload: Any) -> Any:
        # A subscription's event runs on a shallow copy of its executor: each event plans its
        # own field sets, which would otherwise pile up in the subscription's for as long as
        # it lives (tests/api/test_live_memory.py).
        executor = super().build_per_event_executor(payload)
        executor._plans = {}
        return executor

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

    def execute_fields(  # type: ignore[override]
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        """graphql-core's `execute_fields`, with the object's plain leaves (`_Inline`) read
        and coerced without a path or `execute_field` (`_leaf`)."""
        plan = self._plan(parent_type, grouped_field_set)
        if plan is None:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for response_name, field_details_list, inline in plan:
                if inline is None:
                    result = self.execute_field(
                        parent_type,
                        source_value,
                        field_details_list,
                        Path(path, response_name, parent_type.name),
                        position_context,
                    )
                else:
                    result = self._leaf(
                        inline,
                        parent_type,
                        source_value,
                        field_details_list,
                        path,
                        response_name,
                        position_context,
                    )
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:  # settled, as graphql-core does, not left unawaited
                self.settle_in_background([results[field] for field in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:
                field = awaitable_fields[0]
                results[field] = await results[field]
            else:
                awaited = await gather_with_cancel(*(results[f] for f in awaitable_fields))
                results.update(zip(awaitable_fields, awaited, strict=True))
            return results

        return get_results()

    def _leaf(
        self,
        inline: _Inline,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path | None,
        response_name: str,
        position_context: Any,
    ) -> Any:
        """An inline leaf's completed value; one that needs more (a null on a non-null field,
        an error, an awaitable, a value that does not coerce) is completed by graphql-core,
        with the field's path, from the value already read."""
        try:
            value = inline.get(source, _NO_ARGUMENTS, None)
        except Exception as raw_error:  # as graphql-core: the error at this field
            field_path = Path(path, response_name, parent_type.name)
            self.handle_field_error(raw_error, inline.field.type, field_details_list, field_path)
            return None
        if value is None:
            if inline.nullable:
                return None
        else:
            coerced = self._leaf_output(inline.type, value)
            if coerced is not Undefined:
                return coerced
        return self._complete_generally(
            parent_type,
            inline.field,
            field_details_list,
            Path(path, response_name, parent_type.name),
            value,
            position_context,
        )

    def _leaf_output(self, leaf_type: GraphQLScalarType | GraphQLEnumType, value: Any) -> Any:
        """A non-null leaf value coerced for output in one step, or Undefined when it needs
        graphql-core's completion, which reports it (an error returned, an awaitable, a value
        that does not coerce)."""
        if type(value) not in _PLAIN and (isinstance(value, Exception) or self.is_awaitable(value)):
            return Undefined
        try:
            coerced = leaf_type.coerce_output_value(value)
        except Exception:
            return Undefined
        return Undefined if coerced is None else coerced

    def _plan(
        self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet
    ) -> tuple[tuple[str, FieldDetailsList, _Inline | None], ...] | None:
        """The fields of `grouped_field_set`, each with its `_Inline` leaf if it is one (an
        attribute or a synchronous method of no arguments and no `info`, of a scalar or enum
        type); None when none is (graphql-core's loop then). Kept with the document's
        collections, or for this request."""
        collections = self.collections
        shared = collections is not None and id(grouped_field_set) in collections.field_sets
        plans = collections.plans if shared else self._plans  # type: ignore[union-attr]
        key = (id(parent_type), id(grouped_field_set))
        found = plans.get(key)
        if found is not None:
            return found[1]
        manager = self.middleware_manager
        plan: tuple[tuple[str, FieldDetailsList, _Inline | None], ...] | None = None
        if manager is None or not manager.middlewares:
            fields = parent_type.fields
            plan = tuple(
                (name, details, _inline(fields.get(details[0].node.name.value)))
                for name, details in grouped_field_set.items()
            )
            if not any(inline is not None for _, _, inline in plan):
                plan = None
        # the field set kept with its plan: its identity is the key
        plans[key] = (grouped_field_set, plan)
        return plan

    def execute_field(  # type: ignore[override]
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        field_def = parent_type.fields.get(field_details_list[0].node.name.value)
        direct: DirectField | None = getattr(field_def and field_def.resolve, "direct", None)
        manager = self.middleware_manager
        if direct is None or (manager is not None and manager.middlewares):
            return super().execute_field(
                parent_type, source, field_details_list, path, position_context
            )
        assert field_def is not None
        if direct.arguments is None:
            kwargs = _NO_ARGUMENTS
        else:
            found = self._arguments(field_def, field_details_list, direct)
            if found is None:  # an argument that does not coerce: graphql-core's error
                return super().execute_field(
                    parent_type, source, field_details_list, path, position_context
                )
            kwargs = found
        info = (
            _LazyInfo(self, field_def, field_details_list, parent_type, path)
            if direct.takes_info
            else None
        )
        try:
            value = direct.get(source, kwargs, info)
        except Exception as raw_error:  # as graphql-core: the error at this field
            self.handle_field_error(raw_error, field_def.type, field_details_list, path)
            return None
        complete = direct.complete
        kind = type(complete)
        if value is None:
            if complete is not None and complete.nullable:
                return None
        elif kind is DirectLeaf:
            coerced = self._leaf_output(complete.type, value)  # type: ignore[union-attr]
            if coerced is not Undefined:
                return coerced
        elif kind is DirectObject:
            if not (isinstance(value, Exception) or self.is_awaitable(value)) and self._accepts(
                complete.type,  # type: ignore[union-attr]
                value,
                info,
                field_def,
                field_details_list,
                parent_type,
                path,
            ):
                completing = self.collect_and_execute_subfields
                return self._completed(
                    lambda: completing(
                        complete.type,  # type: ignore[union-attr]
                        field_details_list,
                        path,
                        value,
                        position_context,
                    ),
                    field_def.type,
                    field_details_list,
                    path,
                )
        elif kind is DirectList:
            # when no @stream can ask for it to be streamed (`collections`), and no item needs
            # graphql-core's care (null, an error, awaitable)
            is_awaitable = self.is_awaitable
            item_type = complete.item.type  # type: ignore[union-attr]
            if (
                self.collections is not None
                and type(value) in (list, tuple)
                and not any(
                    item is None or isinstance(item, Exception) or is_awaitable(item)
                    for item in value
                )
                and all(
                    self._accepts(
                        item_type, item, info, field_def, field_details_list, parent_type, path
                    )
                    for item in value
                )
            ):
                return self._completed(
                    lambda: self._objects(
                        complete,  # type: ignore[arg-type]
                        field_details_list,
                        path,
                        value,
                        position_context,
                    ),
                    field_def.type,
                    field_details_list,
                    path,
                )
        # anything else as graphql-core completes it: its errors, its checks
        return self._complete_generally(
            parent_type, field_def, field_details_list, path, value, position_context
        )

    def _accepts(
        self,
        object_type: GraphQLObjectType,
        value: Any,
        info: _LazyInfo | None,
        field_def: GraphQLField,
        field_details_list: FieldDetailsList,
        parent_type: GraphQLObjectType,
        path: Path,
    ) -> bool:
        """Whether the type's `is_type_of`, if it has one, says plainly yes to the value
        (given this field's resolve-info object, built only if it looks). Anything else (no,
        or an awaitable) is for graphql-core's completion, which asks again and reports."""
        is_type_of = object_type.is_type_of
        if is_type_of is None:
            return True
        if info is None:
            info = _LazyInfo(self, field_def, field_details_list, parent_type, path)
        try:
            accepted = is_type_of(value, info)  # type: ignore[arg-type]
        except Exception:
            return False  # graphql-core asks again, and reports the error at this field
        if accepted is True:
            return True
        close = getattr(accepted, "close", None)  # an unawaited coroutine: asked again there
        if close is not None:
            close()
        return False

    def _arguments(
        self, field_def: GraphQLField, field_details_list: FieldDetailsList, direct: DirectField
    ) -> dict[str, Any] | None:
        """The method's keyword arguments for this field node, as strawberry would convert
        graphql-core's coerced values; kept per node when the node's arguments hold no
        variable. None when they do not coerce."""
        details = field_details_list[0]
        node = details.node
        collections = self.collections
        if collections is not None:
            kept = collections.arguments.get((id(node), id(field_def)))
            if kept is not None:
                return kept
        try:
            given = get_argument_values(
                field_def,
                node,
                self.variable_values,
                details.fragment_variable_values,
                self.hide_suggestions,
            )
        except Exception:
            return None
        kwargs = direct.arguments(given)  # type: ignore[misc]
        if (
            collections is not None
            and details.fragment_variable_values is None
            and all(_without_variables(argument.value) for argument in node.arguments)
        ):
            collections.arguments[id(node), id(field_def)] = kwargs
        return kwargs

    def _objects(
        self,
        complete: DirectList,
        field_details_list: FieldDetailsList,
        path: Path,
        items: Sequence[Any],
        position_context: Any,
    ) -> Any:
        """A list of objects, each item's sub-selection executed as graphql-core's
        `complete_iterable_value` and `complete_list_item_value` would (no item here is
        null, an error or awaitable: those went the general way)."""
        item_type = complete.item.type
        declared = item_type if complete.item.nullable else GraphQLNonNull(item_type)
        completing = self.collect_and_execute_subfields
        completed: list[Any] = []
        awaitable: list[int] = []
        try:
            for index, item in enumerate(items):
                item_path = path.add_key(index, None)
                try:
                    result = completing(
                        item_type, field_details_list, item_path, item, position_context
                    )
                except Exception as raw_error:
                    self.handle_field_error(raw_error, declared, field_details_list, item_path)
                    result = None
                else:
                    if self.is_awaitable(result):
                        result = self._awaited(result, declared, field_details_list, item_path)
                        awaitable.append(index)
                completed.append(result)
        except Exception:
            if awaitable:  # settled, as graphql-core does, not left unawaited
                self.settle_in_background([completed[index] for index in awaitable])
            raise
        if not awaitable:
            return completed

        async def awaited() -> list[Any]:
            if len(awaitable) == 1:  # as graphql-core: awaited directly, not in a task
                completed[awaitable[0]] = await completed[awaitable[0]]
                return completed
            results = await gather_with_cancel(*(completed[index] for index in awaitable))
            for index, result in zip(awaitable, results, strict=True):
                completed[index] = result
            return completed

        return awaited()

    def _completed(
        self,
        complete: Callable[[], Any],
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> Any:
        """`complete()`, with a null on a non-null field and any error reported at this
        field as graphql-core's `execute_field` does (synchronously or once awaited)."""
        try:
            completed = complete()
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
        if self.is_awaitable(completed):
            return self._awaited(completed, return_type, field_details_list, path)
        return completed

    async def _awaited(
        self,
        completed: Awaitable[Any],
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> Any:
        """The awaited value, or the error reported at `path` (a field's, or a list item's)."""
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None

    def _complete_generally(
        self,
        parent_type: GraphQLObjectType,
        field_def: GraphQLField,
        field_details_list: FieldDetailsList,
        path: Path,
        value: Any,
        position_context: Any,
    ) -> Any:
        """What graphql-core's `execute_field` does with a resolved value: its completion,
        with the resolve-info object it needs for that (its errors name the field; lists
        may stream; an interface's types check the value)."""
        return_type = field_def.type
        info = self.build_resolve_info(field_def, to_nodes(field_details_list), parent_type, path)
        if self.is_awaitable(value):
            return self.complete_awaitable_value(
                return_type, field_details_list, info, path, value, position_context
            )
        return self._completed(
            lambda: self.complete_value(
                return_type, field_details_list, info, path, value, position_context
            ),
            return_type,
            field_details_list,
            path,
        )


_NO_ARGUMENTS: dict[str, Any] = {}


class _Inline(NamedTuple):
    """A leaf `DirectExecution.execute_fields` reads and coerces itself."""

    field: GraphQLField
    get: Callable[[Any, dict[str, Any], Any], Any]
    type: GraphQLScalarType | GraphQLEnumType
    nullable: bool


def _inline(field_def: GraphQLField | None) -> _Inline | None:
    direct: DirectField | None = getattr(field_def and field_def.resolve, "direct", None)
    if direct is None or direct.arguments is not None or direct.takes_info:
        return None
    complete = direct.complete
    if not isinstance(complete, DirectLeaf):
        return None
    return _Inline(field_def, direct.get, complete.type, complete.nullable)  # type: ignore[arg-type]


# values a leaf completes without asking whether they are awaitable
_PLAIN = frozenset({str, int, float, bool, Decimal, date, datetime, UUID})


class _LazyInfo:
    """The resolve-info object a direct method's `info` wraps: its `context` at once, anything
    else from the real one, built on first use (`build_resolve_info`). Most methods only read
    the context, and building graphql-core's object per field was a tenth of a large list's
    time."""

    __slots__ = ("_built", "_details", "_execution", "_field_def", "_parent_type", "_path")

    def __init__(
        self,
        execution: DirectExecution,
        field_def: GraphQLField,
        details: FieldDetailsList,
        parent_type: GraphQLObjectType,
        path: Path,
    ) -> None:
        self._execution = execution
        self._field_def = field_def
        self._details = details
        self._parent_type = parent_type
        self._path = path
        self._built: GraphQLResolveInfo | None = None

    @property
    def context(self) -> Any:
        return self._execution.context_value

    def __getattr__(self, name: str) -> Any:
        built = self._built
        if built is None:
            built = self._built = self._execution.build_resolve_info(
                self._field_def, to_nodes(self._details), self._parent_type, self._path
            )
        return getattr(built, name)


def _without_variables(value: ValueNode) -> bool:
    if isinstance(value, VariableNode):
        return False
    if isinstance(value, ListValueNode):
        return all(_without_variables(item) for item in value.values)
    if isinstance(value, ObjectValueNode):
        return all(_without_variables(field.value) for field in value.fields)
    return True
