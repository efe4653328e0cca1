"""Objects, lists of objects and fields with arguments or `info`, resolved and completed by
`DirectExecution` itself (schema/direct.py), answer exactly what strawberry and graphql-core
answer: the same data, and the same errors at the same paths, with and without the
document's `SharedCollections` (which also keeps literal arguments), for the values the
shortcut must hand back to graphql-core (nulls, errors, awaitables, a type check that
refuses)."""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Any, NewType

import pytest
import strawberry
from graphql import execute, parse
from strawberry.execution.is_awaitable import optimized_is_awaitable

from schema.direct import DirectExecution, SharedCollections, resolve_directly

pytestmark = pytest.mark.filterwarnings("error")  # a coroutine never awaited fails


@strawberry.enum
class Colour(Enum):
    RED = "RED"
    BLUE = "BLUE"


Blank = NewType("Blank", str)  # coerced to null, whatever its value: graphql-core's error
BLANK = strawberry.scalar(name="Blank", serialize=lambda _: None, parse_value=str)


@strawberry.interface
class Named:
    name: str


@strawberry.type
class Tagged(Named):  # implements an interface: strawberry gives it an `is_type_of`
    tag: str


@strawberry.type
class Child:
    name: str

    @strawberry.field
    def where(self, info: strawberry.Info) -> str:  # the lazy resolve-info object, read
        return f"{info.field_name} at {'/'.join(map(str, info.path.as_list()))}"

    @strawberry.field
    def fails(self) -> int:
        raise ValueError("this child fails")

    @strawberry.field
    async def later_name(self) -> str:  # an item's sub-selection that must be awaited
        await asyncio.sleep(0)
        return f"later {self.name}"

    @strawberry.field
    async def later_failure(self) -> int:
        await asyncio.sleep(0)
        raise ValueError("this child fails later")


async def _later(value: Any) -> Any:
    await asyncio.sleep(0)
    return value


@strawberry.type
class Item:
    name: str
    child: Child
    maybe_child: Child | None
    broken_child: Child  # given None: null on a non-null field
    children: list[Child]
    holes: list[Child | None]  # a null item: graphql-core's completion
    broken_holes: list[Child]  # a null non-null item
    tagged: Tagged
    taggeds: list[Tagged]

    @strawberry.field
    def mistagged(self) -> Tagged:
        return Child(name="not tagged")  # type: ignore[return-value]

    @strawberry.field
    def failing_child(self) -> Child:
        raise ValueError("no child today")

    @strawberry.field
    def priced(self, info: strawberry.Info, colour: Colour, times: int = 1) -> str:
        return f"{self.name}:{colour.value}x{times} for {info.context['request']}"

    @strawberry.field
    def child_in(self, info: strawberry.Info, colour: Colour) -> Child:
        return Child(name=f"{self.name}-{colour.value}-{info.context['request']}")

    @strawberry.field
    def later_child(self) -> Child:  # a synchronous method that returns an awaitable
        return _later(Child(name=f"later {self.name}"))  # type: ignore[return-value]

    @strawberry.field
    def later_leaf(self) -> str:
        return _later(f"later leaf {self.name}")  # type: ignore[return-value]

    @strawberry.field
    def later_children(self) -> list[Child]:
        return [_later(Child(name="c1")), Child(name="c2")]  # type: ignore[list-item]

    @strawberry.field
    def blank(self) -> Blank:  # type: ignore[valid-type]
        return Blank("anything")

    @strawberry.field
    def scores(self, times: int) -> list[int]:  # not objects: graphql-core's completion
        return [times, times * 2]


def item(name: str) -> Item:
    return Item(
        name=name,
        child=Child(name=f"{name}'s child"),
        maybe_child=None,
        broken_child=None,  # type: ignore[arg-type]
        children=[Child(name=f"{name}1"), Child(name=f"{name}2")],
        holes=[Child(name="h"), None],
        broken_holes=[Child(name="h"), None],  # type: ignore[list-item]
        tagged=Tagged(name=f"{name} tagged", tag="t"),
        taggeds=[Tagged(name="t1", tag="a"), Tagged(name="t2", tag="b")],
    )


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        return [item("a"), item("b")]


def schemas() -> tuple[strawberry.Schema, strawberry.Schema]:
    plain = strawberry.Schema(query=Query, scalar_overrides={Blank: BLANK})
    direct = strawberry.Schema(
        query=Query, execution_context_class=DirectExecution, scalar_overrides={Blank: BLANK}
    )
    assert resolve_directly(direct) > 0
    return plain, direct


