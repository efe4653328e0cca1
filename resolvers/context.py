"""What every resolver receives: the app's services and this request's viewer and loaders.

A request never shares one database session between resolvers: reads go through DataLoaders
(each batch on its own short connection) and each mutation opens its own unit of work.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, TypeVar
from uuid import UUID

from strawberry.dataloader import DataLoader

from domain.agency import Agency, SubAccount, User
from domain.api_key import ApiKey
from domain.audit import Actor
from domain.auto_allocation import AutoAllocation
from domain.auto_recharge import AutoRecharge
from domain.errors import AccessDenied, DomainError, ErrorCode, NotAuthenticated, TryAgain
from domain.ledger import Balance
from domain.payments import PaymentCard, Purchase
from domain.policy import Viewer
from domain.pricing import PriceBook
from domain.reporting import HealthThresholds
from domain.usage import MAX_BATCH, LastSeenBalances
from domain.webhooks import RetrySchedule
from persistence import (
    auto_recharge,
    lines,
    live,
    merges,
    messaging,
    payment_cards,
    purchases,
    spending_caps,
    team,
)
from persistence.api_keys import api_key_by_secret
from persistence.broker import Broker
from persistence.database import Database
from persistence.mail import Mailer
from persistence.outbox import Replays
from persistence.queries import loaders as batch
from persistence.queries import sub_accounts as sub_account_queries
from persistence.queries.session import SessionContext, load_session
from persistence.rate_limit import RateLimiter
from persistence.stripe_gateway import StripeGateway
from persistence.unit_of_work import RetryPolicy, UnitOfWork, transact
from persistence.webhook_sender import Resolver, resolve_host
from resolvers.group_commit import GroupCommit
from resolvers.security import API_KEY_PREFIX, Passwords, Tokens, bearer_token

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


@dataclass(frozen=True)
class LoginLimits:
    per_email: int
    per_client: int
    window_seconds: int


@dataclass
class Services:
    """Built once per process by the app's lifespan."""

    database: Database
    broker: Broker
    passwords: Passwords
    tokens: Tokens
    clock: Callable[[], datetime]
    wake_relay: Callable[[], None]
    session_ttl: timedelta
    subscriber_queue_size: int
    mailer: Mailer
    rate_limiter: RateLimiter
    public_url: str
    mail_from: str
    login_limits: LoginLimits
    prices: PriceBook = field(default_factory=PriceBook)
    # What ingestion saw of balances last, to insert calls with the overage they will likely
    # have (domain.usage.expected_short_calls).
    last_balances: LastSeenBalances = field(default_factory=LastSeenBalances)
    removed_retention: timedelta = timedelta(days=30)
    health: HealthThresholds = field(default_factory=HealthThresholds)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Small recordCalls requests of one agency, billed together (resolvers/group_commit.py).
    # Grouped by API key, checked in the group's transaction: a bad key fails the whole group.
    ingestion_groups: GroupCommit = field(
        default_factory=lambda: GroupCommit(
            MAX_BATCH, shared=(TryAgain, NotAuthenticated, AccessDenied)
        )
    )
    stripe: StripeGateway | None = None  # None: STRIPE_SECRET_KEY is not set
    # Outgoing webhooks: how host names are resolved (tests replace it) and when failed
    # deliveries are tried again.
    resolve_host: Resolver = field(default=resolve_host)
    webhook_retries: RetrySchedule = field(default_factory=RetrySchedule)
    webhook_tls: ssl.SSLContext | bool = True  # certificates checked against the system's CAs
    webhook_allow_loopback: bool = True  # WEBHOOK_ALLOW_LOOPBACK
    # A job's wake-up in this process (`agencyhub.background.JobRunner` waits on it between
    # turns): set after a commit that wrote work for it (`UnitOfWork.wake`).
    job_wakeups: dict[str, asyncio.Event] = field(default_factory=dict)

    def wakeup(self, job: str) -> asyncio.Event:
        return self.job_wakeups.setdefault(job, asyncio.Event())

    def wake_job(self, job: str) -> None:
        self.wakeup(job).set()

    def payments(self) -> StripeGateway:
        """Stripe, for a use case that moves money; without a key, every one of them answers
        PAYMENTS_NOT_CONFIGURED (and nothing else is affected)."""
        if self.stripe is None:
            raise DomainError(
                ErrorCode.PAYMENTS_NOT_CONFIGURED,
                "Payments are not configured on this server (STRIPE_SECRET_KEY).",
            )
        return self.stripe

    @cached_property
    def replays(self) -> Replays:
        """What live streams catch up from after a broker (re)subscription."""
        return Replays(self.database)

    def uow(self, audited: bool = False) -> UnitOfWork:
        """One unit of work, not retried: production code goes through `transact`."""
        return UnitOfWork(self.database, self.clock, self.wake_relay, audited, self.wake_job)

    async def transact(
        self, work: Callable[[UnitOfWork], Awaitable[T]], *, audited: bool = True
    ) -> T:
        """`work` in a fresh unit of work, committed; run again after a deadlock or a
        serialization failure, so it must build everything it returns inside itself.

        Every change through the API is audited: committing one without `uow.audit(...)`
        fails. The platform's usage reports and the jobs pass `audited=False`."""
        return await transact(lambda: self.uow(audited), work, self.retry)


