from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import DomainError, ErrorCode
from domain.identity import check_password, normalize_email
from domain.money import dollars_to_micros, seconds_to_minutes, to_dollars
from domain.plans import plan_named


def test_emails_are_trimmed_and_lower_cased():
    assert normalize_email("  Owner@Example.COM ") == "owner@example.com"


@pytest.mark.parametrize("bad", ["", "no-at-sign", "two@@example.com", "a@b", "x" * 250 + "@e.co"])
def test_invalid_emails_are_refused(bad):
    with pytest.raises(DomainError) as caught:
        normalize_email(bad)
    assert caught.value.code is ErrorCode.INVALID_EMAIL


@pytest.mark.parametrize("weak", ["short", "aaaaaaaaaaaaaa", "jonathan-secret-1"])
def test_weak_passwords_are_refused(weak):
    with pytest.raises(DomainError) as caught:
        check_password(weak, "jonathan@example.com")
    assert caught.value.code is ErrorCode.WEAK_PASSWORD


def test_a_long_varied_password_is_accepted():
    check_password("correct-horse-battery", "owner@example.com")


def test_sign_up_without_plan_takes_agency_lite_and_unknown_plans_are_refused():
    assert plan_named(None).name == "Agency Lite"
    with pytest.raises(DomainError) as caught:
        plan_named("Gold")
    assert caught.value.code is ErrorCode.UNKNOWN_PLAN


def test_minutes_are_exact():
    assert seconds_to_minutes(90) == Decimal("1.5")
    assert seconds_to_minutes(110_100) == Decimal("1835")
    assert str(seconds_to_minutes(300_000)) == "5000"  # not "5E+3" on the wire


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_micro_dollars_round_trip_through_decimal_exactly(micros):
    assert dollars_to_micros(to_dollars(micros)) == micros


def test_sub_micro_amounts_are_refused_not_rounded():
    with pytest.raises(ValueError):
        dollars_to_micros(Decimal("0.0000001"))
