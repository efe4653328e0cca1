"""Garbage collection for a process that holds thousands of live sockets.

CPython's cyclic collector walks every tracked object in a full (generation 2) collection, and
starts one whenever a quarter as many objects as the last one kept have been promoted since:
under steady load that is every few seconds, however little the heap grows. A live
subscription is about 330 tracked objects (the coroutines, generators, frames and closures of
its socket, handler and execution), so at 5,000 screens per process a full collection walked
1.6 million objects and stopped the event loop for 0.7 to 1.8 s: every event in flight waited
(BENCHMARKS.md, "Subscription fan-out").

`SurvivorFreezer` moves what survives each full collection into the permanent generation
(`gc.freeze`), where no collection walks it, and has the next one count only what came after
(a cheap full collection right away resets CPython's "a quarter of the last survivors"). Frozen
objects are still freed by reference counting as usual; what freezing defers is finding
*cycles* among them that die later (a closed socket's coroutines, a cancelled task's
traceback). So once the frozen heap has doubled since the last complete walk, it is thawed
(`gc.unfreeze`) and the next full collection walks everything once and frees those cycles: a
complete walk happens as often as the long-lived heap doubles, instead of whenever a quarter of
it has been promoted, and frozen garbage never outgrows what was alive at the last walk.

The youngest generation is collected every `young_threshold` net allocations (`GC_YOUNG_
THRESHOLD`, 5,000; CPython's default is 700). What a full collection walks is what was promoted
since the last one, and with the default most of a request's short-lived objects (a delivery's,
a 500-client list's result) are still alive at a young collection and get promoted, so full
collections came every few requests and walked 30-150 ms of them under load. With 5,000 most
die before their first collection: at 10,000 screens no full collection of 50 ms or more fell
in the load any more (two to four before), and publish-to-receive p99 went from 351-488 ms to
195-356 ms (BENCHMARKS.md, "Subscription fan-out"; the soak's memory stays flat). The older
generations keep CPython's thresholds.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

# A full collection that froze at least this many objects is followed by a cheap one, so that
# CPython's threshold for the next follows what is left unfrozen (about nothing) instead of
# what was frozen: otherwise the next full collection waits for a quarter of the frozen heap
# to be promoted and then walks all of that at once.
RECOUNT_AFTER_FREEZING = 10_000


class SurvivorFreezer:
    """Installed for a process's lifetime (`install`/`uninstall`); see the module docstring."""

    def __init__(self, thaw_after_growth: float = 2.0, young_threshold: int | None = None) -> None:
        self._growth = thaw_after_growth
        self._young = young_threshold
        self._thresholds = gc.get_threshold()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._walked = 0  # frozen objects after the last complete walk
        self._frozen_at_most = 0  # an upper bound of the frozen heap (exact at each check)
        self._thawed = True  # the next full collection walks everything
        self.full_collections = 0
        self.thaws = 0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thresholds = gc.get_threshold()
        if self._young is not None:
            gc.set_threshold(self._young, *self._thresholds[1:])
        gc.callbacks.append(self._collected)
        gc.collect()  # the first complete walk, and freezing what start-up built

    def uninstall(self) -> None:
        """Back to CPython's own policy: nothing frozen, no callback."""
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)
        self._loop = None
        gc.set_threshold(*self._thresholds)
        gc.unfreeze()

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2:
            self._after_full()

    def _after_full(self) -> None:
        self.full_collections += 1
        # What this collection kept (merged into the oldest generation; any object made by a
        # finaliser since is in the youngest): what `gc.freeze` is about to move. Counted from
        # the collection's own survivors, not with `gc.get_freeze_count()`, which walks the
        # whole frozen heap on CPython 3.11 (a million objects at 5,000 sockets, after every
        # full collection: 4 % of a server's CPU under the fan-out load).
        added = len(gc.get_objects(generation=2)) + max(0, gc.get_count()[0])
        gc.freeze()
        if self._thawed:
            frozen = gc.get_freeze_count()  # after a complete walk only: as rare as thaws
            self._walked = self._frozen_at_most = frozen
            self._thawed = False
        else:
            # Frozen objects leave only by dying (or by our own thaw), so adding what each
            # collection froze bounds the frozen heap from above; it is counted exactly only
            # when that bound reaches the thaw threshold.
            self._frozen_at_most += added
            threshold = self._growth * max(self._walked, RECOUNT_AFTER_FREEZING)
            if self._frozen_at_most >= threshold:
                self._frozen_at_most = gc.get_freeze_count()
                if self._frozen_at_most >= threshold:
                    gc.unfreeze()  # the next full collection walks everything, cycles are freed
                    self.thaws += 1
                    self._thawed = True
                    return
        if added >= RECOUNT_AFTER_FREEZING and self._loop is not None:
            # Not from inside this callback: a collection does not start during another.
            self._loop.call_soon_threadsafe(gc.collect)
