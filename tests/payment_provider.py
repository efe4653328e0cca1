"""The Stripe the tests pay with: a localstripe server of their own (tests/localstripe_server.py),
one per test session (per xdist worker), and what the tests ask of it.

What a browser's Stripe.js does (turning a card number into a PaymentMethod) the tests do with
the same `stripe` package the app uses; nothing of the package is mocked.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import stripe

SECRET_KEY = "sk_test_agencyhub"
WEBHOOK_SECRET = "whsec_agencyhub_tests"
ROOT = Path(__file__).resolve().parent.parent

# localstripe's test cards (Stripe's own numbers)
CARD_OK = "4242424242424242"
CARD_DECLINED_AT_CHARGE = "4000000000000341"  # attaches, then every charge is declined
CARD_DECLINED_AT_ATTACH = "4000000000000002"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalStripe:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client = stripe.StripeClient(
            SECRET_KEY,
            base_addresses={"api": url},
            max_network_retries=0,
            http_client=stripe.HTTPXClient(),
        )

    async def payment_method(self, number: str = CARD_OK, exp_year: int = 2031) -> str:
        """What Stripe.js hands the browser: a PaymentMethod id for a card number."""
        method = await self.client.v1.payment_methods.create_async(
            {
                "type": "card",
                "card": {"number": number, "exp_month": 12, "exp_year": exp_year, "cvc": "123"},
            }
        )
        return str(method.id)

    async def get(self, path: str) -> Any:
        async with httpx.AsyncClient(base_url=self.url) as http:
            response = await http.get(path, headers={"authorization": f"Bearer {SECRET_KEY}"})
        response.raise_for_status()
        return response.json()

    async def deliveries(self) -> list[dict[str, str]]:
        """Every webhook delivery localstripe made so far: {"body", "signature"}."""
        found: list[dict[str, str]] = await self.get("/_config/inbox")
        return found

    async def delivery(
        self, event_type: str, object_id: str, timeout: float = 10
    ) -> dict[str, str]:
        """The signed delivery of `event_type` about `object_id` (localstripe sends after ~1 s)."""
        deadline = time.monotonic() + timeout
        while True:
            for delivery in await self.deliveries():
                if f'"type": "{event_type}"' in delivery["body"] and object_id in delivery["body"]:
                    return delivery
            if time.monotonic() > deadline:
                raise AssertionError(f"no {event_type} webhook for {object_id}")
            await asyncio.sleep(0.1)

    async def forget_idempotency_keys(self) -> None:
        """What 24 hours do at Stripe: every Idempotency-Key is forgotten."""
        async with httpx.AsyncClient() as client:
            (await client.post(f"{self.url}/_config/forget_idempotency_keys")).raise_for_status()

    async def intents_of(self, customer_id: str) -> list[dict[str, Any]]:
        listed = await self.get("/v1/payment_intents?limit=100")
        return [i for i in listed["data"] if i.get("customer") == customer_id]

    async def transfers(self) -> list[dict[str, Any]]:
        listed: dict[str, Any] = await self.get("/v1/transfers?limit=100")
        return list(listed["data"])


@contextmanager
def local_stripe(work_dir: Path) -> Iterator[LocalStripe]:
    """A localstripe process on a free port, its webhooks going to its own inbox."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (work_dir / "localstripe.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.localstripe_server", str(port)],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(work_dir)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.post(
                    f"{url}/_config/webhooks/tests",
                    data={"url": f"{url}/_config/inbox", "secret": WEBHOOK_SECRET},
                ).raise_for_status()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"localstripe did not start: {(work_dir / 'localstripe.log').read_text()}"
                    ) from None
                time.sleep(0.05)
        yield LocalStripe(url)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
