"""localstripe as the payment tests run it: `python -m tests.localstripe_server PORT`.

localstripe (PyPI) is a Stripe-compatible server: Customers, PaymentMethods, PaymentIntents
with off-session confirmation, and signed webhooks. What Stripe does and it does not, the
tests add here, on its aiohttp app, before it starts:

- **Transfers** (Stripe Connect), for payouts: create, retrieve, list. A destination account
  id containing `invalid` is refused as Stripe refuses an unknown one (400).
- **Idempotency-Key**: Stripe answers a repeated POST with the same key with the first answer
  (errors included) and a request still running with 409; localstripe ignores the header.
  Replaying keys here is what lets a test tell "retried with the same key" (one charge) from
  "retried with a new key" (two charges). A key sent with other parameters is a 400, as at
  Stripe.
- **PaymentIntents listed as Stripe lists them**: by `customer` and `created[gte]`, newest
  first; and `/_config/forget_idempotency_keys`, what 24 hours do to keys at Stripe.
- **An inbox** for its webhooks (`/_config/inbox`): the tests register it as the webhook
  endpoint and hand each signed delivery to the app themselves, in the order a test wants.
- **No pickling**: localstripe saves its whole store to one fixed file after every write
  (`/tmp/localstripe.pickle`), which instances started side by side (test workers, other
  checkouts) would all write; the store stays in memory here.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from aiohttp import web
from localstripe import resources, server
from localstripe.errors import UserError


def _no_pickling(self: Any) -> None:
    return None


resources.Store.dump_to_disk = _no_pickling  # type: ignore[method-assign]


class Transfer(resources.StripeObject):  # type: ignore[misc]
    object = "transfer"
    _id_prefix = "tr_"

    def __init__(
        self,
        amount: Any = None,
        currency: Any = None,
        destination: Any = None,
        metadata: Any = None,
        transfer_group: Any = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        amount = resources.try_convert_to_int(amount)
        if not (isinstance(amount, int) and amount > 0 and isinstance(currency, str)):
            raise UserError(400, "Bad request")
        if not (isinstance(destination, str) and destination.startswith("acct_")):
            raise UserError(400, "Bad request")
        if "invalid" in destination:
            raise UserError(
                400,
                f"No such destination: '{destination}'",
                {"code": "resource_missing", "param": "destination"},
            )
        super().__init__()
        self.amount = amount
        self.currency = currency
        self.destination = destination
        self.metadata = metadata or {}
        self.transfer_group = transfer_group
        self.reversed = False


for method, url, handler in (
    ("POST", "/v1/transfers", server.api_create),
    ("GET", "/v1/transfers/{id}", server.api_retrieve),
    ("GET", "/v1/transfers", server.api_list_all),
):
    server.app.router.add_route(method, url, handler(Transfer, url))


_list_intents = resources.PaymentIntent._api_list_all.__func__


def _intents(
    cls: Any,
    url: str,
    customer: Any = None,
    created: Any = None,
    limit: Any = None,
    starting_after: Any = None,
) -> Any:
    """PaymentIntents listed as Stripe lists them: by customer, created since (`created[gte]`),
    newest first (localstripe filters on nothing and lists oldest first)."""
    listed = _list_intents(cls, url, limit=limit, starting_after=starting_after)
    since = resources.try_convert_to_int((created or {}).get("gte", 0))
    if not isinstance(since, int):
        raise UserError(400, "Bad request")
    listed._list = [
        intent
        for intent in reversed(listed._list)
        if (customer is None or intent.customer == customer) and intent.created >= since
    ]
    return listed


resources.PaymentIntent._api_list_all = classmethod(_intents)

_answers: dict[str, asyncio.Future[tuple[bytes, web.Response]]] = {}


@web.middleware
async def idempotency_keys(request: web.Request, handler: Any) -> web.StreamResponse:
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await handler(request)
    body = await request.read()
    first = _answers.get(key)
    if first is not None:
        if not first.done():
            return _error(409, "There is currently another in-progress request with this key.")
        sent, answer = first.result()
        if sent != body:
            return _error(
                400,
                "Keys for idempotent requests can only be used with the same "
                "parameters they were first used with.",
            )
        return web.Response(body=answer.body, status=answer.status, headers=answer.headers)
    waiting: asyncio.Future[tuple[bytes, web.Response]] = asyncio.get_running_loop().create_future()
    _answers[key] = waiting
    try:
        answer = await handler(request)
    except BaseException:
        del _answers[key]  # nothing was answered: the key is free again
        raise
    waiting.set_result((body, answer))
    return answer


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"type": "idempotency_error", "message": message}}
    return web.json_response(body, status=status)


_inbox: list[dict[str, str]] = []


async def receive(request: web.Request) -> web.Response:
    _inbox.append(
        {
            "body": (await request.read()).decode(),
            "signature": request.headers.get("Stripe-Signature", ""),
        }
    )
    return web.Response()


async def forget_keys(request: web.Request) -> web.Response:
    """What 24 hours do at Stripe: every Idempotency-Key is forgotten."""
    _answers.clear()
    return web.Response()


async def inbox(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps(_inbox), content_type="application/json")


server.app.router.add_post("/_config/inbox", receive)
server.app.router.add_get("/_config/inbox", inbox)
server.app.router.add_post("/_config/forget_idempotency_keys", forget_keys)
server.app.middlewares.insert(0, idempotency_keys)  # outermost: sees localstripe's errors too


def main() -> None:
    port = int(sys.argv[1])
    web.run_app(server.app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
