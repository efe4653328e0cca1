"""The tables. One typed declarative model; queries use them through SQLAlchemy Core.

Money columns hold integer micro-dollars, minute columns hold integer seconds.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from persistence.types import BigIntId, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def partial_index(name: str, *columns: str, where: str, unique: bool = False) -> Index:
    """An index of only the rows `where` holds for (the same condition on both databases)."""
    return Index(
        name, *columns, unique=unique, postgresql_where=text(where), sqlite_where=text(where)
    )


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(Uuid, primary_key=True, default=uuid.uuid4)


class AgencyRow(Base):
    __tablename__ = "agency"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(String(120))
    # The plan's terms are copied at sign-up, so a later catalogue change keeps contracts.
    plan_name: Mapped[str] = mapped_column(String(60))
    billing_model: Mapped[str] = mapped_column(String(20))
    sub_account_cap: Mapped[int | None] = mapped_column(Integer)
    included_monthly_minutes: Mapped[int] = mapped_column(Integer)
    included_tier: Mapped[str] = mapped_column(String(10))
    plan_started_on: Mapped[date] = mapped_column(Date)
    time_zone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    payout_threshold_micros: Mapped[int] = mapped_column(BigInteger, server_default="0")
    stripe_connect_account_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SubAccountRow(Base):
    __tablename__ = "sub_account"
    __table_args__ = (
        # Exactly one Primary per agency: the database, not a check-then-insert, says so.
        partial_index(
            "uq_sub_account_one_primary",
            "agency_id",
            where="kind = 'PRIMARY'",
            unique=True,
        ),
        CheckConstraint("knowledge_pack_credits >= 0", name="kp_credits_not_negative"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(120))
    login_email: Mapped[str] = mapped_column(String(254), unique=True)
    status: Mapped[str] = mapped_column(String(10), server_default="ACTIVE")
    subscription_start_date: Mapped[date] = mapped_column(Date)
    balance_source: Mapped[str] = mapped_column(String(10), server_default="CUSTOMER")
    markup_basic_bp: Mapped[int] = mapped_column(Integer, server_default="0")
    markup_premium_bp: Mapped[int] = mapped_column(Integer, server_default="0")
    knowledge_pack_credits: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    suspension_note: Mapped[str | None] = mapped_column(String(150))
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When its spending cap was reached this billing period (None: not capped now).
    capped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Its Stripe Customer, made when its first card is added: the primary's is the agency's
    # (it pays for AGENCY-funded secondaries too); a CUSTOMER-funded secondary has its own.
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))


class UserRow(Base):
    __tablename__ = "app_user"
    __table_args__ = (
        # Exactly one owner per agency (at most one here; sign-up and transfer keep one).
        partial_index(
            "uq_app_user_one_owner",
            "agency_id",
            where="role = 'AGENCY_OWNER'",
            unique=True,
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    all_sub_accounts: Mapped[bool] = mapped_column(Boolean, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UserGrantRow(Base):
    """A sub-account granted to a user whose role is scoped to listed sub-accounts."""

    __tablename__ = "user_grant"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("app_user.id", ondelete="CASCADE"), primary_key=True
    )
    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )


class AuthSessionRow(Base):
    """A sign-in. Only the HMAC of the bearer token is kept."""

    __tablename__ = "auth_session"

    id: Mapped[uuid.UUID] = _uuid_pk()
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("app_user.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BalanceRow(Base):
    """Seconds left per tier; the row a minute movement locks. Never negative."""

    __tablename__ = "balance"
    __table_args__ = (CheckConstraint("seconds >= 0", name="seconds_not_negative"),)

    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )
    tier: Mapped[str] = mapped_column(String(10), primary_key=True)
    seconds: Mapped[int] = mapped_column(BigInteger, server_default="0")


class LedgerEntryRow(Base):
    """Append-only history of every minute movement; sums per (sub-account, tier) = balance."""

    __tablename__ = "ledger_entry"
    __table_args__ = (
        Index("ix_ledger_entry_account_tier", "sub_account_id", "tier"),
        # Reconciliation finds a purchase's credit by its reference; only purchases' credits
        # are indexed, so ingestion's entries cost nothing more.
        partial_index(
            "ix_ledger_entry_purchase",
            "reference",
            where="kind IN ('PURCHASE', 'AUTO_ALLOCATION')",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"), index=True)
    sub_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sub_account.id"))
    tier: Mapped[str] = mapped_column(String(10))
    delta_seconds: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(30))
    reference: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxRow(Base):
    """Events written with the change they announce; the relay sequences and publishes them."""

    __tablename__ = "outbox"
    __table_args__ = (
        partial_index(
            "ix_outbox_unsequenced",
            "id",
            where="sequence IS NULL",
        ),
        partial_index(
            "ix_outbox_unpublished",
            "sequence",
            where="sequence IS NOT NULL AND published_at IS NULL",
        ),
        # Both leave out the rows not yet numbered (migration 0020: the relay finds those
        # through `ix_outbox_unsequenced`, and a bitmap scan of an index holding them too
        # visited every row numbered since the last vacuum).
        partial_index(
            "uq_outbox_sequence",
            "sequence",
            where="sequence IS NOT NULL",
            unique=True,
        ),
        partial_index(
            "ix_outbox_topic_sequence",
            "topic",
            "sequence",
            where="sequence IS NOT NULL",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sequence: Mapped[int | None] = mapped_column(BigInteger)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    key: Mapped[str | None] = mapped_column(String(100))  # Event.key: who on the topic wants it


class InvitationRow(Base):
    __tablename__ = "invitation"
    __table_args__ = (Index("ix_invitation_email", "email"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(20))
    all_sub_accounts: Mapped[bool] = mapped_column(Boolean, server_default=false())
    invited_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("app_user.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InvitationGrantRow(Base):
    __tablename__ = "invitation_grant"

    invitation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invitation.id", ondelete="CASCADE"), primary_key=True
    )
    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )


class InvitationSecretRow(Base):
    """Every link ever sent for an invitation; only the newest is live (resend kills the old)."""

    __tablename__ = "invitation_secret"

    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    invitation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invitation.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiKeyRow(Base):
    """A credential for the platform's ingestion; only the HMAC of the secret is kept."""

    __tablename__ = "api_key"

    id: Mapped[uuid.UUID] = _uuid_pk()
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    scopes: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("app_user.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ActivityRow(Base):
    """A campaign, inbound agent or automation: we own only its on/off state."""

    __tablename__ = "activity"
    __table_args__ = (
        Index("ix_activity_sub_account_kind", "sub_account_id", "kind", "created_at"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    sub_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sub_account.id"))
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(10))
    # Set by suspension on exactly what it paused, so restore brings back exactly those.
    paused_by_suspension: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # Set by the spending cap on what it paused; an activity paused by both comes back only
    # when both are lifted.
    paused_by_cap: Mapped[bool] = mapped_column(Boolean, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AutoAllocationRow(Base):
    __tablename__ = "auto_allocation"

    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=false())
    basic_minutes: Mapped[int] = mapped_column(Integer, server_default="0")
    premium_minutes: Mapped[int] = mapped_column(Integer, server_default="0")
    # The agency's local date it was last turned on: periods starting before it are not charged.
    enabled_on: Mapped[date | None] = mapped_column(Date)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MinuteTransferRow(Base):
    """A transfer as the client saw it: what was sent, what arrived, at which prices."""

    __tablename__ = "minute_transfer"

    id: Mapped[uuid.UUID] = _uuid_pk()
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"), index=True)
    from_sub_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sub_account.id"))
    to_sub_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sub_account.id"))
    tier: Mapped[str] = mapped_column(String(10))
    sent_seconds: Mapped[int] = mapped_column(BigInteger)
    received_seconds: Mapped[int] = mapped_column(BigInteger)
    base_micros_per_minute: Mapped[int] = mapped_column(BigInteger)
    from_markup_bp: Mapped[int] = mapped_column(Integer)
    to_markup_bp: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IdempotencyKeyRow(Base):
    """A retried request with the same key returns the first answer and moves nothing twice."""

    __tablename__ = "idempotency_key"

    scope: Mapped[str] = mapped_column(String(80), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PlanGrantRow(Base):
    """One row per agency and plan period: the monthly grant happens exactly once."""

    __tablename__ = "plan_grant"

    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"), primary_key=True)
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CallRow(Base):
    """A call the platform reported; unique per agency on its external id (retries are free)."""

    __tablename__ = "call"
    __table_args__ = (
        UniqueConstraint("agency_id", "external_id"),
        # A sub-account's calls newest first, keyset-paged on (started_at, id): one index range.
        Index("ix_call_sub_account_started_id", "sub_account_id", "started_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    external_id: Mapped[str] = mapped_column(String(200))
    sub_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sub_account.id"))
    direction: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(12))
    tier: Mapped[str] = mapped_column(String(10))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[int] = mapped_column(Integer)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # What it cost, rounded once (the rollups add these): at the client price, at base cost;
    # the seconds its funding balance could not cover; whose balance paid.
    spent_micros: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cost_micros: Mapped[int] = mapped_column(BigInteger, server_default="0")
    overage_seconds: Mapped[int] = mapped_column(Integer, server_default="0")
    # No foreign key: it is the call's sub-account or its agency's primary, both checked by the
    # batch; a key check for every inserted row would be paid on ingestion's hottest statement.
    funded_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class UsageSums:
    """The summed columns of the rollups."""

    calls: Mapped[int] = mapped_column(BigInteger, server_default="0")
    seconds: Mapped[int] = mapped_column(BigInteger, server_default="0")
    overage_seconds: Mapped[int] = mapped_column(BigInteger, server_default="0")
    spent_micros: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cost_micros: Mapped[int] = mapped_column(BigInteger, server_default="0")
    inbound: Mapped[int] = mapped_column(BigInteger, server_default="0")
    outbound: Mapped[int] = mapped_column(BigInteger, server_default="0")
    completed: Mapped[int] = mapped_column(BigInteger, server_default="0")
    failed: Mapped[int] = mapped_column(BigInteger, server_default="0")
    no_answer: Mapped[int] = mapped_column(BigInteger, server_default="0")
    busy: Mapped[int] = mapped_column(BigInteger, server_default="0")
    voicemail: Mapped[int] = mapped_column(BigInteger, server_default="0")


class UsageQuarterRow(UsageSums, Base):
    """Rollup per sub-account, tier and UTC quarter hour, maintained on ingest.

    Every zone offset in use is a whole number of quarter hours, so a report reads here only
    what its local days and hours do not cover with whole UTC hours (a range in Asia/Kolkata
    starts and ends at half past a UTC hour; its HOUR series points too).
    """

    __tablename__ = "usage_quarter_hour"
    __table_args__ = (Index("ix_usage_quarter_hour_agency_quarter", "agency_id", "quarter_utc"),)

    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )
    tier: Mapped[str] = mapped_column(String(10), primary_key=True)
    quarter_utc: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))


class UsageHourlyRow(UsageSums, Base):
    """The same sums per UTC hour (exactly the sum of its quarters), maintained in the same
    transaction; reports read whole UTC hours here."""

    __tablename__ = "usage_hourly"
    __table_args__ = (Index("ix_usage_hourly_agency_hour", "agency_id", "hour_utc"),)

    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )
    tier: Mapped[str] = mapped_column(String(10), primary_key=True)
    hour_utc: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))


