"""Webhook rules without I/O: which addresses may be targets, the signature receivers check,
and the retry schedule."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import DomainError, ErrorCode
from domain.webhooks import (
    RetrySchedule,
    SignatureError,
    address_allowed,
    check_addresses,
    parse_url,
    sign,
    verify,
)

ip = ipaddress.ip_address


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata (link-local)
        "169.254.170.2",
        "100.100.100.200",  # Alibaba's metadata (shared address space)
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "fd00:ec2::254",  # AWS metadata over IPv6 (unique-local)
        "fc00::1",
        "fe80::1",
        "ff02::1",
        "::",
        "::ffff:10.0.0.1",  # IPv4-mapped private
        "::ffff:169.254.169.254",
        "192.0.2.1",  # documentation
    ],
)
def test_private_link_local_and_metadata_addresses_are_refused(address):
    assert not address_allowed(ip(address))


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_is_allowed(address):
    assert address_allowed(ip(address))


def test_the_operator_can_refuse_loopback_too():
    assert not address_allowed(ip("127.0.0.1"), allow_loopback=False)
    with pytest.raises(DomainError):
        check_addresses(parse_url("https://localhost/x"), [ip("::1")], allow_loopback=False)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert address_allowed(ip(address))


def test_one_private_address_among_public_ones_refuses_the_host():
    target = parse_url("https://hooks.example.com/in")
    assert check_addresses(target, [ip("8.8.8.8")]) == [ip("8.8.8.8")]
    with pytest.raises(DomainError) as refused:
        check_addresses(target, [ip("8.8.8.8"), ip("10.0.0.1")])
    assert refused.value.code is ErrorCode.URL_NOT_ALLOWED


def test_plain_http_only_to_loopback():
    assert check_addresses(parse_url("http://localhost:8080/x"), [ip("127.0.0.1"), ip("::1")])
    with pytest.raises(DomainError):
        check_addresses(parse_url("http://hooks.example.com/x"), [ip("8.8.8.8")])


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/", "https://user:pw@example.com/", "file:///etc/passwd", "gopher://x/"],
)
def test_other_schemes_and_credentials_are_refused(url):
    with pytest.raises(DomainError) as refused:
        parse_url(url)
    assert refused.value.code is ErrorCode.URL_NOT_ALLOWED


def test_a_target_keeps_path_query_and_port_and_addresses_the_checked_ip():
    target = parse_url("https://Hooks.Example.com:8443/in?x=1")
    assert (target.host, target.port, target.path) == ("hooks.example.com", 8443, "/in?x=1")
    assert target.host_header() == "hooks.example.com:8443"
    assert target.url_for(ip("2606:4700::1")) == "https://[2606:4700::1]:8443/in?x=1"


SECRET = "whsec_test"
BODY = b'{"id":"evt_1","kind":"PAYOUT_PAID"}'


def test_a_signature_verifies_within_the_tolerance():
    header = sign(SECRET, 1_000_000, BODY)
    assert header.startswith("t=1000000,v1=")
    assert verify(SECRET, header, BODY, now=1_000_000 + 299) == 1_000_000


def test_forged_signatures_are_told_apart():
    genuine = sign(SECRET, 1_000_000, BODY)
    forged = [
        (sign("whsec_other", 1_000_000, BODY), BODY),  # signed with another secret
        (genuine, BODY + b" "),  # the body was changed
        (genuine.replace("t=1000000", "t=1000100"), BODY),  # the timestamp was changed
    ]
    for header, body in forged:
        with pytest.raises(SignatureError) as refused:
            verify(SECRET, header, body, now=1_000_000)
        assert refused.value.reason == "mismatch"


def test_a_stale_signature_is_told_apart_from_a_forged_one():
    header = sign(SECRET, 1_000_000, BODY)
    with pytest.raises(SignatureError) as stale:
        verify(SECRET, header, BODY, now=1_000_000 + 301)
    assert stale.value.reason == "stale"
    with pytest.raises(SignatureError) as replayed_ahead:
        verify(SECRET, header, BODY, now=1_000_000 - 301)
    assert replayed_ahead.value.reason == "stale"


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=12", "t=abc,v1=00", "garbage"])
def test_a_malformed_header_is_refused(header):
    with pytest.raises(SignatureError) as refused:
        verify(SECRET, header, BODY, now=12)
    assert refused.value.reason == "malformed"


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=2**40))
def test_any_body_signed_verifies_and_any_other_body_does_not(body, t):
    header = sign(SECRET, t, body)
    assert verify(SECRET, header, body, now=t) == t
    with pytest.raises(SignatureError):
        verify(SECRET, header, body + b"x", now=t)


def test_retries_follow_1s_5s_30s_2min_10min_1h_then_hourly_for_24_hours():
    schedule = RetrySchedule()
    start = datetime(2026, 12, 1, tzinfo=UTC)
    at, attempts, gaps = start, 1, []
    while (next_at := schedule.next_attempt(start, attempts, at)) is not None:
        gaps.append(int((next_at - at).total_seconds()))
        at, attempts = next_at, attempts + 1
    assert gaps[:6] == [1, 5, 30, 120, 600, 3600]
    assert set(gaps[6:]) == {3600}
    assert at <= start + timedelta(hours=24) < at + timedelta(hours=1)
    assert attempts == 29  # 7 attempts in the first 73 minutes, then 22 hourly


def test_the_readme_recipe_accepts_a_real_signature_and_refuses_forged_and_stale_ones():
    import re
    import time
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [recipe] = re.findall(r"without this package:\n\n```python\n(.*?)```", readme, re.S)
    scope: dict[str, object] = {}
    exec(recipe, scope)
    readme_verify = scope["verify"]
    now = int(time.time())
    readme_verify(SECRET, sign(SECRET, now, BODY), BODY)  # type: ignore[operator]
    for header, body, why in [
        (sign("whsec_other", now, BODY), BODY, "forged"),
        (sign(SECRET, now, BODY), BODY + b"!", "forged"),
        ("garbage", BODY, "forged"),
        (sign(SECRET, now - 301, BODY), BODY, "stale"),
    ]:
        with pytest.raises(ValueError, match=why):
            readme_verify(SECRET, header, body)  # type: ignore[operator]
