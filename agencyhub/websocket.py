"""WebSocket details the graphql-transport-ws protocol and browsers need.

- Every message goes out as a JSON *text* frame: the protocol says so, and the `graphql-ws`
  client (browsers, Apollo's `GraphQLWsLink`) and Python's `gql` refuse binary frames.
- Idle sockets get a protocol `ping` every `interval` seconds from one task per process (not one
  per socket), spread over the interval rather than all at once, so proxies that cut silent
  connections leave monitoring screens alone; a socket whose client has said nothing for an
  interval after a ping is closed (1011), as a dead peer.
  That replaces uvicorn's own WebSocket pings (`uvicorn_options`): one ping per idle socket, not
  two, is a third of the servers' CPU at 10,000 idle screens.
- permessage-deflate, which browsers always offer, is accepted with small windows and without
  context takeover, and the compressor is let go after each message: zlib's state at uvicorn's
  settings is most of an idle socket's memory, and an idle socket now holds none.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
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
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import CONT, Frame
from websockets.server import ServerProtocol

from agencyhub.limits import RequestLimit
from agencyhub.metrics import SUBSCRIPTIONS_OPEN, WEBSOCKETS_OPEN

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
    """Pings every acknowledged socket that sent nothing for `interval` seconds, and closes
    those that have not answered within another `interval`.

    The sockets are walked every `interval / SWEEPS` seconds, and one walk pings at most
    `SPREAD` times its share of them (the sockets over the sweeps of an interval), the quietest
    first: sockets that went quiet together (opened in the same second, after a restart, or
    pinged by an earlier walk) are pinged over several walks instead of in one burst, which
    would stall the process's deliveries, and its clients', while thousands of pings and
    pongs go through."""

    SWEEPS = 15
    SPREAD = 1.5

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
            await asyncio.sleep(self.interval / self.SWEEPS)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> int:
        """Cuts the sockets that left a ping unanswered for an interval and pings the quietest
        of those due, at most a walk's share; returns how many were pinged."""
        quiet_since = now - self.interval
        due = []
        for handler in list(self._sockets):
            if handler.unanswered_since is not None and handler.unanswered_since <= quiet_since:
                handler.cut()
            elif handler.last_sent <= quiet_since:
                due.append(handler)
        share = math.ceil(self.SPREAD * len(self._sockets) / self.SWEEPS)
        if len(due) > share:
            due = heapq.nsmallest(share, due, key=lambda handler: handler.last_sent)
        for handler in due:
            handler.ping()
        return len(due)


class KeptAliveHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    """strawberry's graphql-transport-ws handler, registered for keep-alive pings once acked."""

    keep_alive: KeepAlive  # set on the class by the app
    request_limit: RequestLimit | None = None  # likewise: each operation counts as a request

    last_sent = 0.0
    unanswered_since: float | None = None  # the first ping the client has not answered
    _pinging: asyncio.Task[None] | None = None

    async def handle(self) -> None:
        WEBSOCKETS_OPEN.inc()
        try:
            await super().handle()
        finally:
            WEBSOCKETS_OPEN.dec()

    async def run_operation(self, operation: Any) -> None:
        SUBSCRIPTIONS_OPEN.inc()
        try:
            await super().run_operation(operation)
        finally:
            SUBSCRIPTIONS_OPEN.dec()

    async def send_message(self, message: Any) -> None:
        self.last_sent = time.monotonic()
        await super().send_message(message)
        if message["type"] == "connection_ack":
            self.keep_alive.watch(self)

    async def handle_message(self, message: Any) -> None:
        self.unanswered_since = None  # a pong, or anything else: the client is there
        await super().handle_message(message)

    async def handle_subscribe(self, message: Any) -> None:
        limit = self.request_limit
        if limit is not None and self.connection_acknowledged:
            context = self.context
            retry_after = await limit.check(context.token, context.client_host)
            if retry_after is not None:
                error = limit.error(retry_after)
                await self.send_message({"id": message["id"], "type": "error", "payload": [error]})
                return
        await super().handle_subscribe(message)

    def ping(self) -> None:
        # Its own task, so one socket whose client stopped reading never holds up the rest.
        if self._pinging is None or self._pinging.done():
            if self.unanswered_since is None:
                self.unanswered_since = time.monotonic()
            self._pinging = asyncio.create_task(self._send_ping())

    def cut(self) -> None:
        self.keep_alive.forget(self)
        if self._pinging is not None:
            self._pinging.cancel()  # a ping still waiting to go out: a dead peer reads none
        self._pinging = asyncio.create_task(self._close_dead())

    async def _close_dead(self) -> None:
        with contextlib.suppress(Exception):
            await self.websocket.close(code=1011, reason="keep-alive ping timeout")

    async def _send_ping(self) -> None:
        with contextlib.suppress(Exception):  # a socket going away is not an error here
            await self.send_message(PING)  # type: ignore[arg-type]

    async def shutdown(self) -> None:
        self.keep_alive.forget(self)
        if self._pinging is not None:
            self._pinging.cancel()
        await super().shutdown()


class _DeflatePerMessage(PerMessageDeflate):
    """Without context takeover each message gets a fresh compressor anyway (websockets makes
    one per message); this one drops it once the message is out instead of keeping it until
    the next (websockets already drops the decompressor the same way), and sends messages of
    one frame under `SMALL` bytes as they are (RFC 7692 lets each message choose): a ping or a
    `complete` gains nothing from deflate and would cost a compressor."""

    SMALL = 128

    def encode(self, frame: Frame) -> Frame:
        if frame.opcode is not CONT and frame.fin and len(frame.data) < self.SMALL:
            return frame
        encoded = super().encode(frame)
        if frame.fin and self.local_no_context_takeover:
            with contextlib.suppress(AttributeError):
                del self.encoder
        return encoded


class _DeflateFactory(ServerPerMessageDeflateFactory):
    def process_request_params(self, *args: Any, **kwargs: Any) -> Any:
        response, extension = super().process_request_params(*args, **kwargs)
        return response, _DeflatePerMessage(
            remote_no_context_takeover=extension.remote_no_context_takeover,
            local_no_context_takeover=extension.local_no_context_takeover,
            remote_max_window_bits=extension.remote_max_window_bits,
            local_max_window_bits=extension.local_max_window_bits,
            compress_settings=extension.compress_settings,
        )


class SmallDeflate(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol with permessage-deflate at 512-byte windows, zlib's smallest
    memory level and no context takeover either way, so an idle socket holds no zlib state
    (uvicorn's settings keep ~40 KB of it per socket); and without the handshake's request and
    response once the socket is accepted (the ASGI scope keeps what the app needs)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.config.ws_per_message_deflate:
            self.conn = ServerProtocol(
                extensions=[
                    _DeflateFactory(
                        server_no_context_takeover=True,
                        client_no_context_takeover=True,
                        server_max_window_bits=9,
                        client_max_window_bits=9,
                        compress_settings={"memLevel": 1},
                    )
                ],
                max_size=self.config.ws_max_size,
                logger=logging.getLogger("uvicorn.error"),
            )

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # websockets' parser keeps the request for the socket's life (a local of its
            # generator): empty its headers (~3 KB), already copied into the ASGI scope.
            self.request.headers.clear()
            self.request = self.response = None  # type: ignore[assignment]
