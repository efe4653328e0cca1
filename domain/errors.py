"""Every failure a client can be told about, and its stable code, spelled as the API spells
it: business-rule failures (`DomainError` with an `ErrorCode`, shown as userErrors), and the
ones that end a request or a stream (GraphQL errors with `extensions.code`)."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_INPUT = "INVALID_INPUT"
    INVALID_EMAIL = "INVALID_EMAIL"
    WEAK_PASSWORD = "WEAK_PASSWORD"
    EMAIL_TAKEN = "EMAIL_TAKEN"
    UNKNOWN_PLAN = "UNKNOWN_PLAN"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"
    NOT_FOUND = "NOT_FOUND"
    PLAN_LIMIT_REACHED = "PLAN_LIMIT_REACHED"
    INSUFFICIENT_MINUTES = "INSUFFICIENT_MINUTES"
    SUBACCOUNT_SUSPENDED = "SUBACCOUNT_SUSPENDED"
    NOTE_TOO_LONG = "NOTE_TOO_LONG"
    PRIMARY_NOT_REMOVABLE = "PRIMARY_NOT_REMOVABLE"
    INVITATION_EXPIRED = "INVITATION_EXPIRED"
    INVITATION_REVOKED = "INVITATION_REVOKED"
    INVITATION_USED = "INVITATION_USED"
    INVITATION_SUPERSEDED = "INVITATION_SUPERSEDED"
    INVITATION_NOT_FOUND = "INVITATION_NOT_FOUND"
    INVITATION_NOT_PENDING = "INVITATION_NOT_PENDING"
    ROLE_NOT_ASSIGNABLE = "ROLE_NOT_ASSIGNABLE"
    SUBACCOUNTS_REQUIRED = "SUBACCOUNTS_REQUIRED"
    OWNER_ROLE_FIXED = "OWNER_ROLE_FIXED"
    OWNER_NOT_REMOVABLE = "OWNER_NOT_REMOVABLE"
    CANNOT_REMOVE_SELF = "CANNOT_REMOVE_SELF"
    TARGET_NOT_ADMIN = "TARGET_NOT_ADMIN"
    MAIL_NOT_SENT = "MAIL_NOT_SENT"
    SUBACCOUNT_REMOVED = "SUBACCOUNT_REMOVED"
    SAME_SUBACCOUNT = "SAME_SUBACCOUNT"
    INSUFFICIENT_CREDITS = "INSUFFICIENT_CREDITS"
    NOT_SUSPENDED = "NOT_SUSPENDED"
    PRIMARY_NOT_MERGEABLE = "PRIMARY_NOT_MERGEABLE"
    SUBACCOUNT_NOT_ACTIVE = "SUBACCOUNT_NOT_ACTIVE"
    MERGE_ALREADY_PENDING = "MERGE_ALREADY_PENDING"
    MERGE_NOT_PENDING = "MERGE_NOT_PENDING"
    APPROVER_MUST_DIFFER = "APPROVER_MUST_DIFFER"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    # payments
    PAYMENTS_NOT_CONFIGURED = "PAYMENTS_NOT_CONFIGURED"
    PAYMENT_PROVIDER_ERROR = "PAYMENT_PROVIDER_ERROR"
    CARD_DECLINED = "CARD_DECLINED"
    AMOUNT_TOO_SMALL = "AMOUNT_TOO_SMALL"
    NO_PAYMENT_CARD = "NO_PAYMENT_CARD"
    NOTHING_TO_PAY = "NOTHING_TO_PAY"
    NO_CONNECTED_ACCOUNT = "NO_CONNECTED_ACCOUNT"
    # phone lines
    INVALID_PHONE_NUMBER = "INVALID_PHONE_NUMBER"
    LINE_NUMBER_TAKEN = "LINE_NUMBER_TAKEN"
    # webhooks
    URL_NOT_ALLOWED = "URL_NOT_ALLOWED"
    WEBHOOK_ENDPOINT_LIMIT = "WEBHOOK_ENDPOINT_LIMIT"


class DomainError(Exception):
    """A rule said no. Resolvers turn it into a `UserError` in the mutation payload."""

    def __init__(self, code: ErrorCode, message: str, field: tuple[str, ...] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class AccessDenied(Exception):
    """The viewer may not do this. Becomes a GraphQL error with extensions.code FORBIDDEN."""


class NotAuthenticated(Exception):
    """No valid session. Becomes a GraphQL error with extensions.code UNAUTHENTICATED."""


class TryAgain(Exception):
    """The database kept refusing the transaction for concurrency's sake; it changed nothing.

    Becomes a GraphQL error with extensions.code TRY_AGAIN: the client may simply repeat it.
    Raised by the unit of work (persistence/unit_of_work.py).
    """


class ServiceUnavailable(Exception):
    """The database could not be reached, or went away mid-request (a restart, a failover).

    Becomes a GraphQL error with extensions.code SERVICE_UNAVAILABLE: what the request wrote
    was rolled back or never began, unless the connection dropped during its commit; the
    server reconnects on its own. Raised by persistence/database.py.
    """


class SubscriberTooSlow(Exception):
    """A live subscriber fell too far behind and was cut off; it should reconnect and resume
    by sequence. Becomes a GraphQL error with extensions.code SUBSCRIBER_TOO_SLOW. Raised by
    the broker's fan-out and the outbox's replays."""