class UsageDailyRow(UsageSums, Base):
    """The same sums per UTC day, maintained in the same transaction as the hourly rows.

    A report range reads whole UTC days here and only its partial days at either end from
    `usage_hourly`: a 30-day agency report reads ~30 rows per client and tier, not ~720.
    """

    __tablename__ = "usage_daily"
    __table_args__ = (Index("ix_usage_daily_agency_day", "agency_id", "day_utc"),)

    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )
    tier: Mapped[str] = mapped_column(String(10), primary_key=True)
    day_utc: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)  # midnight UTC
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))


class UsagePeriodRow(Base):
    """A sub-account's use per billing period (from its subscription start's anniversaries, in
    the agency's zone), kept by ingestion in the batch's transaction: what live screens show as
    "this period" without summing rollups. Money is added exactly as the rollups add it.
    """

    __tablename__ = "usage_period"

    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)  # a local date
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    seconds: Mapped[int] = mapped_column(BigInteger, server_default="0")
    spent_micros: Mapped[int] = mapped_column(BigInteger, server_default="0")


class AgencyUsagePeriodRow(Base):
    """An agency's seconds used per plan period (plan start anniversaries, local): the live
    agency totals. One row per agency and period, updated last in each ingestion batch."""

    __tablename__ = "agency_usage_period"

    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"), primary_key=True)
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)
    seconds: Mapped[int] = mapped_column(BigInteger, server_default="0")


