"""Limits in front of the app: oversized bodies get a clear 413, not a crash; clients past
RATE_LIMIT_PER_MINUTE a 429 (RATE_LIMITED)."""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resolvers.security import bearer_token

if TYPE_CHECKING:
    from resolvers.context import Services

log = logging.getLogger("agencyhub.limits")


class BodyTooLarge(Exception):
    pass


def too_large_body(limit: int) -> bytes:
    return orjson.dumps(
        {
            "errors": [
                {
                    "message": f"Request body too large: the limit is {limit} bytes.",
                    "extensions": {"code": "REQUEST_TOO_LARGE"},
                }
            ]
        }
    )


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(send)
                return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = too_large_body(self.max_bytes)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# ---- requests per minute, per session token or API key ----------------------------------------


class RequestLimit:
    """At most `per_minute` GraphQL requests a minute (fixed windows) per session token or API
    key, and per client address for requests without a token (0: no limit).

    One HTTP request counts once, whatever it holds (a `recordCalls` batch is one request), and
    so does each operation a WebSocket starts. The counter's key is an HMAC of the token under
    SECRET_KEY, never the token. Counters live where the login throttle's do
    (`services.rate_limiter`): Redis, shared by every process, with REDIS_URL; in process in
    the embedded default. If Redis cannot be reached, requests pass (the limit protects the
    service; it must not take it down)."""

    WINDOW_SECONDS = 60

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.services: Services | None = None  # set by the app's lifespan
        self._warned = -math.inf

    async def check(self, token: str | None, client_host: str | None) -> int | None:
        """Count one request; None when it is within the limit, else the seconds to wait."""
        services = self.services
        if self.per_minute <= 0 or services is None:
            return None
        subject = f"token:{token}" if token else f"client:{client_host or 'unknown'}"
        key = "requests:" + services.tokens.digest(subject)[:16].hex()
        now = services.clock().timestamp()
        try:
            retry_after = await services.rate_limiter.count(
                key, self.per_minute, self.WINDOW_SECONDS, now
            )
        except Exception as error:  # Redis down: serve rather than refuse
            if time.monotonic() - self._warned > 10:  # once in a while, not per request
                self._warned = time.monotonic()
                log.warning("rate limit not checked: %s", error.__class__.__name__)
            return None
        return None if retry_after is None else max(1, math.ceil(retry_after))

    def error(self, retry_after: int) -> dict[str, Any]:
        return {
            "message": f"Too many requests: at most {self.per_minute} a minute; "
            f"try again in {retry_after} seconds.",
            "extensions": {"code": "RATE_LIMITED", "retryAfterSeconds": retry_after},
        }


class RequestRateLimit:
    """`RequestLimit` in front of GraphQL over HTTP: past the limit, a 429 with `Retry-After`
    and a GraphQL error RATE_LIMITED (before the body is even read)."""

    def __init__(self, app: ASGIApp, limit: RequestLimit, path: str = "/graphql") -> None:
        self.app = app
        self.limit = limit
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or self.limit.per_minute <= 0
            or scope["path"] != self.path
            or scope["method"] not in ("GET", "POST")
        ):
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        client = scope.get("client")
        retry_after = await self.limit.check(
            bearer_token(authorization), client[0] if client else None
        )
        if retry_after is None:
            await self.app(scope, receive, send)
            return
        body = orjson.dumps({"errors": [self.limit.error(retry_after)]})
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(retry_after).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
