"""/metrics: Prometheus text format, the request and WebSocket metrics counted here and the
others (`persistence.metrics`); guarded by METRICS_TOKEN, or served to loopback clients only.

Under `serve --workers N` every worker counts into files of its own in PROMETHEUS_MULTIPROC_DIR
(`multiprocess_directory` prepares it before the workers start) and whichever worker answers a
scrape adds every process's files up. With one process and no PROMETHEUS_MULTIPROC_DIR the
values stay in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from persistence import metrics
from resolvers.context import Services

log = logging.getLogger(__name__)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

REQUEST_SECONDS = Histogram(
    "agencyhub_graphql_request_duration_seconds",
    "GraphQL requests over HTTP by operation name and outcome (ok; rejected: the request's "
    "fault, e.g. BAD_REQUEST, UNAUTHENTICATED; error: the server's, e.g. SERVICE_UNAVAILABLE); "
    "its _count is the number of requests.",
    ["operation", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GRAPHQL_ERRORS = Counter(
    "agencyhub_graphql_errors",
    "GraphQL errors sent, by extensions.code (HTTP and WebSocket).",
    ["code"],
)
WEBSOCKETS_OPEN = Gauge(
    "agencyhub_websockets_open", "WebSockets open.", multiprocess_mode="livesum"
)
SUBSCRIPTIONS_OPEN = Gauge(
    "agencyhub_subscriptions_open",
    "Operations running on WebSockets (subscriptions, and the odd query sent that way).",
    multiprocess_mode="livesum",
)

# Codes that are the server's fault (the rest are the request's: bad input, no access, limits).
SERVER_ERROR_CODES = frozenset({"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TRY_AGAIN"})


class OperationNames:
    """Operation names as label values: a client names its operations, so the set is theirs
    to grow. The first `limit` well-formed names a process sees keep their own series;
    anything later, longer or odd is "other", an unnamed operation "anonymous"."""

    _WELL_FORMED = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

    def __init__(self, limit: int = 150) -> None:
        self._known: set[str] = set()
        self._limit = limit

    def label(self, name: str | None) -> str:
        if name is None:
            return "anonymous"
        if name in self._known:
            return name
        if len(self._known) < self._limit and self._WELL_FORMED.fullmatch(name):
            self._known.add(name)
            return name
        return "other"


OPERATIONS = OperationNames()
# label() on every request costs more than the observation itself: children are kept.
_observers: dict[tuple[str, str], Histogram] = {}


def outcome_of(error_codes: list[str], status: int = 200) -> str:
    """ok; rejected: the request's fault (bad input, no access, a limit); error: the server's."""
    if error_codes:
        return "error" if SERVER_ERROR_CODES.intersection(error_codes) else "rejected"
    return "error" if status >= 500 else "rejected" if status >= 400 else "ok"


def observe_request(operation: str | None, error_codes: list[str], seconds: float) -> None:
    key = (OPERATIONS.label(operation), outcome_of(error_codes))
    observer = _observers.get(key)
    if observer is None:
        observer = _observers[key] = REQUEST_SECONDS.labels(*key)
    observer.observe(seconds)


_error_counters: dict[str, Counter] = {}


def count_errors(codes: list[str]) -> None:
    for code in codes:
        counter = _error_counters.get(code)
        if counter is None:
            # Codes are ours (an enum and a few fixed ones), but a label must stay bounded
            # whatever a future extension puts there.
            label = code if len(_error_counters) < 100 and len(code) <= 40 else "OTHER"
            counter = _error_counters[code] = GRAPHQL_ERRORS.labels(label)
        counter.inc()


# ---- one or several processes ---------------------------------------------------------------


def multiprocess_directory(workers: int) -> Path | None:
    """Before `serve` starts its workers: PROMETHEUS_MULTIPROC_DIR emptied (what an earlier run
    left would be added to this one's figures), or, for several workers without one set, a
    fresh temporary directory (removed at exit). None: one process, values in memory."""
    configured = os.environ.get(MULTIPROC_DIR)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        return directory
    if workers <= 1:
        return None
    directory = Path(tempfile.mkdtemp(prefix="agencyhub-metrics-"))
    os.environ[MULTIPROC_DIR] = str(directory)  # the workers inherit it
    return directory


@contextlib.contextmanager
def multiprocess_directory_for(workers: int) -> Iterator[Path | None]:
    """`multiprocess_directory` for the server's life; a directory made for it is removed at
    exit (one the operator named is kept)."""
    named = os.environ.get(MULTIPROC_DIR)
    directory = multiprocess_directory(workers)
    try:
        yield directory
    finally:
        if directory is not None and not named:
            shutil.rmtree(directory, ignore_errors=True)
            os.environ.pop(MULTIPROC_DIR, None)


def is_multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_DIR))


def process_exiting() -> None:
    """A worker stopping: its live gauges (sockets, pool) leave the sums."""
    if is_multiprocess():
        multiprocess.mark_process_dead(os.getpid())


# ---- sampled gauges -------------------------------------------------------------------------


def sample_pools(services: Services) -> None:
    for pool, in_use in services.database.connections_in_use().items():
        metrics.DB_IN_USE.labels(pool).set(in_use)


async def sample_outbox(services: Services) -> None:
    async with services.database.read() as conn:
        waiting, oldest = await metrics.outbox_backlog(conn)
    metrics.record_outbox_backlog(waiting, oldest, services.clock())


class Sampler:
    """Every `interval` seconds: this process's pool use, and the outbox's backlog (two index
    reads). Sampled, not read at each scrape: a scrape costs no database work, and the figures
    are at most `interval` old."""

    def __init__(self, services: Services, interval: float) -> None:
        self._services = services
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._interval > 0:
            self._task = asyncio.create_task(self._run(), name="metrics-sampler")

    async def _run(self) -> None:
        while True:
            sample_pools(self._services)
            try:
                async with asyncio.timeout(self._interval):
                    await sample_outbox(self._services)
            except Exception:  # the database is away: /readyz says so; keep the last sample
                log.debug("could not sample the outbox", exc_info=True)
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# ---- the endpoint ---------------------------------------------------------------------------


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def metrics_endpoint(token: str | None) -> Callable[[Request], Awaitable[Response]]:
    """GET /metrics. With a token: `Authorization: Bearer <token>` or 401 (compared in constant
    time). Without: loopback clients only, 403 for others."""
    expected = None if token is None else f"Bearer {token}".encode()

    async def serve_metrics(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse(
                    {"error": "send Authorization: Bearer <METRICS_TOKEN>"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        elif not _is_loopback(request.client.host if request.client else None):
            return JSONResponse(
                {"error": "set METRICS_TOKEN to serve metrics to other hosts"}, status_code=403
            )
        services = getattr(request.app.state, "services", None)
        if services is not None:
            sample_pools(services)  # this process's, fresh; the others' at their last sample
        if is_multiprocess():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            body = generate_latest(registry)
        else:
            body = generate_latest(REGISTRY)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return serve_metrics
