"""One execution per live event for subscribers that ask the same thing.

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
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from resolvers.context import RequestContext


class SharedResults:
    """Mixed into the GraphQL types of live events: where their shared results are kept."""

    def shared_results(self) -> dict[tuple[Any, ...], Any]:
        results: dict[tuple[Any, ...], Any] | None = self.__dict__.get("_shared_results")
        if results is None:
            results = self.__dict__["_shared_results"] = {}
        return results


class SharedEventExecution(StrawberryGraphQLCoreExecutionContext):
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
