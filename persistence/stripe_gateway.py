"""Stripe, through the official `stripe` package: the only module that talks to it.

Every POST carries an `Idempotency-Key` the caller derives from its own row's id, so a retry,
a crash and a recovery reach Stripe as the same request. No call here is made inside a
database transaction: the use cases call the gateway between their transactions.

Stripe's answers leave as small domain values (`IntentState`, `Declined`, `CardDetails`,
`TransferState`); its exceptions as `CardRefused` (the card said no), `TransferRefused`,
`RequestRefused` (Stripe refused the request itself) or `StripeUnavailable` (anything else:
the network, Stripe), never as the package's own types. A charge Stripe refuses as a request
is a decline: asking again would only be refused again, and the purchase would stay PENDING.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import stripe

from domain.payments import CardDetails, Declined, IntentState
from domain.payouts import TransferState

log = logging.getLogger(__name__)

WEBHOOK_TOLERANCE_SECONDS = 300


class StripeUnavailable(Exception):
    """Stripe could not be asked or did not answer usefully; nothing is known of the result."""


class RequestRefused(StripeUnavailable):
    """Stripe refused the request itself (400/404: a card detached at Stripe, an amount it will
    not charge…): asking again will not change the answer."""


class CardRefused(Exception):
    """The card was refused (at attach or at charge)."""

    def __init__(self, reason: str, intent_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.intent_id = intent_id


class TransferRefused(Exception):
    """Stripe refused the Transfer itself (an unknown or unusable destination, …)."""


class BadSignature(Exception):
    """A webhook whose Stripe-Signature does not verify (or that is not an event at all)."""


@dataclass(frozen=True)
class StripeEvent:
    id: str
    type: str
    data: dict[str, Any]  # data.object, as plain JSON


def _purchase_id(metadata: Any) -> UUID | None:
    try:
        return UUID(str((metadata or {}).get("purchase_id")))
    except ValueError:
        return None


def _attempt(metadata: Any) -> int | None:
    try:
        return int((metadata or {}).get("attempt"))
    except (TypeError, ValueError):
        return None


def intent_state(intent: dict[str, Any]) -> IntentState:
    error = intent.get("last_payment_error") or {}
    return IntentState(
        id=intent["id"],
        status=intent["status"],
        amount_cents=int(intent["amount"]),
        currency=str(intent.get("currency", "")).lower(),
        purchase_id=_purchase_id(intent.get("metadata")),
        failure_reason=error.get("message") or error.get("code"),
        attempt=_attempt(intent.get("metadata")),
    )


def _transfer_state(transfer: dict[str, Any]) -> TransferState:
    payout = (transfer.get("metadata") or {}).get("payout_id")
    try:
        payout_id = UUID(payout) if payout else None
    except ValueError:
        payout_id = None
    return TransferState(
        transfer["id"], int(transfer["amount"]), str(transfer["destination"]), payout_id
    )


class StripeGateway:
    def __init__(
        self,
        secret_key: str,
        webhook_secret: str | None,
        api_base: str | None = None,
        max_network_retries: int = 2,
    ) -> None:
        self._webhook_secret = webhook_secret
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=stripe.HTTPXClient(),  # asynchronous calls on the server's event loop
        )

    async def _call(self, request: Any) -> dict[str, Any]:
        try:
            answer = await request
        except stripe.CardError as error:
            intent = getattr(error.error, "payment_intent", None) if error.error else None
            raise CardRefused(
                error.user_message or str(error.code or "card_declined"),
                getattr(intent, "id", None),
            ) from error
        except stripe.InvalidRequestError as error:
            log.warning("Stripe refused a request: %s", error)
            raise RequestRefused(error.user_message or str(error)) from error
        except stripe.StripeError as error:
            log.warning("Stripe failed a request: %s", error)
            raise StripeUnavailable(error.user_message or str(error)) from error
        result: dict[str, Any] = answer.to_dict()  # stripe 16's objects are not dicts
        return result

    async def create_customer(self, key: str, name: str, metadata: dict[str, str]) -> str:
        customer = await self._call(
            self._client.v1.customers.create_async(
                {"name": name, "metadata": metadata}, {"idempotency_key": key}
            )
        )
        return str(customer["id"])

    async def attach_card(self, key: str, payment_method_id: str, customer_id: str) -> CardDetails:
        method = await self._call(
            self._client.v1.payment_methods.attach_async(
                payment_method_id, {"customer": customer_id}, {"idempotency_key": key}
            )
        )
        card = method.get("card")
        if method.get("type") != "card" or not card:
            raise StripeUnavailable("That payment method is not a card.")
        return CardDetails(
            str(card.get("brand", "card")),
            str(card.get("last4", "")),
            int(card["exp_month"]),
            int(card["exp_year"]),
        )

    async def detach_card(self, key: str, payment_method_id: str) -> None:
        """Detaches the card; one Stripe no longer has attached (or at all) is detached."""
        try:
            await self._client.v1.payment_methods.detach_async(
                payment_method_id, options={"idempotency_key": key}
            )
        except stripe.InvalidRequestError as error:
            log.info("detaching %s: %s; removed here all the same", payment_method_id, error)
        except stripe.StripeError as error:
            raise StripeUnavailable(error.user_message or str(error)) from error

    async def charge(
        self,
        key: str,
        customer_id: str,
        payment_method_id: str,
        amount_cents: int,
        metadata: dict[str, str],
    ) -> IntentState | Declined:
        """An off-session charge, confirmed at once: Stripe's answer, or the decline."""
        try:
            intent = await self._call(
                self._client.v1.payment_intents.create_async(
                    {
                        "amount": amount_cents,
                        "currency": "usd",
                        "customer": customer_id,
                        "payment_method": payment_method_id,
                        "payment_method_types": ["card"],
                        "confirm": True,
                        "off_session": True,
                        "metadata": metadata,
                    },
                    {"idempotency_key": key},
                )
            )
        except CardRefused as refused:
            return Declined(refused.reason, refused.intent_id)
        except RequestRefused as refused:  # never chargeable as it is: a decline, not a wait
            return Declined(str(refused))
        return intent_state(intent)

    async def intents_for(
        self, customer_id: str, metadata: dict[str, str], since: datetime, first_only: bool = False
    ) -> list[IntentState]:
        """The customer's PaymentIntents made since `since` whose metadata holds `metadata`,
        newest first, page by page (only the newest with `first_only`)."""
        params: dict[str, Any] = {
            "customer": customer_id,
            "created": {"gte": int(since.timestamp())},
            "limit": 100,
        }
        found: list[IntentState] = []
        while True:
            page = await self._call(self._client.v1.payment_intents.list_async(params))
            for intent in page["data"]:
                held = intent.get("metadata") or {}
                if all(held.get(key) == value for key, value in metadata.items()):
                    found.append(intent_state(intent))
                    if first_only:
                        return found
            if not page.get("has_more") or not page["data"]:
                return found
            params["starting_after"] = page["data"][-1]["id"]

    async def find_intent(
        self, customer_id: str, metadata: dict[str, str], since: datetime
    ) -> IntentState | None:
        """The newest such intent; None when there is none. What the reconciliation job asks
        before charging again a purchase whose intent it never learnt: an Idempotency-Key is
        forgotten by Stripe after 24 hours, the intent is not."""
        found = await self.intents_for(customer_id, metadata, since, first_only=True)
        return found[0] if found else None

    async def intent(self, intent_id: str) -> IntentState:
        return intent_state(
            await self._call(self._client.v1.payment_intents.retrieve_async(intent_id))
        )

    async def transfer(
        self, key: str, amount_cents: int, destination: str, payout_id: UUID
    ) -> TransferState:
        """One Transfer to a Connect account; refused (TransferRefused) or unknown
        (StripeUnavailable: ask again under the same key)."""
        request = self._client.v1.transfers.create_async(
            {
                "amount": amount_cents,
                "currency": "usd",
                "destination": destination,
                "metadata": {"payout_id": str(payout_id)},
            },
            {"idempotency_key": key},
        )
        try:
            answer = await request
        except stripe.InvalidRequestError as error:
            raise TransferRefused(error.user_message or str(error)) from error
        except stripe.StripeError as error:
            raise StripeUnavailable(error.user_message or str(error)) from error
        return _transfer_state(answer.to_dict())

    async def transfer_by_id(self, transfer_id: str) -> TransferState:
        return _transfer_state(
            await self._call(self._client.v1.transfers.retrieve_async(transfer_id))
        )

    def verify(self, payload: bytes, signature: str | None) -> StripeEvent:
        """The event in a webhook delivery, if its signature verifies (5 minutes' tolerance)."""
        if not self._webhook_secret or not signature:
            raise BadSignature("no webhook secret configured, or no signature sent")
        try:
            event = stripe.Webhook.construct_event(
                payload, signature, self._webhook_secret, tolerance=WEBHOOK_TOLERANCE_SECONDS
            )
        except (stripe.SignatureVerificationError, ValueError) as error:
            raise BadSignature(str(error)) from error
        data = event.to_dict().get("data") or {}
        return StripeEvent(str(event.id), str(event.type), dict(data.get("object") or {}))
