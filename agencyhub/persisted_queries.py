"""Automatic persisted queries, as Apollo Client's persisted-query link speaks them.

A client sends `extensions.persistedQuery = {version: 1, sha256Hash}` without the query's text
(over GET for queries, so that caches can keep the answer). If the server knows the hash, it
runs the text stored under it. If not, it answers `PersistedQueryNotFound` (code
PERSISTED_QUERY_NOT_FOUND) and the client sends the text with the hash again: the server checks
that the hash is the text's SHA-256 (else 400), stores it and runs it. Mutations are never run
over GET, whether their text came with the request or from the store.

Texts longer than `max_bytes` run but are not stored. The store (persistence/persisted_queries)
is Redis with REDIS_URL, each entry expiring PERSISTED_QUERY_TTL_SECONDS after its last use, and
an LRU of PERSISTED_QUERY_MAX_ENTRIES in the embedded default. If Redis cannot be reached, a hash
is reported not found, and the text the client then sends runs unstored.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import orjson

from persistence.persisted_queries import PersistedQueries

log = logging.getLogger("agencyhub.persisted_queries")

NOT_FOUND = "PersistedQueryNotFound"  # the message Apollo's link looks for
_SHA256 = re.compile(r"[0-9a-f]{64}")


class PersistedQueryProblem(Exception):
    """Answered as a GraphQL error, without running anything."""

    def __init__(self, message: str, code: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    def body(self) -> bytes:
        error = {"message": str(self), "extensions": {"code": self.code}}
        return orjson.dumps({"errors": [error]})


class AutomaticPersistedQueries:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.store: PersistedQueries | None = None  # set by the app's lifespan

    async def query_for(self, query: str | None, extensions: dict[str, Any] | None) -> str | None:
        """The text to run: `query` itself, or the stored text of the request's hash."""
        persisted = (extensions or {}).get("persistedQuery")
        if persisted is None or self.store is None:
            return query
        if not isinstance(persisted, dict) or persisted.get("version") != 1:
            raise PersistedQueryProblem(
                "Only version 1 of persisted queries is supported.",
                "PERSISTED_QUERY_NOT_SUPPORTED",
                400,
            )
        sha256 = persisted.get("sha256Hash")
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise PersistedQueryProblem(
                "persistedQuery.sha256Hash must be 64 lowercase hexadecimal digits.",
                "BAD_REQUEST",
                400,
            )
        if query is None:
            try:
                stored = await self.store.get(sha256)
            except Exception as error:  # Redis down: the client will send the text
                log.warning("persisted query not read: %s", error.__class__.__name__)
                stored = None
            if stored is None:
                raise PersistedQueryProblem(NOT_FOUND, "PERSISTED_QUERY_NOT_FOUND", 200)
            return stored
        text = query.encode()
        if hashlib.sha256(text).hexdigest() != sha256:
            raise PersistedQueryProblem(
                "persistedQuery.sha256Hash is not the SHA-256 of the query.", "BAD_REQUEST", 400
            )
        if len(text) <= self.max_bytes:
            try:
                await self.store.put(sha256, query)
            except Exception as error:
                log.warning("persisted query not stored: %s", error.__class__.__name__)
        return query
