"""Rules for who someone is: email addresses, password strength, names and time zones."""

from __future__ import annotations

import functools
import re
import zoneinfo

from domain.errors import DomainError, ErrorCode

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 128
MAX_EMAIL_LENGTH = 254
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(raw: str, field: str = "email") -> str:
    """Emails are unique case-insensitively, so they are kept lower-cased and trimmed."""
    email = raw.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        raise DomainError(ErrorCode.INVALID_EMAIL, "That is not a valid email address.", (field,))
    return email


def check_password(password: str, email: str, field: str = "password") -> None:
    """Length decides most of a password's strength; a few obvious weak choices are refused."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise DomainError(
            ErrorCode.WEAK_PASSWORD,
            f"Use at least {MIN_PASSWORD_LENGTH} characters.",
            (field,),
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise DomainError(
            ErrorCode.WEAK_PASSWORD,
            f"Use at most {MAX_PASSWORD_LENGTH} characters.",
            (field,),
        )
    if len(set(password)) < 4:
        raise DomainError(ErrorCode.WEAK_PASSWORD, "Use more different characters.", (field,))
    local_part = email.split("@", 1)[0]
    if len(local_part) >= 4 and local_part in password.lower():
        raise DomainError(
            ErrorCode.WEAK_PASSWORD, "The password must not contain your email name.", (field,)
        )


def check_name(raw: str, field: str, max_length: int = 120) -> str:
    name = " ".join(raw.split())
    if not name:
        raise DomainError(ErrorCode.INVALID_INPUT, "A name is required.", (field,))
    if len(name) > max_length:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"Use at most {max_length} characters.", (field,)
        )
    return name


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_time_zone(raw: str, field: str) -> str:
    """An IANA time zone name such as Europe/Berlin (reports cut days in it)."""
    zone = raw.strip()
    if zone not in _time_zones():
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "Use an IANA time zone name such as Europe/Berlin or America/New_York.",
            (field,),
        )
    return zone
