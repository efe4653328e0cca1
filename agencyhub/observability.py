"""Each request seen from outside: its id, its log line and its metrics.

`RequestObserver` (ASGI middleware, outermost) gives every HTTP request and WebSocket an id
(the caller's `X-Request-ID` when sane, else a new one; sent back in the response's
`X-Request-ID`), keeps it in a context variable for every line logged while serving it, and
when an HTTP request ends logs one line (method, path, status, GraphQL operation, the
viewer's agency, duration, outcome, error codes) and observes the request metrics.
`observe_operation` (called by the schema's error policy) tells it the operation's name and
its errors' codes, and counts the codes of every operation, WebSocket ones included.

Nothing secret is logged: no header, body, variable or token, only the agency's id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from graphql import GraphQLError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agencyhub import metrics
from agencyhub.logs import CURRENT_REQUEST, RequestRecord, request_id_from

log = logging.getLogger("agencyhub.request")


def observe_operation(operation_name: str | None, errors: Sequence[GraphQLError]) -> None:
    """An operation's outcome, once the error policy has given each error its code."""
    codes = [str((e.extensions or {}).get("code", "INTERNAL_SERVER_ERROR")) for e in errors]
    if codes:
        metrics.count_errors(codes)
    request = CURRENT_REQUEST.get()
    if request is not None:
        request.graphql = True
        request.operation = operation_name
        request.error_codes.extend(codes)


def agency_of(context: Any) -> str | None:
    """The viewer's agency (signed in, or through an API key), if the request looked it up."""
    if context is None:
        return None
    viewer = context.loaded_viewer()
    agency = viewer.agency_id if viewer is not None else context.api_key_agency_id
    return None if agency is None else str(agency)


class RequestObserver:
    def __init__(self, app: ASGIApp, log_requests: bool = True) -> None:
        self.app = app
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value
                break
        request = RequestRecord(request_id_from(given), scope.get("method", "WS"), scope["path"])
        id_header = (b"x-request-id", request.request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                request.status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        token = CURRENT_REQUEST.set(request)
        try:
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            if scope["type"] == "http":
                self._finished(request)
            CURRENT_REQUEST.reset(token)

    def _finished(self, request: RequestRecord) -> None:
        seconds = time.perf_counter() - request.started
        if request.graphql:
            metrics.observe_request(request.operation, request.error_codes, seconds)
        if not self.log_requests:
            return
        if not log.isEnabledFor(logging.INFO):
            return
        # makeRecord and handle, not log.info: the same record without the walk up the stack
        # for the caller's file and line (a third of the line's cost, and always this line).
        log.handle(
            log.makeRecord(
                log.name,
                logging.INFO,
                __file__,
                0,
                "%s %s %d",
                (request.method, request.path, request.status),
                None,
                extra={
                    "operation": request.operation,
                    "agency_id": agency_of(request.context),
                    "duration_ms": round(seconds * 1000, 2),
                    "outcome": metrics.outcome_of(request.error_codes, request.status),
                    "error_codes": request.error_codes or None,
                },
            )
        )
