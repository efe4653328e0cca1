"""Reading what the app mailed: a local SMTP server (aiosmtpd) and the .eml folder."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


class Collector:
    """An aiosmtpd handler that keeps every envelope it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted"

    def messages_to(self, address: str) -> list[EmailMessage]:
        return [
            parse(e.content)  # type: ignore[arg-type]
            for e in self.envelopes
            if address in e.rcpt_tos
        ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(collector: Collector, **smtp_options: object) -> Iterator[int]:
    controller = Controller(collector, hostname="127.0.0.1", port=free_port(), **smtp_options)
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


def mailbox(directory: Path) -> list[tuple[str, EmailMessage]]:
    """Every file in the directory, hidden ones too, as (name, message) sorted by name."""
    if not directory.exists():
        return []
    return [(p.name, parse(p.read_bytes())) for p in sorted(directory.iterdir())]


def invitation_link(message: EmailMessage) -> tuple[str, str]:
    """(the link, its token) from an invitation mail."""
    body = message.get_content()
    match = re.search(r"https?://\S+", body)
    assert match, body
    link = match.group(0)
    return link, parse_qs(urlparse(link).query)["token"][0]


def latest_token_for(directory: Path, address: str) -> str:
    mails = [m for _, m in mailbox(directory) if m["To"] == address]
    assert mails, f"no mail to {address}"
    return invitation_link(mails[-1])[1]
