"""Earnings as a running account: whatever is earned, paid, failed and paid again, payouts in
flight or paid never exceed what was earned, and each takes whole cents."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import DomainError, ErrorCode
from domain.payments import MICROS_PER_CENT
from domain.payouts import Earnings, Payout, PayoutStatus, due_payout, requested_payout

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ACCOUNT = "acct_1"


def _earnings(total: int, payouts: list[Payout], threshold: int = 0) -> Earnings:
    def summed(status: PayoutStatus) -> int:
        return sum(p.amount_micros for p in payouts if p.status is status)

    return Earnings(
        total, summed(PayoutStatus.PENDING), summed(PayoutStatus.PAID), threshold, ACCOUNT
    )


steps = st.lists(
    st.one_of(
        st.tuples(st.just("earn"), st.integers(min_value=0, max_value=5_000_000)),
        st.tuples(st.sampled_from(["request", "job", "pay", "fail"]), st.integers(0, 10)),
    ),
    max_size=40,
)


@given(steps=steps, threshold=st.integers(min_value=0, max_value=3_000_000))
def test_payouts_never_take_more_than_was_earned(steps, threshold):
    total, payouts = 0, []
    for action, value in steps:
        earnings = _earnings(total, payouts, threshold)
        if action == "earn":
            total += value
        elif action in ("request", "job"):
            try:
                planned = (
                    requested_payout(earnings) if action == "request" else due_payout(earnings)
                )
            except DomainError as error:
                assert error.code is ErrorCode.NOTHING_TO_PAY
                assert earnings.unpaid_micros < MICROS_PER_CENT
                continue
            if planned is None:
                continue
            _, amount = planned
            assert amount % MICROS_PER_CENT == 0 and amount > 0
            payouts.append(
                Payout(uuid.uuid4(), uuid.uuid4(), amount, PayoutStatus.PENDING, ACCOUNT, NOW)
            )
        else:
            pending = [i for i, p in enumerate(payouts) if p.status is PayoutStatus.PENDING]
            if pending:
                i = pending[value % len(pending)]
                status = PayoutStatus.PAID if action == "pay" else PayoutStatus.FAILED
                payouts[i] = replace(payouts[i], status=status)
        after = _earnings(total, payouts, threshold)
        assert after.pending_micros + after.paid_out_micros <= after.total_micros
        assert after.unpaid_micros >= 0


def test_the_job_waits_for_the_threshold_and_a_connected_account():
    below = Earnings(99_990_000, 0, 0, 100_000_000, ACCOUNT)
    assert due_payout(below) is None
    assert due_payout(replace(below, total_micros=100_000_000)) == (ACCOUNT, 100_000_000)
    assert due_payout(replace(below, total_micros=200_000_000, connected_account_id=None)) is None


def test_what_is_under_a_cent_stays_unpaid():
    earnings = Earnings(1_234_567, 0, 0, 0, ACCOUNT)
    assert requested_payout(earnings) == (ACCOUNT, 1_230_000)
    with pytest.raises(DomainError) as refused:
        requested_payout(Earnings(9_999, 0, 0, 0, ACCOUNT))
    assert refused.value.code is ErrorCode.NOTHING_TO_PAY
    with pytest.raises(DomainError) as refused:
        requested_payout(replace(earnings, connected_account_id=None))
    assert refused.value.code is ErrorCode.NO_CONNECTED_ACCOUNT
