"""The HTTP side of outgoing webhooks: resolving an endpoint's host and posting one signed body
to one address it resolved to (the address the check judged, so a DNS answer that changes
between the check and the connection cannot redirect the request: TLS still verifies the
certificate against the host name, sent as SNI and Host).

Nothing here decides what may be reached: domain/webhooks.py judges the addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx

from domain.webhooks import IPAddress, WebhookTarget, literal_address

DELIVERY_TIMEOUT_SECONDS = 5.0
RESOLVE_TIMEOUT_SECONDS = 3.0

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


class Unresolvable(Exception):
    """The host has no address we could learn."""


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal is its own), each once."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as error:
        raise Unresolvable(f"{host} could not be resolved") from error
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in found:
            found.append(address)
    return found


@dataclass(frozen=True)
class Answer:
    """What one attempt got: the HTTP status, or why there was none."""

    status: int | None
    error: str | None = None


def new_client(verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """No redirects followed, no proxies or settings from the environment (a proxy would
    undo the address pinning), 5 s for each phase. `verify`: the system's CAs unless a test
    brings its own."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(DELIVERY_TIMEOUT_SECONDS),
        follow_redirects=False,
        trust_env=False,
        verify=verify,
    )


async def post(
    client: httpx.AsyncClient,
    target: WebhookTarget,
    address: IPAddress,
    headers: Mapping[str, str],
    body: bytes,
) -> Answer:
    """POST `body` to `target` at `address`; 5 s for the whole exchange. The answer's body is
    not read."""
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        async with asyncio.timeout(DELIVERY_TIMEOUT_SECONDS):
            async with client.stream(
                "POST",
                target.url_for(address),
                content=body,
                headers={**headers, "Host": target.host_header()},
                extensions=extensions,
            ) as response:
                return Answer(response.status_code)
    except TimeoutError:
        return Answer(None, "timed out after 5 s")
    except httpx.TimeoutException:
        return Answer(None, "timed out after 5 s")
    except httpx.HTTPError as error:
        return Answer(None, f"{type(error).__name__}: {error}"[:200])
