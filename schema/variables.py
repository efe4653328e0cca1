"""An operation's variables coerced by functions made once per operation, not by graphql-core's
general walk on every request.

graphql-core coerces a request's variables with `coerce_input_value`, which asks of every value
what kind of type it is (`is_non_null_type`, `is_list_type`, `is_input_object_type`,
`assert_leaf_type`, an `Iterable` check through `abc`), after walking the whole value once
more to check that it is not nested too deeply for Python's stack. For a batch of 1,000 calls
of eight fields that was 29 % of the server's CPU (BENCHMARKS.md, "Usage ingestion through
recordCalls"). `input_coercer` asks those questions once per type and returns a function
that answers, for any value, what `coerce_input_value` answers: the coerced value, or
`Undefined` for one that does not coerce (tests/schema/test_variables.py checks the two agree
on generated values of every input type of the schema).

`OperationPlan` is what `Executor.build` works out from a document, kept beside the document
(schema/documents.py), with those functions for its variables. Anything it does not take on
(a default to apply, a value that does not coerce and so needs its error message, fragment
variables, a recursive input type, whose depth the nesting check bounds) is left to
graphql-core's own way, which answers as always.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    FragmentDefinitionNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    OperationDefinitionNode,
    Undefined,
    assert_leaf_type,
    is_required_input_field,
)
from graphql.execution.collect_fields import FragmentDetails
from graphql.execution.get_variable_signature import (
    GraphQLVariableSignature,
    get_variable_signature,
)
from graphql.execution.values import VariableValues, VariableValueSource
from graphql.language import DocumentNode
from graphql.language.parser import MAX_NESTING_DEPTH
from graphql.pyutils import is_iterable
from graphql.utilities.coerce_input_value import coerce_default_value

Coercer = Callable[[Any], Any]


def input_coercer(type_: GraphQLInputType) -> Coercer | None:
    """What `coerce_input_value(value, type_)` returns, as a function of the value made once
    for the type; None for a type whose values graphql-core's nesting check could refuse (a
    recursive input type, or one nested deeper than `MAX_NESTING_DEPTH`)."""
    return _coercer(type_, ())


def _coercer(type_: GraphQLInputType, within: tuple[GraphQLInputType, ...]) -> Coercer | None:
    """`within`: the lists and input objects the type is nested in, as the check counts."""
    if len(within) >= MAX_NESTING_DEPTH:
        return None
    if isinstance(type_, GraphQLNonNull):
        return _non_null(type_.of_type, within)
    if isinstance(type_, GraphQLList):
        return _list(type_, within)
    if isinstance(type_, GraphQLInputObjectType):
        return _input_object(type_, within)
    return _leaf(type_)


def _non_null(inner_type: GraphQLInputType, within: tuple[GraphQLInputType, ...]) -> Coercer | None:
    inner = _coercer(inner_type, within)
    if inner is None:
        return None

    def non_null(value: Any) -> Any:
        if value is None or value is Undefined:
            return Undefined
        return inner(value)

    return non_null


def _list(type_: GraphQLList[Any], within: tuple[GraphQLInputType, ...]) -> Coercer | None:
    item = _coercer(type_.of_type, (*within, type_))
    if item is None:
        return None

    def list_of(value: Any) -> Any:
        if value is None or value is Undefined:
            return None
        if type(value) is not list and not is_iterable(value):
            coerced = item(value)  # a value that is not a list is a list of one
            return Undefined if coerced is Undefined else [coerced]
        items = []
        append = items.append
        for each in value:
            coerced = item(each)
            if coerced is Undefined:
                return Undefined
            append(coerced)
        return items

    return list_of


def _input_object(
    type_: GraphQLInputObjectType, within: tuple[GraphQLInputType, ...]
) -> Coercer | None:
    if any(outer is type_ for outer in within):
        return None  # recursive: graphql-core's nesting check bounds its depth
    fields = []
    for name, field in type_.fields.items():
        coerce = _coercer(field.type, (*within, type_))
        if coerce is None:
            return None
        fields.append((name, field.out_name or name, coerce, is_required_input_field(field), field))
    names = frozenset(type_.fields)
    out_type = type_.out_type
    one_of = type_.is_one_of

    def input_object(value: Any) -> Any:
        if value is None or value is Undefined:
            return None
        if not isinstance(value, dict):
            return Undefined
        defined = 0
        for name, field_value in value.items():
            if field_value is Undefined:
                continue
            defined += 1
            if name not in names:
                return Undefined
        coerced: dict[str, Any] = {}
        for name, out_name, coerce, required, field in fields:
            field_value = value.get(name, Undefined)
            if field_value is Undefined:
                if required:
                    return Undefined
                default = coerce_default_value(field)
                if default is not Undefined:
                    coerced[out_name] = default
            else:
                coerced_field = coerce(field_value)
                if coerced_field is Undefined:
                    return Undefined
                coerced[out_name] = coerced_field
        if one_of:
            keys = list(coerced)
            if defined != 1 or len(keys) != 1 or coerced[keys[0]] is None:
                return Undefined
        return out_type(coerced)

    return input_object


def _leaf(type_: GraphQLInputType) -> Coercer:
    leaf_type = assert_leaf_type(type_)
    coerce = leaf_type.coerce_input_value
    if isinstance(leaf_type, GraphQLEnumType):
        return _enum(leaf_type)

    def leaf(value: Any) -> Any:
        if value is None or value is Undefined:
            return None
        try:
            return coerce(value)
        except Exception:
            return Undefined

    return leaf


def _enum(type_: GraphQLEnumType) -> Coercer:
    """An enum's names looked up in a table of what its `coerce_input_value` gives for each
    (strawberry's enum type then makes the Python enum member from the value, which was 8 %
    of a 1,000-call batch's server CPU for its four enum fields); anything else goes to it."""
    coerce = type_.coerce_input_value
    table = {}
    for name in type_.values:
        try:
            table[name] = coerce(name)
        except Exception:  # left to `coerce` on each request, which refuses it as it would
            continue

    def enum(value: Any) -> Any:
        if value is None or value is Undefined:
            return None
        if type(value) is str:
            found = table.get(value, Undefined)
            if found is not Undefined:
                return found
        try:
            return coerce(value)
        except Exception:
            return Undefined

    return enum


@dataclass(frozen=True)
class _Variable:
    signature: GraphQLVariableSignature
    coerce: Coercer
    required: bool  # non-null, or with a default: absent, graphql-core's way answers


@dataclass(frozen=True)
class OperationPlan:
    """What graphql-core's `Executor.build` works out for an operation of a document, worked
    out once: the operation, the fragments, and its variables' signatures and coercers."""

    operation: OperationDefinitionNode
    fragment_definitions: dict[str, FragmentDefinitionNode]
    fragments: dict[str, FragmentDetails]
    variables: tuple[_Variable, ...]

    @staticmethod
    def of(
        schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
    ) -> OperationPlan | None:
        """The operation's plan; None when graphql-core's own way is needed for it (fragment
        variables, a recursive input type, a signature that is not valid)."""
        definitions = {}
        for definition in document.definitions:
            if isinstance(definition, FragmentDefinitionNode):
                if definition.variable_definitions:
                    return None
                definitions[definition.name.value] = definition
        variables = []
        for node in operation.variable_definitions or ():
            signature = get_variable_signature(schema, node)
            if isinstance(signature, GraphQLError):
                return None
            coerce = input_coercer(signature.type)
            if coerce is None:
                return None
            required = isinstance(signature.type, GraphQLNonNull) or bool(node.default_value)
            variables.append(_Variable(signature, coerce, required))
        fragments = {name: FragmentDetails(node) for name, node in definitions.items()}
        return OperationPlan(operation, definitions, fragments, tuple(variables))

    def variable_values(self, inputs: Any) -> VariableValues | None:
        """The request's variables as graphql-core's `get_variable_values` gives them; None
        when it should give them (with its errors or defaults)."""
        if inputs is None:
            inputs = {}
        elif not isinstance(inputs, dict):
            return None
        sources: dict[str, VariableValueSource] = {}
        coerced: dict[str, Any] = {}
        for variable in self.variables:
            name = variable.signature.name
            value = inputs.get(name, Undefined)
            if value is Undefined:
                if variable.required:
                    return None
                sources[name] = VariableValueSource(variable.signature)
                continue
            sources[name] = VariableValueSource(variable.signature, value)
            coerced_value = variable.coerce(value)
            if coerced_value is Undefined:
                return None
            coerced[name] = coerced_value
        return VariableValues(sources, coerced)
