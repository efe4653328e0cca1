"""Messaging: which reported messages are accepted, and the conversations they make.

A conversation (a thread with one contact, named by the platform, within one sub-account)
opens with its earliest message: by time, not by arrival, so a batch that brings an earlier
message than the one seen so far moves its opening. It is *responded* when it was opened by an
outbound message and an inbound one came later (at any time, in any batch). Each conversation
counts once, in the quarter hour it opened: as new outbound or new inbound, and as responded.
When a batch changes a conversation, the rollups get the difference between what it counted
before and what it counts after, so they always equal the conversations' current state.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from uuid import UUID

from domain.agency import SubAccount, SubAccountStatus
from domain.errors import DomainError, ErrorCode
from domain.usage import CLOCK_SKEW, Rejection, quarter_of

MAX_BATCH = 1000
MAX_ID_LENGTH = 200


class MessageDirection(StrEnum):
    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"


@dataclass(frozen=True, slots=True)
class ReportedMessage:
    external_id: str
    sub_account_id: UUID | None  # None when the ID did not decode
    conversation_id: str
    direction: MessageDirection
    sent_at: datetime


def rejection(
    message: ReportedMessage, sub_account: SubAccount | None, now: datetime
) -> Rejection | None:
    if not 0 < len(message.external_id) <= MAX_ID_LENGTH:
        return Rejection.INVALID_EXTERNAL_ID
    if not 0 < len(message.conversation_id) <= MAX_ID_LENGTH:
        return Rejection.INVALID_CONVERSATION_ID
    if sub_account is None:
        return Rejection.UNKNOWN_SUBACCOUNT
    if not sub_account.is_live:
        return Rejection.SUBACCOUNT_REMOVED
    if sub_account.status is SubAccountStatus.SUSPENDED:
        return Rejection.SUBACCOUNT_SUSPENDED
    if message.sent_at > now + CLOCK_SKEW:
        return Rejection.STARTS_IN_FUTURE
    return None


ConversationKey = tuple[UUID, str]  # (sub-account, the platform's conversation id)


@dataclass(frozen=True, slots=True)
class Conversation:
    sub_account_id: UUID
    external_id: str
    opened_at: datetime
    opened_by: str  # the opening message's external id: ties in time go to the smaller
    opened_direction: MessageDirection
    latest_inbound_at: datetime | None

    @property
    def key(self) -> ConversationKey:
        return self.sub_account_id, self.external_id

    @property
    def responded(self) -> bool:
        return (
            self.opened_direction is MessageDirection.OUTBOUND
            and self.latest_inbound_at is not None
            and self.latest_inbound_at > self.opened_at
        )

    def with_message(self, message: ReportedMessage) -> Conversation:
        updated = self
        if (message.sent_at, message.external_id) < (self.opened_at, self.opened_by):
            updated = replace(
                updated,
                opened_at=message.sent_at,
                opened_by=message.external_id,
                opened_direction=message.direction,
            )
        if message.direction is MessageDirection.INBOUND and (
            updated.latest_inbound_at is None or message.sent_at > updated.latest_inbound_at
        ):
            updated = replace(updated, latest_inbound_at=message.sent_at)
        return updated


def opened_by(message: ReportedMessage) -> Conversation:
    assert message.sub_account_id is not None
    return Conversation(
        message.sub_account_id,
        message.conversation_id,
        message.sent_at,
        message.external_id,
        message.direction,
        message.sent_at if message.direction is MessageDirection.INBOUND else None,
    )


def conversations_after(
    messages: list[ReportedMessage], before: dict[ConversationKey, Conversation]
) -> dict[ConversationKey, Conversation]:
    """Every conversation the accepted `messages` touch, as they leave it (`before`: those
    already stored)."""
    after: dict[ConversationKey, Conversation] = {}
    for message in messages:
        assert message.sub_account_id is not None
        key = (message.sub_account_id, message.conversation_id)
        current = after.get(key) or before.get(key)
        after[key] = opened_by(message) if current is None else current.with_message(message)
    return after


@dataclass
class MessagingLine:
    """What a batch adds to one (sub-account, quarter hour) rollup row; conversation counts
    may go down (a conversation whose opening moved to another quarter, or turned inbound)."""

    sent: int = 0
    received: int = 0
    new_outbound: int = 0
    new_inbound: int = 0
    responded: int = 0

    def count(self, conversation: Conversation, sign: int) -> None:
        if conversation.opened_direction is MessageDirection.OUTBOUND:
            self.new_outbound += sign
        else:
            self.new_inbound += sign
        self.responded += sign * conversation.responded

    @property
    def empty(self) -> bool:
        return not (
            self.sent or self.received or self.new_outbound or self.new_inbound or self.responded
        )


RollupKey = tuple[UUID, datetime]  # (sub-account, UTC quarter hour)


def rollup_changes(
    messages: list[ReportedMessage],
    before: dict[ConversationKey, Conversation],
    after: dict[ConversationKey, Conversation],
) -> dict[RollupKey, MessagingLine]:
    lines: dict[RollupKey, MessagingLine] = defaultdict(MessagingLine)
    for message in messages:
        assert message.sub_account_id is not None
        line = lines[message.sub_account_id, quarter_of(message.sent_at)]
        if message.direction is MessageDirection.OUTBOUND:
            line.sent += 1
        else:
            line.received += 1
    for key, now in after.items():
        was = before.get(key)
        if was == now:
            continue
        if was is not None:
            lines[was.sub_account_id, quarter_of(was.opened_at)].count(was, -1)
        lines[now.sub_account_id, quarter_of(now.opened_at)].count(now, +1)
    return {key: line for key, line in lines.items() if not line.empty}


@dataclass(frozen=True)
class MessagingFigures:
    sent: int = 0
    received: int = 0
    new_outbound: int = 0
    new_inbound: int = 0
    responded: int = 0

    @property
    def new_conversations(self) -> int:
        return self.new_outbound + self.new_inbound

    @property
    def response_rate(self) -> Fraction | None:
        """Responded ÷ new conversations opened outbound; None when there were none."""
        if not self.new_outbound:
            return None
        return Fraction(self.responded, self.new_outbound)


def check_volume_limit(limit: int | None) -> int | None:
    if limit is not None and not 0 <= limit <= 100_000_000:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "The monthly limit is 0 to 100,000,000 messages, or null for none.",
            ("monthlyLimit",),
        )
    return limit
