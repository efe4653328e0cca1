"""`input_coercer` answers what graphql-core's `coerce_input_value` answers, for every input
type of our schema and values of every shape (well-formed, missing fields, unknown fields,
wrong kinds, nulls, single values where lists go); and the prepared path's variables are
graphql-core's `get_variable_values`, or left to it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    Undefined,
    get_variable_values,
    parse,
)
from graphql.utilities import coerce_input_value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schema.roots import build_schema
from schema.variables import OperationPlan, input_coercer

SCHEMA = build_schema()._schema
INPUT_OBJECTS = sorted(
    (t for t in SCHEMA.type_map.values() if isinstance(t, GraphQLInputObjectType)),
    key=lambda t: t.name,
)

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.just("2026-11-30T10:00:00Z"),
    st.just("U3ViQWNjb3VudDpmNjY0NDk5Mi05MTgzLTRkNmQtYmVmYi0wNWM5NmI3N2RjODc"),
    st.just({}),
    st.just([]),
)


def scalar_values(type_: GraphQLScalarType) -> st.SearchStrategy[Any]:
    typical = {
        "Int": st.integers(min_value=-(2**33), max_value=2**33),
        "Float": st.floats(allow_nan=False) | st.integers(),
        "Boolean": st.booleans(),
        "String": st.text(max_size=20),
        "ID": st.text(max_size=20) | st.integers(),
        "DateTime": st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
    }.get(type_.name, st.text(max_size=20))
    return st.one_of(typical, typical, typical, typical, JUNK)


def values_of(type_: GraphQLInputType, depth: int = 0) -> st.SearchStrategy[Any]:
    """Mostly values of the type, sometimes not: each level may be swapped for junk."""
    if depth > 4:
        return JUNK
    if isinstance(type_, GraphQLNonNull):
        return values_of(type_.of_type, depth)
    if isinstance(type_, GraphQLList):
        item = values_of(type_.of_type, depth + 1)
        return st.one_of(st.lists(item, max_size=4), item, JUNK)
    if isinstance(type_, GraphQLEnumType):
        names = st.sampled_from(list(type_.values))
        return st.one_of(names, names, names, JUNK)
    if isinstance(type_, GraphQLScalarType):
        return scalar_values(type_)
    assert isinstance(type_, GraphQLInputObjectType)
    fields = {name: values_of(f.type, depth + 1) for name, f in type_.fields.items()}
    well_formed = st.fixed_dictionaries({}, optional=fields) | st.fixed_dictionaries(fields)
    with_unknown = st.builds(lambda d: {**d, "unknownField": 1}, well_formed)
    return st.one_of(well_formed, well_formed, well_formed, with_unknown, JUNK)


def wrapped(named: GraphQLInputObjectType) -> list[GraphQLInputType]:
    return [named, GraphQLNonNull(named), GraphQLNonNull(GraphQLList(GraphQLNonNull(named)))]


TYPES = [t for named in INPUT_OBJECTS for t in wrapped(named)]


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (a StrEnum member equals its name)."""
    if a is Undefined or b is Undefined:
        return a is b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


@pytest.mark.parametrize("type_", TYPES, ids=str)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_made_coercer_answers_what_graphql_core_answers(type_, data):
    coerce = input_coercer(type_)
    assert coerce is not None  # no input type of ours is recursive
    value = data.draw(values_of(type_))

    assert same(coerce(value), coerce_input_value(value, type_))


def test_every_input_type_is_checked_and_well_formed_values_coerce():
    assert len(INPUT_OBJECTS) > 20
    record = SCHEMA.type_map["RecordCallsInput"]
    call = {
        "externalId": "c-1",
        "subAccountId": "U3ViQWNjb3VudDpmNjY0NDk5Mi05MTgzLTRkNmQtYmVmYi0wNWM5NmI3N2RjODc",
        "direction": "INBOUND",
        "channel": "PHONE",
        "status": "COMPLETED",
        "tier": "BASIC",
        "startedAt": "2026-11-30T10:00:00+01:00",
        "durationSeconds": 61,
    }
    coerced = input_coercer(record)({"calls": [call, call]})  # type: ignore[misc]

    assert same(coerced, coerce_input_value({"calls": [call, call]}, record))
    assert coerced["calls"][0]["startedAt"] == datetime(2026, 11, 30, 9, tzinfo=UTC)
    assert input_coercer(record)({"calls": [{**call, "durationSeconds": "61"}]}) is Undefined


ENUMS = sorted(
    (t for t in SCHEMA.type_map.values() if isinstance(t, GraphQLEnumType) and t.name[:2] != "__"),
    key=lambda t: t.name,
)


@pytest.mark.parametrize("enum", ENUMS, ids=str)
def test_every_enums_names_and_anything_else_coerce_as_graphql_core_coerces_them(enum):
    coerce = input_coercer(GraphQLNonNull(enum))
    assert coerce is not None
    for value in [*enum.values, "nope", "", 1, True, None, ["A"], {"A": 1}]:
        assert same(coerce(value), coerce_input_value(value, GraphQLNonNull(enum))), value


def test_a_recursive_input_type_is_left_to_graphql_core():
    node = GraphQLInputObjectType("Node", lambda: {"next": node, "label": GraphQLScalarType("S")})
    assert input_coercer(node) is None
    assert input_coercer(GraphQLList(node)) is None


VARIABLES = """query Q($a: Int!, $b: String, $c: [CallInput!], $d: Int = 3) {
  viewer { user { id } } }"""


@pytest.mark.parametrize(
    "inputs",
    [
        {"a": 1, "d": 4},
        {"a": 1, "b": None, "d": 4},
        {"a": 1, "b": "x", "c": [], "d": None},
        {"a": 1, "c": None, "d": 0},
    ],
)
def test_variables_are_what_graphql_core_makes_of_them(inputs):
    document = parse(VARIABLES)
    [operation] = document.definitions
    plan = OperationPlan.of(SCHEMA, document, operation)  # type: ignore[arg-type]
    assert plan is not None

    ours = plan.variable_values(inputs)
    theirs = get_variable_values(SCHEMA, operation.variable_definitions, inputs)  # type: ignore[attr-defined]

    assert ours is not None and not isinstance(theirs, list)
    assert ours.coerced == theirs.coerced
    assert shown(ours.sources) == shown(theirs.sources)


def shown(sources: dict[str, Any]) -> dict[str, Any]:
    """A variable's source, its signature's type by name (graphql-core makes a new wrapper
    type for each signature, and wrappers compare by identity)."""
    return {
        name: (str(s.signature.type), s.signature.default, s.value) for name, s in sources.items()
    }


@pytest.mark.parametrize(
    "inputs",
    [
        {},  # a required variable missing: graphql-core's error
        {"a": "one"},  # does not coerce: graphql-core's error
        {"a": None},  # null for a non-null variable
        {"a": 1},  # absent with a default: graphql-core applies it
        ["not", "a", "dict"],
    ],
)
def test_what_needs_graphql_core_is_left_to_it(inputs):
    document = parse(VARIABLES)
    [operation] = document.definitions
    plan = OperationPlan.of(SCHEMA, document, operation)  # type: ignore[arg-type]

    assert plan is not None and plan.variable_values(inputs) is None


def test_fragment_variables_are_left_to_graphql_core():
    document = parse(
        "query { viewer { ...F(n: 1) } } fragment F($n: Int) on Viewer { user { id } }",
        experimental_fragment_arguments=True,
    )
    operation = document.definitions[0]
    assert OperationPlan.of(SCHEMA, document, operation) is None  # type: ignore[arg-type]
