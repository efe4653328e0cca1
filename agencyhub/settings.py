"""Settings from the environment (or a `.env` file).

With nothing set, the server runs on the embedded default: a SQLite file and an in-process
broker under `DATA_DIR`, a development secret kept there, and mail written as .eml files.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.money import dollars_to_micros
from domain.pricing import PriceBook
from domain.reporting import HealthThresholds


class ConfigurationError(ValueError):
    """Settings the server cannot start with; the command line prints it as one line."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str | None = None  # postgresql+asyncpg://… ; default: SQLite in DATA_DIR
    redis_url: str | None = None  # redis://… ; default: in-process broker
    # Required with DATABASE_URL; in the embedded default: generated once into DATA_DIR.
    secret_key: SecretStr | None = None
    # Payments (Stripe). Without a secret key, payment mutations answer PAYMENTS_NOT_CONFIGURED.
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None  # whsec_…: verifies POST /webhooks/stripe
    stripe_api_base: str | None = None  # a Stripe-compatible server instead of api.stripe.com
    stripe_max_network_retries: int = Field(default=2, ge=0)  # safe: every POST has a key
    # The payment jobs the server runs itself (one process of the deployment at a time); off,
    # they are left to cron (`agencyhub reconcile-payments`, …).
    server_jobs: bool = True
    reconcile_payments_seconds: float = Field(default=300, gt=0)
    # How often the webhook worker looks for deliveries queued by other processes and for
    # retries that came due (a commit in its own process wakes it at once).
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    # Webhook endpoints on loopback (for development, as the SPEC allows); in production, where
    # loopback reaches the server's own host and its neighbours' ports, turn it off.
    webhook_allow_loopback: bool = True
    mail_url: str | None = None  # smtp://user:pass@host:port ; default: .eml files in MAIL_DIR
    mail_dir: Path | None = None
    mail_from: str = "agencyhub <no-reply@agencyhub.invalid>"
    public_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1)  # server processes for `serve`
    data_dir: Path = Path("data")

    access_log: bool = True  # one log line per HTTP request (agencyhub/observability.py)
    graphiql: bool = True  # the in-browser IDE at /graphql; turn off in production
    auto_migrate: bool | None = None  # default: on for the embedded SQLite, off otherwise
    session_ttl_hours: int = Field(default=24 * 14, ge=1)
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=1024)
    # Brute force: failed or not, sign-in attempts per window, by email and by client address.
    login_attempts_per_email: int = 10
    login_attempts_per_client: int = 100
    login_window_seconds: int = 900
    # GraphQL requests a minute per session token or API key (per client address without a
    # token): one HTTP request, or one operation over WebSocket, counts once. 0: no limit.
    rate_limit_per_minute: int = Field(default=1_200, ge=0)
    # Automatic persisted queries (Apollo's persisted-query link): texts kept by their SHA-256,
    # in Redis with REDIS_URL (each for this long after its last use), else in process (the
    # most recently used). Longer texts run but are not kept.
    persisted_query_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    persisted_query_max_entries: int = Field(default=10_000, ge=1)
    persisted_query_max_bytes: int = Field(default=32_768, ge=0)
    db_pool_size: int = Field(default=10, ge=1)
    # A round trip per checkout to test each pooled connection. Off: a connection the server
    # closed (a restart) is replaced at checkout anyway (persistence/database.py).
    db_pool_pre_ping: bool = False

    # Operations (docs/DEPLOYMENT.md). Logs: json, console, or auto (console on a terminal).
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    # /metrics: with a token, `Authorization: Bearer <token>`; without, loopback clients only.
    metrics_token: SecretStr | None = None
    metrics_sample_seconds: float = Field(default=10.0, ge=0)  # outbox backlog, pools; 0: off

    # Request limits: each refused with a clear error.
    max_body_bytes: int = 1_000_000
    max_query_depth: int = 10
    max_aliases: int = 15
    max_tokens: int = 2_000
    # Items a query may ask for, its page sizes multiplied through nested connections
    # (schema/cost.py); above it: QUERY_TOO_COSTLY before anything runs. 0: no limit.
    query_cost_limit: int = Field(default=1_000, ge=0)
    max_subscriptions_per_connection: int = 100
    ws_connection_init_timeout_seconds: float = 10.0
    # A graphql-transport-ws `ping` on sockets quiet this long, so proxies keep idle screens.
    ws_keepalive_seconds: float = Field(default=15.0, ge=0)  # 0: no pings
    ws_per_message_deflate: bool = True  # with small windows (agencyhub/websocket.py)
    # Browser front ends on other origins: exact origins, comma-separated
    # ("https://app.example,https://admin.example"). None by default.
    cors_allowed_origins: str = ""
    subscriber_queue_size: int = 256
    # Net allocations between collections of the youngest generation (CPython's default: 700);
    # larger lets a request's short-lived objects die before they are promoted to the
    # collections that walk everything promoted (agencyhub/collector.py).
    gc_young_threshold: int = Field(default=5000, ge=100)

    outbox_poll_seconds: float = 0.5
    outbox_retention_hours: int = Field(default=24, ge=1)  # how far back afterSequence reaches

    # The price book: what the platform charges the agency per minute (USD, exact decimals).
    price_basic_per_minute: Decimal = Decimal("0.18")
    price_premium_per_minute: Decimal = Decimal("0.30")
    price_web_widget_basic_per_minute: Decimal = Decimal("0.16")
    removed_retention_days: int = Field(default=30, ge=0)

    # Account health flags in reports (see README, "Reports and account health").
    health_low_balance_runway_days: int = Field(default=7, ge=0)
    health_burn_window_days: int = Field(default=7, ge=1, le=90)
    health_usage_drop_ratio: Decimal = Field(default=Decimal("0.5"), ge=0, le=1)
    health_failure_rate: Decimal = Field(default=Decimal("0.2"), ge=0, le=1)
    health_failure_min_calls: int = Field(default=10, ge=1)

    @field_validator(
        "secret_key", "stripe_secret_key", "stripe_webhook_secret", "metrics_token", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `SECRET_KEY=` in a .env file would otherwise hash every token with an empty key
        # (and an empty Stripe key would count as payments configured).
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'agencyhub.sqlite3').resolve()}"

    @property
    def allowed_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_allowed_origins.split(",") if o.strip()]

    @property
    def is_embedded(self) -> bool:
        return not self.database_url

    @property
    def should_auto_migrate(self) -> bool:
        return self.is_embedded if self.auto_migrate is None else self.auto_migrate

    @property
    def effective_mail_dir(self) -> Path:
        return self.mail_dir or self.data_dir / "mail"

    def secret(self) -> bytes:
        """The key of every token hash. With DATABASE_URL it must be set: a key generated per
        host would make each server refuse the others' tokens. The embedded default generates
        one into DATA_DIR once."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        if not self.is_embedded:
            raise ConfigurationError(
                "SECRET_KEY is required with DATABASE_URL: every server process must hash "
                "tokens with the same key (make one with: python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(48))')."
            )
        return embedded_secret(self.data_dir / "secret_key")

    def health_thresholds(self) -> HealthThresholds:
        return HealthThresholds(
            low_balance_runway_days=self.health_low_balance_runway_days,
            burn_window_days=self.health_burn_window_days,
            usage_drop_ratio=self.health_usage_drop_ratio,
            failure_rate=self.health_failure_rate,
            failure_min_calls=self.health_failure_min_calls,
        )

    def price_book(self) -> PriceBook:
        return PriceBook(
            dollars_to_micros(self.price_basic_per_minute),
            dollars_to_micros(self.price_premium_per_minute),
            dollars_to_micros(self.price_web_widget_basic_per_minute),
        )


def embedded_secret(path: Path) -> bytes:
    """The key kept at `path`, made on first use. Processes starting together (a server and a
    job, or `seed-demo`) must all get the same, whole key: it is written to a temporary file
    and linked into place, so `path` never holds a partial key, and the first link wins."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48))
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_text().strip()
    if not key:
        raise ConfigurationError(f"{path} is empty: delete it to have a new key made.")
    return key.encode()
