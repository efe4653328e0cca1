"""How live events are executed: once per event for subscribers that ask the same thing, and
without anything left behind per event.

Every subscriber of an event in a process receives the same event object (see
`schema.monitoring.shared_event`). When several of them sent the same subscription text with
the same variables and have the same access, the event's selection is executed once and the
result shared: a hundred identical dashboards cost one execution per event, not a hundred.
The results live on the event object, so they are gone with it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from graphql.execution import Executor
from graphql.pyutils import RefMap

from resolvers.context import RequestContext
from schema.direct import DirectExecution


class SharedResults:
    """Mixed into the GraphQL types of live events: where their shared results are kept."""

    def shared_results(self) -> dict[tuple[Any, ...], Any]:
        results: dict[tuple[Any, ...], Any] | None = self.__dict__.get("_shared_results")
        if results is None:
            results = self.__dict__["_shared_results"] = {}
        return results


class SharedEventExecution(DirectExecution):
    """strawberry's executor: each subscription event memoises its own sub-selections, and
    identical subscriptions share one execution per event."""

    def build_per_event_executor(self, payload: Any) -> Executor[Any]:
        # graphql-core 3.3 runs an event on a shallow copy of the subscription's executor, so
        # every event shared one sub-selection memo keyed by lists built anew per event: each
        # event added entries, kept for as long as the subscription lived — 3-4 KB per event
        # delivered (issue 11; tests/api/test_live_memory.py). Each event gets its own.
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        executor._stream_usages = RefMap()
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        event = self.root_value
        if serially is not False or not isinstance(event, SharedResults):
            return super().execute_operation(serially)  # not a subscription event
        key = self._sharing_key()
        if key is None:
            return super().execute_operation(serially)
        results = event.shared_results()
        shared = results.get(key)
        if shared is None:
            result = super().execute_operation(serially)
            if not self.is_awaitable(result):
                results[key] = result
                return result
            shared = results[key] = asyncio.ensure_future(result)
        if isinstance(shared, asyncio.Future):
            # shield: one subscriber leaving must not cancel the run the others wait for
            return asyncio.shield(shared)
        return shared

    def _sharing_key(self) -> tuple[Any, ...] | None:
        context = self.context_value
        viewer = context.loaded_viewer() if isinstance(context, RequestContext) else None
        location = self.operation.loc
        if viewer is None or location is None:
            return None
        variables = orjson.dumps(
            self.variable_values.coerced, option=orjson.OPT_SORT_KEYS, default=str
        )
        name = self.operation.name.value if self.operation.name else None
        return (location.source.body, name, variables, viewer)
