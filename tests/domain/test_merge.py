"""The merge rules alone: who may be merged, who may decide, what approval makes."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from domain import merge
from domain.agency import BalanceSource, SubAccount, SubAccountKind, SubAccountStatus
from domain.audit import AuditKind
from domain.errors import DomainError, ErrorCode
from domain.money import Tier

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
ASKER, DECIDER = uuid.uuid4(), uuid.uuid4()


def account(name: str, kind: SubAccountKind = SubAccountKind.SECONDARY, credits: int = 0):
    return SubAccount(
        uuid.uuid4(),
        uuid.uuid4(),
        kind,
        name,
        f"{name.lower()}@x.example",
        SubAccountStatus.ACTIVE,
        date(2026, 1, 1),
        BalanceSource.CUSTOMER,
        credits,
    )


def code_of(call) -> ErrorCode:
    with pytest.raises(DomainError) as raised:
        call()
    return raised.value.code


def asked(source: SubAccount, target: SubAccount) -> merge.MergeRequest:
    made, note = merge.request(uuid.uuid4(), source, target, None, ASKER, "a@x.example", NOW)
    assert note.kind is AuditKind.MERGE_REQUESTED
    return made


def test_only_two_different_active_secondaries_merge():
    a, b = account("Acme"), account("Beta")
    primary = account("Agency", SubAccountKind.PRIMARY)
    assert code_of(lambda: merge.check_mergeable(a, a)) is ErrorCode.SAME_SUBACCOUNT
    assert code_of(lambda: merge.check_mergeable(primary, b)) is ErrorCode.PRIMARY_NOT_MERGEABLE
    assert code_of(lambda: merge.check_mergeable(a, primary)) is ErrorCode.PRIMARY_NOT_MERGEABLE
    for status in (SubAccountStatus.SUSPENDED, SubAccountStatus.REMOVED, SubAccountStatus.MERGED):
        gone = replace(b, status=status)
        assert code_of(lambda g=gone: merge.check_mergeable(a, g)) is (
            ErrorCode.SUBACCOUNT_NOT_ACTIVE
        )
    merge.check_mergeable(a, b)


def test_the_asker_never_decides_and_a_decision_is_final():
    a, b = account("Acme"), account("Beta")
    pending = asked(a, b)
    assert (
        code_of(lambda: merge.approve(pending, a, b, ASKER, "a@x.example", NOW, {}, 0))
        is ErrorCode.APPROVER_MUST_DIFFER
    )
    rejected, note = merge.reject(pending, a, b, DECIDER, "d@x.example", NOW)
    assert rejected.status is merge.MergeStatus.REJECTED and note.kind is AuditKind.MERGE_REJECTED
    assert (
        code_of(lambda: merge.approve(rejected, a, b, DECIDER, "d@x.example", NOW, {}, 0))
        is ErrorCode.MERGE_NOT_PENDING
    )


def test_approval_merges_the_source_and_hands_its_credits_over():
    a, b = account("Acme", credits=3), account("Beta", credits=2)
    done = merge.approve(
        asked(a, b), a, b, DECIDER, "d@x.example", NOW, {Tier.PREMIUM: 480, Tier.BASIC: 0}, 1
    )
    assert done.request.status is merge.MergeStatus.APPROVED
    assert done.request.decided_by == DECIDER and done.request.decided_at == NOW
    assert done.source.status is SubAccountStatus.MERGED and done.source.knowledge_pack_credits == 0
    assert done.target.knowledge_pack_credits == 5
    assert done.note.kind is AuditKind.MERGE_APPROVED
    assert done.note.summary == (
        "merged Acme into Beta: moved 8 PREMIUM minutes, 3 Knowledge Pack credits, 1 line"
    )
