"""The garbage-collection policy for processes holding many sockets (agencyhub/collector.py):
what survives a full collection is frozen, and frozen cycles are freed once the frozen heap
has doubled since the last complete walk."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from agencyhub.collector import RECOUNT_AFTER_FREEZING, SurvivorFreezer


class Node:
    """A tracked object that can hold a reference to itself (a cycle)."""

    def __init__(self) -> None:
        self.other: object = None


@pytest.fixture
def freezer() -> Iterator[SurvivorFreezer]:
    loop = asyncio.new_event_loop()
    freezer = SurvivorFreezer()
    freezer.install(loop)
    try:
        yield freezer
    finally:
        freezer.uninstall()
        loop.close()


def walked_by_collections(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())


def test_what_survives_a_full_collection_is_walked_by_none_after_it(
    freezer: SurvivorFreezer,
) -> None:
    kept = Node()
    assert walked_by_collections(kept)

    gc.collect()

    assert not walked_by_collections(kept)
    assert gc.get_freeze_count() > 0
    assert freezer.thaws == 0


def test_a_frozen_cycle_is_freed_once_the_frozen_heap_has_doubled(
    freezer: SurvivorFreezer,
) -> None:
    node = Node()
    node.other = node
    alive = weakref.ref(node)
    gc.collect()  # frozen while alive
    del node
    gc.collect()
    assert alive() is not None, "a frozen cycle is not found: the price of freezing"

    grown = [Node() for _ in range(2 * max(gc.get_freeze_count(), RECOUNT_AFTER_FREEZING))]
    gc.collect()  # freezes them too: the frozen heap has more than doubled, so it is thawed
    assert freezer.thaws == 1
    gc.collect()  # the complete walk

    assert alive() is None
    assert not walked_by_collections(grown[0]), "the complete walk's survivors are frozen again"


def test_uninstalling_returns_to_cpythons_policy() -> None:
    loop = asyncio.new_event_loop()
    freezer = SurvivorFreezer()
    freezer.install(loop)
    kept = Node()
    gc.collect()
    assert not walked_by_collections(kept)

    freezer.uninstall()
    loop.close()

    assert gc.get_freeze_count() == 0
    assert walked_by_collections(kept)
    assert freezer._collected not in gc.callbacks


async def test_the_server_freezes_what_survives_while_it_runs(app_client) -> None:
    kept = Node()
    gc.collect()
    assert not walked_by_collections(kept)


def test_ordinary_full_collections_do_not_count_the_frozen_heap(
    freezer: SurvivorFreezer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gc.get_freeze_count()` walks the whole frozen heap (CPython 3.11): it is asked only
    when what was frozen since the last complete walk could reach the thaw threshold."""
    kept = [Node() for _ in range(3 * RECOUNT_AFTER_FREEZING)]
    gc.collect()
    counted = 0
    real = gc.get_freeze_count

    def counting() -> int:
        nonlocal counted
        counted += 1
        return real()

    monkeypatch.setattr(gc, "get_freeze_count", counting)
    for _ in range(20):
        kept.append(Node())
        gc.collect()
    assert counted == 0
    assert freezer.thaws == 0
    assert not walked_by_collections(kept[-1])


def test_the_young_threshold_is_set_while_installed_and_restored_after():
    before = gc.get_threshold()
    loop = asyncio.new_event_loop()
    freezer = SurvivorFreezer(young_threshold=4321)
    freezer.install(loop)
    try:
        assert gc.get_threshold() == (4321, *before[1:])
    finally:
        freezer.uninstall()
        loop.close()
    assert gc.get_threshold() == before
