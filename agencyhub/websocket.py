"""WebSocket details the graphql-transport-ws protocol and browsers need.

- Every message goes out as a JSON *text* frame: the protocol says so, and the `graphql-ws`
  client (browsers, Apollo's `GraphQLWsLink`) and Python's `gql` refuse binary frames.
- Idle sockets get a protocol `ping` every `interval` seconds from one task per process (not one
  per socket), so proxies that cut silent connections leave monitoring screens alone.
- permessage-deflate, which browsers always offer, is accepted with small windows: zlib's
  state at uvicorn's settings is most of an idle socket's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.server import ServerProtocol

log = logging.getLogger(__name__)

PING = {"type": "ping"}


class TextFrames(ASGIWebSocketAdapter):
    """Sends each message as one text frame, encoded by orjson."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class KeepAlive:
    """Pings every acknowledged socket that sent nothing for `interval` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._sockets: weakref.WeakSet[KeptAliveHandler] = weakref.WeakSet()
        self._task: asyncio.Task[None] | None = None

    def watch(self, handler: KeptAliveHandler) -> None:
        if self.interval > 0:
            self._sockets.add(handler)

    def forget(self, handler: KeptAliveHandler) -> None:
        self._sockets.discard(handler)

    def start(self) -> None:
        if self.interval > 0:
            self._task = asyncio.create_task(self._run(), name="websocket-keep-alive")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval / 2)
            quiet_since = time.monotonic() - self.interval
            for handler in list(self._sockets):
                if handler.last_sent <= quiet_since:
                    handler.ping()


class KeptAliveHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    """strawberry's graphql-transport-ws handler, registered for keep-alive pings once acked."""

    keep_alive: KeepAlive  # set on the class by the app

    last_sent = 0.0
    _pinging: asyncio.Task[None] | None = None

    async def send_message(self, message: Any) -> None:
        self.last_sent = time.monotonic()
        await super().send_message(message)
        if message["type"] == "connection_ack":
            self.keep_alive.watch(self)

    def ping(self) -> None:
        # Its own task, so one socket whose client stopped reading never holds up the rest.
        if self._pinging is None or self._pinging.done():
            self._pinging = asyncio.create_task(self._send_ping())

    async def _send_ping(self) -> None:
        with contextlib.suppress(Exception):  # a socket going away is not an error here
            await self.send_message(PING)  # type: ignore[arg-type]

    async def shutdown(self) -> None:
        self.keep_alive.forget(self)
        if self._pinging is not None:
            self._pinging.cancel()
        await super().shutdown()


class SmallDeflate(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol with permessage-deflate at 512-byte windows and zlib's
    smallest memory level: about 3 KB of compressor state per socket instead of ~40 KB."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.config.ws_per_message_deflate:
            self.conn = ServerProtocol(
                extensions=[
                    ServerPerMessageDeflateFactory(
                        server_max_window_bits=9,
                        client_max_window_bits=9,
                        compress_settings={"memLevel": 1},
                    )
                ],
                max_size=self.config.ws_max_size,
                logger=logging.getLogger("uvicorn.error"),
            )