def outcome(result: Any) -> dict[str, Any]:
    return {
        "data": result.data,
        "errors": sorted((e.message, tuple(e.path or ())) for e in result.errors or ()),
    }


def strawberry_answer(schema: strawberry.Schema, query: str, variables: Any = None) -> Any:
    return outcome(
        asyncio.run(
            schema.execute(query, variable_values=variables, context_value={"request": "ctx"})
        )
    )


def direct_answer(
    schema: strawberry.Schema,
    document: Any,
    collections: SharedCollections | None,
    variables: Any = None,
) -> Any:
    async def run() -> Any:
        result = execute(
            schema._schema,
            document,
            context_value={"request": "ctx"},
            variable_values=variables,
            executor_class=DirectExecution,
            is_awaitable=optimized_is_awaitable,
            collections=collections,
        )
        return await result if asyncio.iscoroutine(result) else result

    return outcome(asyncio.run(run()))


FIELDS = [
    "name",
    "child { name where }",
    "maybeChild { name }",
    "brokenChild { name }",
    "children { name where }",
    "holes { name }",
    "brokenHoles { name }",
    "tagged { name tag }",
    "taggeds { name tag }",
    "mistagged { name }",
    "failingChild { name }",
    "child { fails }",
    "children { name fails }",
    "children { name laterName }",
    "children { laterName laterFailure }",
    "child { laterName laterFailure }",
    "priced(colour: BLUE, times: 2)",
    "priced(colour: RED)",
    "childIn(colour: RED) { name where }",
    "laterChild { name where }",
    "laterLeaf",
    "laterChildren { name }",
    "scores(times: 3)",
    "blank",
    "tagged { ... on Named { name } }",
]


@pytest.mark.parametrize("field", FIELDS)
def test_each_field_alone_answers_as_strawberry(field: str) -> None:
    plain, direct = schemas()
    query = f"{{ items {{ {field} }} }}"
    expected = strawberry_answer(plain, query)
    document = parse(query)
    collections = SharedCollections.for_document(document)
    assert collections is not None
    assert direct_answer(direct, document, None) == expected
    # twice with the document's collections: the second run reads what the first kept
    assert direct_answer(direct, document, collections) == expected
    assert direct_answer(direct, document, collections) == expected


def test_all_fields_together_answer_as_strawberry() -> None:
    plain, direct = schemas()
    query = "{ items { " + " ".join(f"f{n}: {f}" for n, f in enumerate(FIELDS)) + " } }"
    expected = strawberry_answer(plain, query)
    assert expected["errors"] and expected["data"] == {"items": [None, None]}
    document = parse(query)
    collections = SharedCollections.for_document(document)
    assert direct_answer(direct, document, collections) == expected
    assert direct_answer(direct, document, collections) == expected


def test_arguments_from_variables_are_not_kept_between_requests() -> None:
    plain, direct = schemas()
    query = """query($c: Colour!, $t: Int!) {
      items { priced(colour: $c, times: $t) childIn(colour: $c) { name } scores(times: $t) }
    }"""
    document = parse(query)
    collections = SharedCollections.for_document(document)
    for variables in ({"c": "RED", "t": 1}, {"c": "BLUE", "t": 5}, {"c": "RED", "t": 7}):
        expected = strawberry_answer(plain, query, variables)
        assert not expected["errors"]
        assert direct_answer(direct, document, collections, variables) == expected


def test_objects_lists_and_arguments_take_the_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    """No resolve-info object is built for the fields that need none: objects, lists of
    objects (an interface's type checked too), literal arguments, and `info` that is only
    asked for its context."""
    _, direct = schemas()
    built: list[str] = []
    original = DirectExecution.build_resolve_info

    def counted(self: Any, field_def: Any, nodes: Any, parent_type: Any, path: Any) -> Any:
        built.append(f"{parent_type.name}.{nodes[0].name.value}")
        return original(self, field_def, nodes, parent_type, path)

    monkeypatch.setattr(DirectExecution, "build_resolve_info", counted)
    query = """{ items { name child { name } children { name } tagged { name tag }
      taggeds { tag } priced(colour: RED) childIn(colour: BLUE) { name } } }"""
    document = parse(query)
    answer = direct_answer(direct, document, SharedCollections.for_document(document))
    assert not answer["errors"] and answer["data"]["items"][1]["childIn"] == {"name": "b-BLUE-ctx"}
    assert built == []
    built.clear()
    # `where` reads the field's path: built for it, and only for it
    document = parse("{ items { children { where } } }")
    answer = direct_answer(direct, document, SharedCollections.for_document(document))
    assert answer["data"]["items"][0]["children"][1] == {
        "where": "where at items/0/children/1/where"
    }
    assert built == ["Child.where"] * 4  # two items, two children each
    built.clear()
    # Without the document's collections (a document where @stream could ask for a list to
    # stream) lists go graphql-core's way.
    assert direct_answer(direct, document, None) == answer
    assert "Query.items" in built and "Item.children" in built


