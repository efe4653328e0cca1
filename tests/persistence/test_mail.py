"""Mailers: .eml files that parse back, and real SMTP delivery to a local aiosmtpd server."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from persistence.mail import FileMailer, SmtpMailer, build_mailer, compose, parse_smtp_url
from tests.mailbox import Collector, free_port, mailbox, parse, serve

USER, PASSWORD = "mailer@agency.test", "p@ss:w/rd %?"


def welcome(to: str = "ann@client.test", subject: str = "Welcome") -> EmailMessage:
    return compose("AgencyHub <noreply@agencyhub.test>", to, subject, "Hello, Ann.\nSee you.")


async def test_the_file_mailer_writes_a_message_that_parses_back(tmp_path: Path):
    directory = tmp_path / "not" / "yet" / "there"
    await FileMailer(directory).send(welcome())

    [(name, message)] = mailbox(directory)  # and no temporary file left behind
    assert name.endswith(".eml")
    assert message["From"] == "AgencyHub <noreply@agencyhub.test>"
    assert message["To"] == "ann@client.test"
    assert message["Subject"] == "Welcome"
    assert message["Date"].datetime is not None
    assert message["Message-ID"].endswith("@agencyhub.test>")
    assert message.get_content() == "Hello, Ann.\nSee you.\n"


async def test_file_names_sort_in_the_order_messages_were_sent(tmp_path: Path):
    mailer = FileMailer(tmp_path)
    subjects = [f"message {n}" for n in range(5)]
    for subject in subjects:
        await mailer.send(welcome(subject=subject))
    assert [message["Subject"] for _, message in mailbox(tmp_path)] == subjects


def accept_one_user(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: object
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == LoginPassword(
        USER.encode(), PASSWORD.encode()
    )
    # handled=False: aiosmtpd then answers a failure with 535 itself.
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
def smtp_port(collector: Collector) -> Iterator[int]:
    yield from serve(collector)


@pytest.fixture
def smtp_auth_port(collector: Collector) -> Iterator[int]:
    # Plain-text AUTH is fine on loopback in a test; a real server would want TLS first.
    yield from serve(
        collector, authenticator=accept_one_user, auth_required=True, auth_require_tls=False
    )


async def test_the_smtp_mailer_delivers_to_a_real_server(collector: Collector, smtp_port: int):
    mailer = build_mailer(f"smtp://127.0.0.1:{smtp_port}", Path("unused"))
    assert isinstance(mailer, SmtpMailer)
    await mailer.send(welcome())

    [envelope] = collector.envelopes
    assert envelope.mail_from == "noreply@agencyhub.test"
    assert envelope.rcpt_tos == ["ann@client.test"]
    assert isinstance(envelope.content, bytes)
    received = parse(envelope.content)
    assert received["Subject"] == "Welcome"
    assert received.get_content().splitlines() == ["Hello, Ann.", "See you."]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_the_smtp_mailer_logs_in_with_the_url_decoded_user_and_password(
    collector: Collector, smtp_auth_port: int
):
    url = f"smtp://{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@127.0.0.1:{smtp_auth_port}"
    await SmtpMailer(url).send(welcome())
    assert [e.rcpt_tos for e in collector.envelopes] == [["ann@client.test"]]

    wrong = f"smtp://{quote(USER, safe='')}:nope@127.0.0.1:{smtp_auth_port}"
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        await SmtpMailer(wrong).send(welcome())
    assert len(collector.envelopes) == 1


async def test_an_unreachable_smtp_server_raises():
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await SmtpMailer(f"smtp://127.0.0.1:{free_port()}", timeout=2).send(welcome())


@pytest.mark.parametrize(
    ("url", "port", "use_tls", "start_tls"),
    [
        ("smtp://mail.test", 25, False, None),
        ("smtp://mail.test:587", 587, False, True),
        ("smtp://mail.test:2525?starttls=true", 2525, False, True),
        ("smtp://mail.test:587?starttls=false", 587, False, False),
        ("smtps://mail.test", 465, True, False),
    ],
)
def test_the_url_chooses_port_and_tls(url: str, port: int, use_tls: bool, start_tls: bool | None):
    settings = parse_smtp_url(url)
    assert (settings.hostname, settings.port) == ("mail.test", port)
    assert (settings.use_tls, settings.start_tls) == (use_tls, start_tls)


def test_the_password_is_decoded_and_kept_out_of_the_repr():
    settings = parse_smtp_url("smtp://a%40b.test:s%3Acret%2F@mail.test")
    assert (settings.username, settings.password) == ("a@b.test", "s:cret/")
    assert "cret" not in repr(settings)


@pytest.mark.parametrize(
    "url",
    [
        "http://mail.test",
        "mail.test:25",
        "smtp://",
        "smtp://user@mail.test",
        "smtp://mail.test?starttls=maybe",
        "smtps://mail.test?starttls=true",
    ],
)
def test_a_bad_mail_url_is_refused_at_once(url: str):
    with pytest.raises(ValueError) as error:
        build_mailer(url, Path("unused"))
    assert "@" not in str(error.value)


def test_without_a_url_mail_goes_to_files(tmp_path: Path):
    mailer = build_mailer(None, tmp_path)
    assert isinstance(mailer, FileMailer)
    assert mailer.directory == tmp_path
