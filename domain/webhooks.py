"""Outgoing webhooks: the events an agency can subscribe an endpoint to, which URLs may be
targets, the signature receivers check, and when a failed delivery is tried again.

An event is queued by the unit of work of the change that caused it (`uow.notify`), as one
delivery row per subscribed endpoint, in the same transaction; a worker sends them later
(resolvers/webhooks.py). Nothing here does I/O: resolving a host name is the caller's job,
this module only judges the addresses it got.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from domain.errors import DomainError, ErrorCode

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "Agencyhub-Signature"
MAX_URL_LENGTH = 2000
DEFAULT_TOLERANCE_SECONDS = 300
MAX_ENDPOINTS_PER_AGENCY = 20


class WebhookEventKind(StrEnum):
    LOW_BALANCE = "LOW_BALANCE"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    SUBACCOUNT_SUSPENDED = "SUBACCOUNT_SUSPENDED"
    SUBACCOUNT_RESTORED = "SUBACCOUNT_RESTORED"
    SPENDING_CAP_REACHED = "SPENDING_CAP_REACHED"
    PAYOUT_PAID = "PAYOUT_PAID"


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class WebhookEvent:
    """Something an agency's endpoints may hear about. `data` is JSON-ready (strings,
    numbers, booleans, lists, dicts); ids in it are the API's global IDs."""

    kind: WebhookEventKind
    agency_id: UUID
    sub_account_id: UUID | None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookEndpoint:
    id: UUID
    agency_id: UUID
    url: str
    events: frozenset[WebhookEventKind]
    enabled: bool
    created_at: datetime

    def listens_to(self, kind: WebhookEventKind) -> bool:
        return self.enabled and kind in self.events

    @property
    def test_kind(self) -> WebhookEventKind:
        """The kind a ping is sent as: the first of its kinds, in the API's order."""
        return next(kind for kind in WebhookEventKind if kind in self.events)


@dataclass(frozen=True)
class WebhookDelivery:
    """One event on its way to one endpoint. A ping is a delivery with `test` set: sent once,
    at once, outside the endpoint's order."""

    id: int
    endpoint_id: UUID
    agency_id: UUID
    event_id: UUID
    kind: WebhookEventKind
    sub_account_id: UUID | None
    data: Mapping[str, Any]
    test: bool
    status: DeliveryStatus
    attempts: int
    last_response_status: int | None
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None


def event_id_text(event_id: UUID) -> str:
    """How an event's id reads in the body and in the API: `evt_` and 32 hex digits."""
    return f"evt_{event_id.hex}"


# ---- the endpoint's URL and the addresses it may reach -------------------------------------

# Cloud metadata services, refused by name even where a range rule would already refuse them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class WebhookTarget:
    """A URL judged well formed: where to connect and what to ask for."""

    url: str
    scheme: str
    host: str  # without brackets for an IPv6 literal
    port: int
    path: str  # path and query, as sent in the request line

    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return shown if self.port == default else f"{shown}:{self.port}"

    def url_for(self, address: IPAddress) -> str:
        """The same request addressed to one resolved address (the host is pinned)."""
        shown = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{shown}:{self.port}{self.path}"


def _refuse(message: str) -> DomainError:
    return DomainError(ErrorCode.URL_NOT_ALLOWED, message, ("url",))


def parse_url(url: str) -> WebhookTarget:
    """A webhook URL: http or https, a host, no credentials or fragment, at most 2,000
    characters. Whether its addresses may be reached is `check_addresses`' question."""
    url = url.strip()
    if not url or len(url) > MAX_URL_LENGTH:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"The URL must have 1 to {MAX_URL_LENGTH} characters.",
            ("url",),
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DomainError(ErrorCode.INVALID_INPUT, "That is not a valid URL.", ("url",)) from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise _refuse("The URL must start with https:// (or http:// to a loopback address).")
    if not parts.hostname:
        raise DomainError(ErrorCode.INVALID_INPUT, "The URL has no host.", ("url",))
    if parts.username is not None or parts.password is not None:
        raise _refuse("The URL must not hold a user name or password.")
    if parts.fragment:
        raise DomainError(ErrorCode.INVALID_INPUT, "The URL must not have a #fragment.", ("url",))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname.rstrip(".").lower()
    return WebhookTarget(url, scheme, host, port or (443 if scheme == "https" else 80), path)


