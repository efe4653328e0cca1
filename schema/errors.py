"""How failures reach clients.

- Business-rule failures (`DomainError`) become `userErrors` in the mutation payload.
- Not signed in / not allowed become GraphQL errors with extensions.code UNAUTHENTICATED /
  FORBIDDEN; a transaction that lost to concurrent ones on every attempt, TRY_AGAIN; the
  database unreachable or gone mid-request (a restart), SERVICE_UNAVAILABLE.
- Malformed requests keep graphql-core's message (code BAD_REQUEST); anything else is logged
  and masked, so no stack trace or SQL ever reaches a client.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from domain.errors import (
    AccessDenied,
    DomainError,
    NotAuthenticated,
    ServiceUnavailable,
    SubscriberTooSlow,
    TryAgain,
)
from schema.cost import QueryTooCostly

log = logging.getLogger("agencyhub.errors")


@strawberry.type
class UserError:
    code: str
    message: str
    field: list[str] | None = None

    @classmethod
    def from_domain(cls, error: DomainError) -> UserError:
        return cls(
            code=error.code.value,
            message=error.message,
            field=["input", *error.field] if error.field else None,
        )


P = ParamSpec("P")
R = TypeVar("R")


def with_user_errors(
    payload: Callable[..., R],
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Turn a mutation's DomainError into `payload(user_errors=[…])`: the one place it happens."""

    def decorate(resolver: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(resolver)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await resolver(*args, **kwargs)
            except DomainError as error:
                return payload(user_errors=[UserError.from_domain(error)])

        return wrapper

    return decorate


def _with_code(error: GraphQLError, message: str, code: str) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={**(error.extensions or {}), "code": code},
    )


Observer = Callable[[str | None, Sequence[GraphQLError]], None]
"""Sees an operation's name and its errors once they are coded (the request log, metrics)."""


class ErrorPolicy(MaskErrors):
    """Codes every error; then each of `observers` sees the operation's outcome (the app's
    request log and metrics), from this one extension rather than one of their own each.

    One instance also serves every operation of the schema's prepared path
    (`Schema.execute_prepared`), which calls `coded` and `observe` itself."""

    def __init__(self, observers: Sequence[Observer] = ()) -> None:
        super().__init__(error_message="Unexpected error.")
        self._observers = observers

    def on_operation(self) -> Iterator[None]:
        yield from super().on_operation()
        context = self.execution_context
        errors = getattr(context.result, "errors", None) or context.pre_execution_errors or ()
        self.observe(context.operation_name, errors)

    def observe(self, operation_name: str | None, errors: Sequence[GraphQLError]) -> None:
        for observe in self._observers:
            observe(operation_name, errors)

    def coded(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        """What the client sees of `errors`: each with its code, the unexpected ones masked."""
        return self._process_errors(errors)

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [self._process(error) for error in errors]

    def _process(self, error: GraphQLError) -> GraphQLError:
        original: Any = error.original_error
        if isinstance(original, NotAuthenticated):
            return _with_code(error, str(original), "UNAUTHENTICATED")
        if isinstance(original, AccessDenied):
            return _with_code(error, "You do not have access to this.", "FORBIDDEN")
        if isinstance(original, DomainError):
            # A rule refused a query argument (a bad cursor, a page too large).
            return _with_code(error, original.message, original.code.value)
        if isinstance(original, SubscriberTooSlow):
            return _with_code(error, str(original), "SUBSCRIBER_TOO_SLOW")
        if isinstance(original, QueryTooCostly):  # its extensions say the cost and the maximum
            return original.as_graphql_error()
        if isinstance(original, TryAgain):  # logged where the retries gave up
            return _with_code(error, str(original), "TRY_AGAIN")
        if isinstance(original, ServiceUnavailable):  # logged once per request, not per field
            return _with_code(error, str(original), "SERVICE_UNAVAILABLE")
        if error.path is None and (
            original is None or isinstance(original, (GraphQLError, ValueError, TypeError))
        ):
            # Parsing, validation, variable coercion: the client's request is at fault.
            return _with_code(error, error.message, "BAD_REQUEST")
        log.error("unexpected error at %s", error.path, exc_info=original)
        return _with_code(error, self.error_message, "INTERNAL_SERVER_ERROR")
