"""Fields resolved directly (schema/direct.py) answer exactly what strawberry's own resolvers
answer: the same data, and the same errors at the same paths, for every kind of field the
shortcut takes (attributes, methods with `info` and enum or scalar arguments, async methods,
leaves completed in one step) and for the values it must hand back to graphql-core (null on a
non-null field, a value that does not coerce, an exception)."""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Any

import pytest
import strawberry
from graphql import GraphQLObjectType

from schema.direct import DirectExecution, DirectLeaf, resolve_directly


@strawberry.enum
class Colour(Enum):
    RED = "RED"
    BLUE = "BLUE"


@strawberry.type
class Item:
    name: str
    label: str | None
    colour: Colour
    count: int
    broken_name: str  # set to None: null on a non-null field

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()

    @strawberry.field
    def fails(self) -> int:
        raise ValueError("this field fails")

    @strawberry.field
    def not_a_number(self) -> int:
        return "many"  # type: ignore[return-value]

    @strawberry.field
    def maybe(self) -> str | None:
        return None

    @strawberry.field
    def painted(self, info: strawberry.Info, colour: Colour, times: int = 1) -> str:
        assert info.context["request"] == "ctx"
        return f"{self.name}:{colour.value}x{times}"

    @strawberry.field
    async def later(self, info: strawberry.Info) -> str:
        await asyncio.sleep(0)
        return f"{self.name} later for {info.context['request']}"

    @strawberry.field
    def tags(self, prefix: list[str]) -> list[str]:  # a list argument: strawberry's path
        return [p + self.name for p in prefix]


def items() -> list[Item]:
    return [
        Item(name="a", label=None, colour=Colour.RED, count=1, broken_name="x"),
        Item(name="b", label="B", colour=Colour.BLUE, count=2, broken_name=None),  # type: ignore[arg-type]
    ]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item] | None:
        return items()

    @strawberry.field
    def first(self) -> Item:
        return items()[0]


QUERY = """
query($colour: Colour!) {
  first { name shout painted(colour: $colour, times: 3) later tags(prefix: ["p"]) }
  items {
    name label colour count shout maybe
    painted(colour: BLUE) later
    fails notANumber brokenName
  }
}
"""


def schemas() -> tuple[strawberry.Schema, strawberry.Schema]:
    plain = strawberry.Schema(query=Query)
    direct = strawberry.Schema(query=Query, execution_context_class=DirectExecution)
    assert resolve_directly(direct) > 0
    return plain, direct


def answer(schema: strawberry.Schema) -> dict[str, Any]:
    result = asyncio.run(
        schema.execute(QUERY, variable_values={"colour": "RED"}, context_value={"request": "ctx"})
    )
    return {
        "data": result.data,
        "errors": sorted((e.message, tuple(e.path or ())) for e in result.errors or ()),
    }


def test_direct_resolvers_answer_what_strawberry_answers() -> None:
    plain, direct = schemas()
    expected = answer(plain)
    # An error on a non-null field of an item nulls the item and so the whole list (a list of
    # non-null items); each kind of error is compared alone below.
    assert expected["data"]["first"] == {
        "name": "a",
        "shout": "A",
        "painted": "a:REDx3",
        "later": "a later for ctx",
        "tags": ["pa"],
    }
    assert expected["data"]["items"] is None
    assert expected["errors"]
    assert answer(direct) == expected


def test_leaves_and_methods_take_the_shortcut_and_the_rest_do_not() -> None:
    _, direct = schemas()
    item = direct._schema.type_map["Item"]
    assert isinstance(item, GraphQLObjectType)

    def leaf(name: str) -> bool:
        direct = getattr(item.fields[name].resolve, "direct", None)
        return direct is not None and isinstance(direct.complete, DirectLeaf)

    assert all(leaf(n) for n in ("name", "label", "colour", "count", "shout", "fails", "maybe"))
    assert leaf("painted")  # arguments and `info` (tests/test_direct_completion.py)
    assert not leaf("later")  # async: graphql-core awaits and completes it
    assert item.fields["painted"].resolve.__name__ == "method_call"
    assert item.fields["later"].resolve.__name__ == "method_call"
    # A list argument is not converted here: the field keeps strawberry's resolver.
    assert item.fields["tags"].resolve.__name__ != "method_call"


FAILING = ["fails", "notANumber", "brokenName"]


@pytest.mark.parametrize(
    "field",
    [
        "name",
        "label",
        "colour",
        "count",
        "shout",
        "maybe",
        "painted(colour: RED)",
        "later",
        *FAILING,
    ],
)
def test_each_field_alone_matches(field: str) -> None:
    plain, direct = schemas()
    query = f"{{ items {{ {field} }} }}"
    results = [
        asyncio.run(s.execute(query, context_value={"request": "ctx"})) for s in (plain, direct)
    ]
    assert results[0].data == results[1].data
    assert [(e.message, e.path) for e in results[0].errors or ()] == [
        (e.message, e.path) for e in results[1].errors or ()
    ]
    assert bool(results[1].errors) == (field in FAILING)