def literal_address(host: str) -> IPAddress | None:
    """The address when the host is an IP literal, else None (a name to resolve)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def address_allowed(address: IPAddress, allow_loopback: bool = True) -> bool:
    """Loopback (unless the operator turned it off), or a global unicast address that is no
    metadata service. Private, shared (CGNAT), link-local, unique-local, multicast,
    unspecified, reserved and documentation ranges are refused; an IPv4-mapped IPv6 address
    is judged as its IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return allow_loopback
    if address in METADATA_ADDRESSES:
        return False
    if (
        address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    ):
        return False
    return address.is_global


def _loopback(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_addresses(
    target: WebhookTarget, addresses: Sequence[IPAddress], allow_loopback: bool = True
) -> list[IPAddress]:
    """Every address the host resolved to must be allowed (one bad address is enough to
    refuse: a resolver may answer with any of them); plain http only to loopback."""
    if not addresses:
        raise _refuse(f"The host {target.host} has no address.")
    for address in addresses:
        if not address_allowed(address, allow_loopback):
            raise _refuse(
                f"The host {target.host} resolves to {address}, a private, link-local or "
                "metadata address: webhooks only go to public addresses (or loopback)."
            )
    if target.scheme == "http" and not all(_loopback(a) for a in addresses):
        raise _refuse("Plain http:// is only for loopback addresses; use https://.")
    return list(addresses)


def check_room(endpoints: int) -> None:
    """An agency has at most MAX_ENDPOINTS_PER_AGENCY endpoints (each event fans out to all)."""
    if endpoints >= MAX_ENDPOINTS_PER_AGENCY:
        raise DomainError(
            ErrorCode.WEBHOOK_ENDPOINT_LIMIT,
            f"An agency has at most {MAX_ENDPOINTS_PER_AGENCY} webhook endpoints; delete one "
            "first.",
        )


def check_events(events: Iterable[WebhookEventKind]) -> frozenset[WebhookEventKind]:
    chosen = frozenset(events)
    if not chosen:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "Choose at least one kind of event.", ("events",)
        )
    return chosen


# ---- signatures ----------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header's value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


class SignatureError(Exception):
    """Why a received webhook must not be trusted: `reason` is `malformed`, `mismatch` or
    `stale`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """The receiver's check (copy it into your own code if you do not use Python): the header
    parses, one of its v1 signatures equals ours over the exact bytes received (compared in
    constant time), and its timestamp is within `tolerance_seconds` of now. Returns the
    timestamp; raises SignatureError otherwise."""
    timestamp: int | None = None
    candidates: list[str] = []
    for item in (header or "").split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("malformed", "no t=… and v1=… in the signature header")
    expected = sign(secret, timestamp, body).partition(",v1=")[2]
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("mismatch", "the signature does not match this body and secret")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureError("stale", "the signature's timestamp is too far from now")
    return timestamp


# ---- retries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrySchedule:
    """After the n-th failed attempt the next comes `delays[n-1]` later (the last delay
    repeats), as long as it falls within `give_up_after` of the event; else FAILED."""

    delays: tuple[timedelta, ...] = tuple(timedelta(seconds=s) for s in (1, 5, 30, 120, 600, 3600))
    give_up_after: timedelta = timedelta(hours=24)

    def next_attempt(self, created_at: datetime, attempts: int, now: datetime) -> datetime | None:
        """When to try again after `attempts` failed attempts; None: give up."""
        delay = self.delays[min(attempts, len(self.delays)) - 1]
        when = now + delay
        return when if when <= created_at + self.give_up_after else None


def succeeded(status: int | None) -> bool:
    return status is not None and 200 <= status < 300