class AuditLogRow(Base):
    """Who changed what in an agency, one line each; written in the change's transaction and
    kept (it is not pruned with the outbox)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_agency_id", "agency_id", "id"),
        Index("ix_audit_log_agency_kind_id", "agency_id", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    kind: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    email: Mapped[str | None] = mapped_column(String(254))
    subject_type: Mapped[str | None] = mapped_column(String(40))
    subject_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    summary: Mapped[str] = mapped_column(Text)


class PaymentCardRow(Base):
    """A card attached to a payer's Stripe Customer (its PaymentMethod), listed from here."""

    __tablename__ = "payment_card"
    __table_args__ = (
        # One default card per payer: the database, not a check-then-update, says so.
        partial_index(
            "uq_payment_card_one_default",
            "payer_id",
            where="is_default",
            unique=True,
        ),
        Index("ix_payment_card_payer_created", "payer_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    payer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sub_account.id"))
    stripe_payment_method_id: Mapped[str] = mapped_column(String(255), unique=True)
    brand: Mapped[str] = mapped_column(String(30))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int] = mapped_column(Integer)
    exp_year: Mapped[int] = mapped_column(Integer)
    is_default: Mapped[bool] = mapped_column(Boolean, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PurchaseRow(Base):
    """Minutes bought with a card: written PENDING before Stripe is called, then SUCCEEDED
    (with its ledger credit, once) or FAILED. Money in micro-dollars (whole cents charged)."""

    __tablename__ = "purchase"
    __table_args__ = (
        # One auto allocation charge per sub-account, billing period and tier, whatever runs
        # at once (a client's own purchases have no period: NULLs never collide).
        UniqueConstraint("sub_account_id", "period_start", "tier"),
        Index("ix_purchase_sub_account_created", "sub_account_id", "created_at", "id"),
        Index("ix_purchase_agency_completed", "agency_id", "completed_at"),
        Index("ix_purchase_intent", "stripe_payment_intent_id"),
        partial_index(
            "ix_purchase_pending",
            "created_at",
            where="status = 'PENDING'",
        ),
        # At most one auto-recharge in flight per (sub-account, tier), whatever runs at once.
        partial_index(
            "uq_purchase_recharge_in_flight",
            "sub_account_id",
            "tier",
            where="kind = 'AUTO_RECHARGE' AND status = 'PENDING'",
            unique=True,
        ),
        # Failed auto allocation charges waiting for their next attempt.
        partial_index(
            "ix_purchase_retry",
            "next_attempt_at",
            where="next_attempt_at IS NOT NULL",
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    sub_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sub_account.id"))
    payer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sub_account.id"))
    kind: Mapped[str] = mapped_column(String(20))
    tier: Mapped[str] = mapped_column(String(10))
    seconds: Mapped[int] = mapped_column(BigInteger)
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    profit_micros: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, server_default="1")
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    stripe_customer_id: Mapped[str] = mapped_column(String(255))
    stripe_payment_method_id: Mapped[str | None] = mapped_column(String(255))
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    period_start: Mapped[date | None] = mapped_column(Date)  # auto allocations: the period
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StripeEventRow(Base):
    """A Stripe webhook event applied: its id, written in the transaction that applied it,
    so a replayed delivery changes nothing."""

    __tablename__ = "stripe_event"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PayoutRow(Base):
    """Unpaid earnings sent to the agency's Connect account: PENDING before the Stripe
    Transfer (whose Idempotency-Key is this row's id), then PAID or FAILED."""

    __tablename__ = "payout"
    __table_args__ = (
        Index("ix_payout_agency_created", "agency_id", "created_at", "id"),
        partial_index(
            "ix_payout_pending",
            "created_at",
            where="status = 'PENDING'",
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10))
    destination: Mapped[str] = mapped_column(String(255))
    stripe_transfer_id: Mapped[str | None] = mapped_column(String(255))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    requested_by: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PhoneLineRow(Base):
    """A phone line of an agency: in one sub-account, or in the Available pool
    (`sub_account_id` NULL). Released lines stay (their history is billed), marked by
    `released_at`; a number is unique among an agency's unreleased lines."""

    __tablename__ = "phone_line"
    __table_args__ = (
        # The database, not a check-then-insert, keeps a number to one live line per agency;
        # a released number may be added again.
        partial_index(
            "uq_phone_line_live_number",
            "agency_id",
            "number",
            where="released_at IS NULL",
            unique=True,
        ),
        # The pool and each sub-account's lines, paged by (created_at, id).
        Index("ix_phone_line_holder", "agency_id", "sub_account_id", "created_at", "id"),
        CheckConstraint("monthly_price_micros >= 0", name="price_not_negative"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    sub_account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sub_account.id"))
    number: Mapped[str] = mapped_column(String(16))  # E.164: + and at most 15 digits
    monthly_price_micros: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LineHoldingRow(Base):
    """Who held a line over which agency-local days, one row per holding, half-open
    [from_date, to_date): a move closes the open row and opens the next one, so billing can
    prorate by days and nothing rewrites the past. `sub_account_id` NULL is the pool."""

    __tablename__ = "line_holding"
    __table_args__ = (
        # At most one open holding per line, whatever runs at once.
        partial_index(
            "uq_line_holding_open",
            "line_id",
            where="to_date IS NULL",
            unique=True,
        ),
        Index("ix_line_holding_line", "line_id", "from_date"),
        Index("ix_line_holding_agency_dates", "agency_id", "from_date"),
        CheckConstraint("to_date IS NULL OR to_date >= from_date", name="ends_after_start"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("phone_line.id"))
    sub_account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sub_account.id"))
    from_date: Mapped[date] = mapped_column(Date)
    to_date: Mapped[date | None] = mapped_column(Date)


class BillingAdjustmentRow(Base):
    """A discount or credit an owner or agency admin gave a sub-account, dated (agency-local)
    for the billing summary of the range it falls in. Kept as given: never edited."""

    __tablename__ = "billing_adjustment"
    __table_args__ = (
        # The summary reads an agency's adjustments by date.
        Index("ix_billing_adjustment_agency_dated_on", "agency_id", "dated_on"),
        CheckConstraint("amount_micros > 0", name="amount_positive"),
        CheckConstraint("kind IN ('DISCOUNT', 'CREDIT')", name="kind_known"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    sub_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sub_account.id"))
    kind: Mapped[str] = mapped_column(String(10))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(Text)
    dated_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MergeRequestRow(Base):
    """A request to merge one secondary (source) into another (target): PENDING until a
    different owner or admin approves or rejects it. One PENDING request per source."""

    __tablename__ = "merge_request"
    __table_args__ = (
        # The database, not a check-then-insert, keeps a source to one pending request.
        partial_index(
            "uq_merge_request_pending_source",
            "source_id",
            where="status = 'PENDING'",
            unique=True,
        ),
        # Agency.mergeRequests, paged by (requested_at, id).
        Index("ix_merge_request_agency", "agency_id", "requested_at", "id"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sub_account.id"))
    target_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sub_account.id"))
    status: Mapped[str] = mapped_column(String(10))
    note: Mapped[str | None] = mapped_column(String(500))
    # Who asked and who decided, kept (id and email) after they leave the team: no foreign
    # key, so removing a user leaves the request naming them.
    requested_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    requested_by_email: Mapped[str] = mapped_column(String(254))
    decided_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    decided_by_email: Mapped[str | None] = mapped_column(String(254))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MergedAccountRow(Base):
    """A merged sub-account: the account it merged into, and the live account its history
    rolls up into now (`owner_id`: the end of the chain when that one merged on in turn).
    Reports of an account read its own rollups and those of the accounts it owns."""

    __tablename__ = "merged_account"
    __table_args__ = (Index("ix_merged_account_owner", "owner_id"),)

    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )
    merged_into_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sub_account.id"))
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sub_account.id"))
    merged_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MessageRow(Base):
    """A message the platform reported: unique per agency on its external id."""

    __tablename__ = "message"
    __table_args__ = (
        UniqueConstraint("agency_id", "external_id"),
        Index("ix_message_sub_account_sent", "sub_account_id", "sent_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    external_id: Mapped[str] = mapped_column(String(200))
    sub_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sub_account.id"))
    conversation_id: Mapped[str] = mapped_column(String(200))
    direction: Mapped[str] = mapped_column(String(10))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ConversationRow(Base):
    """A thread with one contact in one sub-account, as its messages so far make it: opened by
    its earliest message (by time; ties by external id), and its latest inbound message, so
    that "responded" (opened outbound, an inbound one later) is exact whatever the arrival order.
    """

    __tablename__ = "conversation"

    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )
    external_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    opened_by: Mapped[str] = mapped_column(String(200))
    opened_direction: Mapped[str] = mapped_column(String(10))
    latest_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MessagingQuarterRow(Base):
    """Messages and conversations per sub-account and UTC quarter hour (a conversation counts
    in the quarter it opened), maintained on ingest: what messaging figures read."""

    __tablename__ = "messaging_quarter_hour"

    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )
    quarter_utc: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    sent: Mapped[int] = mapped_column(BigInteger, server_default="0")
    received: Mapped[int] = mapped_column(BigInteger, server_default="0")
    new_outbound: Mapped[int] = mapped_column(BigInteger, server_default="0")
    new_inbound: Mapped[int] = mapped_column(BigInteger, server_default="0")
    responded: Mapped[int] = mapped_column(BigInteger, server_default="0")


class MessagingLimitRow(Base):
    """Outbound messages a sub-account may send per billing period (no row: no limit)."""

    __tablename__ = "messaging_limit"

    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )
    monthly_limit: Mapped[int] = mapped_column(Integer)


class WebhookEndpointRow(Base):
    """An agency's URL for signed events. The signing secret must be read back to sign, so it
    is kept sealed (Fernet, a key derived from SECRET_KEY), never in clear."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[uuid.UUID] = _uuid_pk()
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[str] = mapped_column(String(300))  # the kinds, space-separated
    enabled: Mapped[bool] = mapped_column(Boolean)
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDeliveryRow(Base):
    """One event on its way to one endpoint, written in the transaction that caused the event;
    its id is the endpoint's order. PENDING until a 2xx answer (DELIVERED) or until retries
    run out (FAILED)."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_endpoint_id", "endpoint_id", "id"),
        # the worker's queue: each endpoint's oldest pending delivery
        partial_index(
            "ix_webhook_delivery_pending",
            "endpoint_id",
            "id",
            where="status = 'PENDING'",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoint.id"))
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(40))
    sub_account_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    data: Mapped[str] = mapped_column(Text)  # JSON
    test: Mapped[bool] = mapped_column(Boolean)  # a ping
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer)
    last_response_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AutoRechargeRow(Base):
    """A sub-account's threshold auto-recharge (one tier), and its backoff after a failure."""

    __tablename__ = "auto_recharge"

    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=false())
    tier: Mapped[str] = mapped_column(String(10))
    threshold_minutes: Mapped[int] = mapped_column(Integer)
    top_up_minutes: Mapped[int] = mapped_column(Integer)
    # The last recharge's purchase (shown as lastCharge).
    last_purchase_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("purchase.id"))
    # After a failure: no new attempt before `blocked_until` unless the payer's default card
    # is no longer `blocked_card`.
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    blocked_card: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AutoRechargeRequestRow(Base):
    """A debit left a tier below its threshold: written in the debit's transaction, taken by
    the auto-recharge job. One per (sub-account, tier); `purchase_id` is the recharge in
    flight (at most one)."""

    __tablename__ = "auto_recharge_request"

    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )
    tier: Mapped[str] = mapped_column(String(10), primary_key=True)
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    purchase_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("purchase.id"))


class SpendingCapRow(Base):
    """A secondary's monthly spending cap, in micro-dollars."""

    __tablename__ = "spending_cap"

    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CapCheckRow(Base):
    """Ingestion saw a sub-account's spending reach its cap: the cap job pauses it (it takes
    the sub-account's row, which ingestion never does)."""

    __tablename__ = "cap_check"

    sub_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sub_account.id"), primary_key=True
    )
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertRow(Base):
    """An alert mail: at most one per (sub-account, kind, local day), written in the
    transaction that raised it and sent by the alert job (`sent_at`)."""

    __tablename__ = "alert"
    __table_args__ = (
        UniqueConstraint("sub_account_id", "kind", "day"),
        partial_index(
            "ix_alert_unsent",
            "created_at",
            where="sent_at IS NULL",
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agency.id"))
    sub_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sub_account.id"))
    kind: Mapped[str] = mapped_column(String(30))
    day: Mapped[date] = mapped_column(Date)
    data: Mapped[str] = mapped_column(Text)  # JSON
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