def test_plain_leaves_are_read_without_a_call_per_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """An object's attributes and argument-less methods of scalar type are read in its
    fields' loop (`DirectExecution.execute_fields`): `execute_field` runs for the others."""
    _, direct = schemas()
    called: list[str] = []
    original = DirectExecution.execute_field

    def counted(self: Any, parent_type: Any, source: Any, details: Any, *rest: Any) -> Any:
        called.append(f"{parent_type.name}.{details[0].node.name.value}")
        return original(self, parent_type, source, details, *rest)

    monkeypatch.setattr(DirectExecution, "execute_field", counted)
    document = parse("{ items { name child { name } tagged { name tag } priced(colour: RED) } }")
    for collections in (SharedCollections.for_document(document), None):
        answer = direct_answer(direct, document, collections)
        assert not answer["errors"] and answer["data"]["items"][0]["tagged"]["tag"] == "t"
        assert sorted(set(called)) == ["Item.child", "Item.priced", "Item.tagged", "Query.items"]
        assert len(called) == 1 + 2 * 3
        called.clear()


def test_what_a_document_keeps_does_not_grow_with_its_requests() -> None:
    """The plans, arguments and collections kept with a document are per field set and field
    node of the document: the root's field set, made anew for every request, is planned for
    that request only."""
    _, direct = schemas()
    document = parse("{ items { name child { name } priced(colour: RED) } }")
    collections = SharedCollections.for_document(document)
    assert collections is not None
    direct_answer(direct, document, collections)
    kept = (len(collections.plans), len(collections.arguments), len(collections.field_sets))
    assert kept[0] > 0 and kept[1] > 0
    for _ in range(20):
        direct_answer(direct, document, collections)
    assert (len(collections.plans), len(collections.arguments), len(collections.field_sets)) == kept


@strawberry.type
class Picky:
    x: int

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        raise ValueError("no opinion")


@strawberry.type
class Pondering:
    x: int

    @classmethod
    async def is_type_of(cls, obj: Any, info: Any) -> bool:  # an awaitable answer
        await asyncio.sleep(0)
        return isinstance(obj, cls)


@strawberry.type
class Bad:
    @strawberry.field
    async def bad(self) -> int | None:
        raise ValueError("an item fails")


@strawberry.type
class Outer:
    y: int = 1

    @strawberry.field
    def picky(self) -> Picky | None:
        return Picky(x=1)

    @strawberry.field
    def ponderings(self) -> list[Pondering]:
        return [Pondering(x=1), Pondering(x=2)]

    @strawberry.field
    def bads(self) -> list[Bad]:
        return [Bad()]

    @strawberry.field
    async def sibling(self) -> int | None:
        raise ValueError("a sibling fails")


@strawberry.type
class OuterQuery:
    @strawberry.field
    def outer(self) -> Outer:
        return Outer()


@pytest.mark.parametrize(
    "query",
    [
        "{ outer { y picky { x } } }",  # is_type_of raises: the error at this field
        "{ outer { ponderings { x } } }",  # is_type_of awaitable: asked once, awaited
        "{ outer { bads { bad } sibling } }",  # errors in graphql-core's order
    ],
)
def test_type_checks_and_error_order_as_graphql_core(query: str) -> None:
    plain = strawberry.Schema(query=OuterQuery)
    direct = strawberry.Schema(query=OuterQuery, execution_context_class=DirectExecution)
    resolve_directly(direct)
    document = parse(query)

    async def run(schema: strawberry.Schema, direct: bool, collections: Any) -> Any:
        extra = {"executor_class": DirectExecution, "collections": collections} if direct else {}
        result = execute(schema._schema, document, is_awaitable=optimized_is_awaitable, **extra)
        result = await result if asyncio.iscoroutine(result) else result
        return result.data, [(e.message, e.path) for e in result.errors or ()]  # in order

    expected = asyncio.run(run(plain, False, None))
    assert expected[1] or "ponderings" in query
    for collections in (None, SharedCollections.for_document(document)):
        assert asyncio.run(run(direct, True, collections)) == expected
