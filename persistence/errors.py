"""Database refusals the layers above act on, translated once (by the unit of work) from
SQLAlchemy's exceptions, so resolvers never import sqlalchemy."""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import IntegrityError

PG_UNIQUE_VIOLATION = "23505"  # unique constraints and primary keys alike
SQLITE_UNIQUE = ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


class UniqueViolation(Exception):
    """A unique constraint or primary key refused a row: another request got there first
    (a concurrent sign-up with the same email, an idempotency key's twin, a plan period
    granted by another run). Nothing of the transaction was committed.

    `constraint` is the constraint's name on PostgreSQL (e.g. `pk_idempotency_key`); SQLite
    does not say it, only the columns, in `detail`.
    """

    def __init__(self, constraint: str | None, detail: str) -> None:
        super().__init__(detail)
        self.constraint = constraint
        self.detail = detail


def unique_violation(error: IntegrityError) -> UniqueViolation | None:
    """The violation `error` reports, or None when it is another integrity error (a foreign
    key, NOT NULL, CHECK: a bug, not a race, and left as it is)."""
    orig = error.orig
    if isinstance(orig, sqlite3.IntegrityError):
        if getattr(orig, "sqlite_errorname", "") in SQLITE_UNIQUE:
            return UniqueViolation(None, str(orig))
        return None
    # asyncpg's error, adapted by SQLAlchemy: the code on `orig`, the name on its cause.
    if getattr(orig, "sqlstate", None) != PG_UNIQUE_VIOLATION:
        return None
    cause = getattr(orig, "__cause__", None)
    return UniqueViolation(getattr(cause, "constraint_name", None), str(cause or orig))
