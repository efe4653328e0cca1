"""Messaging: `recordMessages` for the platform, `SubAccount.messaging(range)` and the monthly
volume limit for owners and admins."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import strawberry

from domain import agency as entities
from domain import messaging as rules
from resolvers import messaging as use_cases
from resolvers.context import RequestContext
from resolvers.global_id import from_global_id
from resolvers.usage import message_for
from schema.dates import DateRangeInput
from schema.errors import UserError, with_user_errors
from schema.sub_account import SubAccountPayload, _payload

MessageDirection = strawberry.enum(rules.MessageDirection, name="MessageDirection")
Info = strawberry.Info[RequestContext, None]


@strawberry.input
class MessageInput:
    external_id: str
    sub_account_id: strawberry.ID
    conversation_id: str = strawberry.field(
        description="The conversation (thread with one contact) the message belongs to."
    )
    direction: MessageDirection
    sent_at: datetime = strawberry.field(description="With a time zone; stored in UTC.")

    def to_domain(self) -> rules.ReportedMessage:
        decoded = from_global_id(self.sub_account_id)
        sent = self.sent_at if self.sent_at.tzinfo else self.sent_at.replace(tzinfo=UTC)
        return rules.ReportedMessage(
            external_id=self.external_id,
            sub_account_id=decoded[1] if decoded and decoded[0] == "SubAccount" else None,
            conversation_id=self.conversation_id,
            direction=self.direction,
            sent_at=sent.astimezone(UTC),
        )


def _message_from_input(
    cls: type[MessageInput], value: Mapping[str, Any], _context: object
) -> MessageInput:
    """Builds a MessageInput straight from graphql-core's coerced value, as `CallInput` is
    built (schema/usage.py): strawberry's generic conversion re-inspects every field's type
    for each of up to 1,000 messages a batch."""
    return cls(
        external_id=value["externalId"],
        sub_account_id=value["subAccountId"],
        conversation_id=value["conversationId"],
        direction=value["direction"],
        sent_at=value["sentAt"],
    )


MessageInput.__strawberry_definition__.from_input = _message_from_input  # type: ignore[attr-defined]


@strawberry.input
class RecordMessagesInput:
    messages: list[MessageInput] = strawberry.field(description="At most 1,000 messages per batch.")


@strawberry.type
class RejectedMessage:
    external_id: str
    code: str
    message: str


@strawberry.type
class RecordMessagesPayload:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[RejectedMessage] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _rate(rate: Fraction | None) -> Decimal | None:
    if rate is None:
        return None
    return (Decimal(rate.numerator) / Decimal(rate.denominator)).quantize(
        Decimal("0.0001"), rounding=ROUND_HALF_UP
    )


@strawberry.type(name="MessagingStats")
class MessagingStats:
    sent: int
    received: int
    new_conversations: int = strawberry.field(
        description="Conversations whose first message falls in the range."
    )
    responded_conversations: int = strawberry.field(
        description="New conversations opened by an outbound message that got an inbound reply."
    )
    response_rate: Decimal | None = strawberry.field(
        description="respondedConversations / new conversations opened outbound (4 decimals); "
        "null when there were none."
    )
    volume_used: int = strawberry.field(
        description="Outbound messages in the current billing period against messagingVolumeLimit."
    )
    volume_limit: int | None

    @classmethod
    def from_domain(cls, stats: use_cases.MessagingStats) -> MessagingStats:
        f = stats.figures
        return cls(
            sent=f.sent,
            received=f.received,
            new_conversations=f.new_conversations,
            responded_conversations=f.responded,
            response_rate=_rate(f.response_rate),
            volume_used=stats.volume_used,
            volume_limit=stats.volume_limit,
        )


async def messaging_stats(
    info: Info, sub_account: entities.SubAccount, range: DateRangeInput
) -> MessagingStats:
    return MessagingStats.from_domain(
        await use_cases.messaging_stats(info.context, sub_account, range.from_, range.to)
    )


@strawberry.input
class SetMessagingVolumeLimitInput:
    sub_account_id: strawberry.ID
    monthly_limit: int | None = strawberry.field(
        default=None, description="Outbound messages per billing period; null for no limit."
    )


@strawberry.type
class MessagingMutations:
    @strawberry.mutation(
        description="The platform reports messages (API key with the ingest scope). "
        "Idempotent on externalId; one transaction per batch."
    )
    @with_user_errors(RecordMessagesPayload)
    async def record_messages(
        self, info: Info, input: RecordMessagesInput
    ) -> RecordMessagesPayload:
        result = await use_cases.record_messages(
            info.context, [m.to_domain() for m in input.messages]
        )
        return RecordMessagesPayload(
            accepted=result.accepted,
            duplicates=result.duplicates,
            rejected=[
                RejectedMessage(external_id=e, code=code.value, message=message_for(code))
                for e, code in result.rejected
            ],
        )

    @strawberry.mutation(description="A sub-account's monthly limit of outbound messages.")
    @with_user_errors(SubAccountPayload)
    async def set_messaging_volume_limit(
        self, info: Info, input: SetMessagingVolumeLimitInput
    ) -> SubAccountPayload:
        return _payload(
            await use_cases.set_volume_limit(
                info.context, input.sub_account_id, input.monthly_limit
            )
        )
