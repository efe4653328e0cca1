"""Mailers send messages: `SmtpMailer` through the SMTP server named by `MAIL_URL`, and
`FileMailer` (the embedded default) writes each message as an .eml file for a person to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

SMTP_TIMEOUT_SECONDS = 10.0
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


def compose(sender: str, to: str, subject: str, text: str) -> EmailMessage:
    """A plain-text message with the headers every mail server and client expects."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    # make_msgid() would otherwise look up this host's FQDN, which can block on DNS.
    domain = parseaddr(sender)[1].rpartition("@")[2] or "agencyhub.invalid"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(text)
    return message


@dataclass(frozen=True)
class SmtpSettings:
    hostname: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False  # implicit TLS from the first byte (smtps://)
    start_tls: bool | None = None  # None: upgrade if the server offers STARTTLS


def parse_smtp_url(url: str) -> SmtpSettings:
    """`smtp://user:pass@host:port[?starttls=true|false]` or `smtps://…` (implicit TLS).

    Error messages never repeat the URL: it may hold a password.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(f"MAIL_URL must start with smtp:// or smtps://, not {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("MAIL_URL names no host")
    implicit_tls = parts.scheme == "smtps"
    port = parts.port or (465 if implicit_tls else 25)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if (username is None) != (password is None):
        raise ValueError("MAIL_URL needs both a user and a password, or neither")
    return SmtpSettings(
        hostname=parts.hostname,
        port=port,
        username=username,
        password=password,
        use_tls=implicit_tls,
        start_tls=_start_tls(parts.query, port, implicit_tls),
    )


def _start_tls(query: str, port: int, implicit_tls: bool) -> bool | None:
    value = parse_qs(query).get("starttls", [""])[-1].lower()
    if value and value not in _TRUE + _FALSE:
        raise ValueError("MAIL_URL's starttls must be true or false")
    if implicit_tls:
        if value in _TRUE:
            raise ValueError("smtps:// is already encrypted; starttls=true belongs to smtp://")
        return False
    if value:
        return value in _TRUE
    # 587 is the submission port, where STARTTLS is the rule.
    return True if port == 587 else None


class SmtpMailer:
    """Sends each message on its own SMTP connection; failures raise `aiosmtplib.SMTPException`."""

    def __init__(self, url: str, timeout: float = SMTP_TIMEOUT_SECONDS) -> None:
        # Parsed now, so a wrong MAIL_URL stops the start instead of the first mail.
        self.settings = parse_smtp_url(url)
        self._timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        s = self.settings
        await aiosmtplib.send(
            message,
            hostname=s.hostname,
            port=s.port,
            username=s.username,
            password=s.password,
            use_tls=s.use_tls,
            start_tls=s.start_tls,
            timeout=self._timeout,
        )


class FileMailer:
    """Writes `<UTC timestamp>-<random>.eml` files, so a directory listing sorts them by time."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> None:
        # Serialised here, before another thread reads it, in case the caller changes it later.
        await asyncio.to_thread(self._write, message.as_bytes())

    def _write(self, data: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        # A hidden .tmp name until complete: a reader of *.eml never sees half a message.
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            path = self.directory / _file_name()
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return path


def _file_name() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}.eml"


def build_mailer(mail_url: str | None, mail_dir: Path) -> Mailer:
    return SmtpMailer(mail_url) if mail_url else FileMailer(mail_dir)