class Loaders:
    """The request's DataLoaders, created on first use. `cache=False` for long-lived sockets."""

    def __init__(
        self,
        database: Database,
        cache: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._database = database
        self._cache = cache
        self._clock = clock

    def _loader(
        self, query: Callable[[Any, Sequence[K]], Awaitable[Sequence[V]]]
    ) -> DataLoader[K, V]:
        async def load(keys: list[K]) -> Sequence[V]:
            async with self._database.read() as conn:
                return await query(conn, keys)

        return DataLoader(load_fn=load, cache=self._cache)

    @cached_property
    def agency_by_id(self) -> DataLoader[UUID, Agency | None]:
        return self._loader(batch.agencies_by_id)

    @cached_property
    def sub_account_by_id(self) -> DataLoader[UUID, SubAccount | None]:
        return self._loader(batch.sub_accounts_by_id)

    @cached_property
    def primary_sub_account_by_agency(self) -> DataLoader[UUID, SubAccount | None]:
        return self._loader(batch.primary_sub_accounts_by_agency)

    @cached_property
    def user_by_id(self) -> DataLoader[UUID, User | None]:
        return self._loader(batch.users_by_id)

    @cached_property
    def grants_by_user(self) -> DataLoader[UUID, list[UUID]]:
        return self._loader(team.user_grants)

    @cached_property
    def auto_allocation_by_sub_account(self) -> DataLoader[UUID, AutoAllocation]:
        return self._loader(sub_account_queries.auto_allocations)

    @cached_property
    def last_auto_allocation_charge(self) -> DataLoader[UUID, Purchase | None]:
        return self._loader(purchases.last_auto_allocation_charges)

    @cached_property
    def balances_by_sub_account(self) -> DataLoader[UUID, list[Balance]]:
        return self._loader(batch.balances_by_sub_account)

    @cached_property
    def cards_by_payer(self) -> DataLoader[UUID, list[PaymentCard]]:
        return self._loader(payment_cards.cards_of_payers)

    @cached_property
    def line_count_by_sub_account(self) -> DataLoader[UUID, int]:
        return self._loader(lines.line_counts)

    @cached_property
    def merged_into_by_sub_account(self) -> DataLoader[UUID, UUID | None]:
        return self._loader(merges.merged_into)

    @cached_property
    def messaging_limit_by_sub_account(self) -> DataLoader[UUID, int | None]:
        return self._loader(messaging.monthly_limits)

    @cached_property
    def auto_recharge_by_sub_account(self) -> DataLoader[UUID, AutoRecharge]:
        return self._loader(auto_recharge.settings_of)

    @cached_property
    def purchase_by_id(self) -> DataLoader[UUID, Purchase | None]:
        return self._loader(purchases.purchases_by_id)

    @cached_property
    def spending_cap_by_sub_account(self) -> DataLoader[UUID, int | None]:
        return self._loader(spending_caps.caps_of)

    @cached_property
    def spent_this_period(self) -> DataLoader[SubAccount, int]:
        """What each sub-account spent (client price, micro-dollars) in its billing period
        under way where its agency is: one statement for a page of one agency's accounts."""

        async def load(accounts: list[SubAccount]) -> list[int]:
            agency_ids = list(dict.fromkeys(a.agency_id for a in accounts))
            agencies = await self.agency_by_id.load_many(agency_ids)
            used: dict[UUID, tuple[int, int]] = {}
            async with self._database.read() as conn:
                for agency in agencies:
                    assert agency is not None, "a sub-account's agency outlives it"
                    mine = [a for a in accounts if a.agency_id == agency.id]
                    now = self._clock()
                    used |= await live.this_period_use(conn, mine, agency.time_zone, now)
            return [used.get(a.id, (0, 0))[1] for a in accounts]

        return DataLoader(load_fn=load, cache=self._cache)


def usable_api_key(key: ApiKey | None, scope: str) -> ApiKey:
    """`key`, as looked up by a request's secret, if it is live and has `scope`."""
    if key is None:
        raise NotAuthenticated("The API key is invalid or revoked.")
    if scope not in key.scopes:
        raise AccessDenied(f"this API key lacks the {scope!r} scope")
    return key


class RequestContext:
    """Per HTTP request, or per WebSocket connection (then `connection_params` holds the auth)."""

    def __init__(
        self,
        services: Services,
        authorization: str | None,
        long_lived: bool = False,
        client_host: str | None = None,
    ) -> None:
        self.services = services
        self._authorization = authorization
        self.client_host = client_host
        self.connection_params: dict[str, Any] | None = None
        self.api_key_agency_id: UUID | None = None  # once an API key checked out (request logs)
        self.loaders = Loaders(services.database, cache=not long_lived, clock=services.clock)
        self._session: asyncio.Future[SessionContext | None] | None = None

    @property
    def token(self) -> str | None:
        header = self._authorization
        if header is None and self.connection_params:
            header = self.connection_params.get("authorization") or self.connection_params.get(
                "Authorization"
            )
        return bearer_token(header) if isinstance(header, str) else None

    async def session(self) -> SessionContext | None:
        """The signed-in session, looked up once however many fields ask: the first to ask
        looks it up itself (a task per request for it cost as much as the lookup's
        statement), and the others wait for what it finds; one of those cancelled (a sibling
        field failed) leaves the lookup alone."""
        loading = self._session
        if loading is not None:
            return await asyncio.shield(loading)
        loading = self._session = asyncio.get_running_loop().create_future()
        try:
            found = await self._load_session()
        except asyncio.CancelledError:
            loading.cancel()
            raise
        except BaseException as error:
            loading.set_exception(error)
            loading.exception()  # not left unretrieved: this caller raises it
            raise
        loading.set_result(found)
        return found

    async def _load_session(self) -> SessionContext | None:
        token = self.token
        if token is None or token.startswith(API_KEY_PREFIX):
            return None
        digest = self.services.tokens.digest(token)
        session = await load_session(self.services.database, digest, self.services.clock())
        if session is not None:  # fresher than anything the loaders may hold
            self.loaders.agency_by_id.prime(session.agency.id, session.agency, force=True)
        return session

    def loaded_viewer(self) -> Viewer | None:
        """The viewer, if the session is loaded already (synchronous code may ask)."""
        loaded = self._session
        if loaded is None or not loaded.done() or loaded.cancelled() or loaded.exception():
            return None
        session = loaded.result()
        return session.viewer if session is not None else None

    def forget_session(self) -> None:
        """Look the session up again on next use (a long-lived socket whose access changed)."""
        self._session = None

    async def require_api_key(self, scope: str) -> ApiKey:
        """The platform's credential for ingestion, with the scope the operation needs."""
        key = await api_key_by_secret(self.services.database, self.api_key_digest())
        self.api_key_agency_id = key.agency_id if key is not None else None
        return usable_api_key(key, scope)

    def api_key_digest(self) -> bytes:
        """What the request's API key is looked up by (ingestion looks it up in its own
        transaction, then checks it with `usable_api_key`)."""
        token = self.token
        if token is None or not token.startswith(API_KEY_PREFIX):
            raise NotAuthenticated("Send an API key: Authorization: Bearer ahk_…")
        return self.services.tokens.digest(token)

    def sign_in_as(self, token: str) -> None:
        """After sign-up or login, the rest of the response is resolved as the new user."""
        self._authorization = f"Bearer {token}"
        self._session = None

    async def require_session(self) -> SessionContext:
        session = await self.session()
        if session is None:
            if self.token is None:
                raise NotAuthenticated("Sign in first: send Authorization: Bearer <token>.")
            raise NotAuthenticated("The token is invalid, expired or revoked; sign in again.")
        return session

    async def viewer(self) -> Viewer:
        return (await self.require_session()).viewer

    async def actor(self) -> Actor:
        """Who the audit log names for this request's changes."""
        session = await self.require_session()
        return Actor(session.agency.id, session.user.email)
