"""Logging: one JSON object per line (LOG_FORMAT=json) or readable lines (console), each
carrying the id of the request being served.

stdlib logging with a formatter of our own (orjson), not structlog: uvicorn, SQLAlchemy,
strawberry and our modules all log through stdlib logging already, so one formatter on the root
handler gives every line, ours and theirs, the same shape and the same request id; structlog
would be a second pipeline to bridge them into. The request id lives in a context variable set
by `agencyhub.observability.RequestObserver` and is stamped on each record as it is made
(`stamp_request_ids`): tasks started while serving a request (DataLoader batches) copy the
variable, so their lines carry it too.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(slots=True)
class RequestRecord:
    """What one request's log line and metrics say, filled in while it is served."""

    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    operation: str | None = None  # the GraphQL operation's name, when it has one
    graphql: bool = False  # a GraphQL operation ran (parsed or not)
    error_codes: list[str] = field(default_factory=list)
    context: Any = None  # the RequestContext: the viewer's agency, once known
    status: int = 500


CURRENT_REQUEST: ContextVar[RequestRecord | None] = ContextVar("request", default=None)

_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id_from(header: bytes | None) -> str:
    """The caller's X-Request-ID when it is a plain token (so a proxy's id follows the request
    through our lines); otherwise, or when absent, a new random one."""
    if header is not None:
        value = header.decode("latin-1")
        if _SANE_ID.fullmatch(value):
            return value
    return secrets.token_hex(16)


# Attributes every LogRecord has; anything else was passed in `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's copy of its message with terminal colours
}


def stamp_request_ids() -> None:
    """Every log record made while a request is served carries its id from then on (taken
    when the record is made, so a handler that formats it later, on another thread or after
    the request, still has it). Idempotent."""
    make = logging.getLogRecordFactory()
    if getattr(make, "stamps_request_ids", False):
        return

    def stamped(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        request = CURRENT_REQUEST.get()
        if request is not None:
            record.request_id = request.request_id
        return record

    stamped.stamps_request_ids = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(stamped)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}  # in their order


_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC to the millisecond; the part up to the second is kept, as lines come
    many a second (datetime's isoformat was a quarter of a line's formatting)."""
    global _second
    whole = int(created)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((created - whole) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "message", "request_id", ...extra fields, "exception"}."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """`12:00:01 INFO agencyhub.request POST /graphql 200 operation=… [request id]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        request_id = fields.pop("request_id", None)
        extra = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        head, newline, rest = text.partition("\n")  # a traceback goes after the fields
        head = f"{head} {extra}" if extra else head
        if request_id:
            head = f"{head} [{request_id[:12]}]"
        return head + newline + rest


def chosen_format(log_format: str) -> str:
    """json or console; `auto`: console on a terminal (`make run`), JSON otherwise (a service
    manager, a container, a file), where lines are read by machines."""
    if log_format != "auto":
        return log_format
    return "console" if sys.stderr.isatty() else "json"


def logging_config(log_format: str, level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for the command line and every server process (uvicorn
    applies it in each worker): one stderr handler on the root logger; uvicorn's loggers
    propagate to it, and its access log is off (`RequestObserver` logs each request)."""
    formatter = JsonFormatter if chosen_format(log_format) == "json" else ConsoleFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
            "alembic": {"level": "WARNING"},
        },
    }
