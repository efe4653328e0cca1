"""Passwords (argon2), opaque bearer tokens (random, stored as an HMAC), and the secrets we
must read back (sealed)."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SESSION_TOKEN_PREFIX = "ahs_"
API_KEY_PREFIX = "ahk_"


class Passwords:
    """argon2id hashing, run off the event loop: a hash costs tens of milliseconds of CPU."""

    def __init__(self, time_cost: int = 3, memory_kib: int = 65536) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        # Checked against when the email is unknown, so timing does not tell which emails exist.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._decoy, password)
            except (VerificationError, InvalidHashError):
                return False

        ok = await asyncio.to_thread(check)
        return ok and password_hash is not None


class Tokens:
    """Random 256-bit tokens; only HMAC-SHA-256(secret, token) is ever stored."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def new(self, prefix: str = SESSION_TOKEN_PREFIX) -> str:
        return prefix + secrets.token_urlsafe(32)

    def digest(self, token: str) -> bytes:
        return hmac.new(self._secret, token.encode(), hashlib.sha256).digest()

    def seal(self, token: str) -> bytes:
        """For the few secrets we must read back (a webhook's signing secret: we sign with
        it): encrypted and authenticated (Fernet: AES-128-CBC and HMAC-SHA-256) under a key
        derived from the server's secret, so the database alone does not reveal them."""
        return self._box.encrypt(token.encode())

    def unseal(self, sealed: bytes) -> str | None:
        """The secret; None when it was sealed under another SECRET_KEY (or tampered with)."""
        try:
            return self._box.decrypt(sealed).decode()
        except InvalidToken:
            return None

    @functools.cached_property
    def _box(self) -> Fernet:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"agencyhub sealed secrets v1"
        ).derive(self._secret)
        return Fernet(base64.urlsafe_b64encode(key))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` value; None when absent or malformed."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
