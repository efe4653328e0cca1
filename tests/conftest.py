"""Infrastructure fixtures: databases (PostgreSQL and SQLite), brokers (Redis and in-process),
the app over ASGI, and a movable clock. Data comes from the factories in tests/factories.py.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from agencyhub.app import create_app
from agencyhub.settings import Settings
from persistence.broker import Broker, InProcessBroker, RedisBroker
from persistence.database import Database
from persistence.migrate import upgrade
from persistence.tables import Base
from persistence.unit_of_work import retryable_sqlstate
from tests.payment_provider import SECRET_KEY, WEBHOOK_SECRET, LocalStripe, local_stripe

PG_ADMIN_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKENDS = ("postgresql", "sqlite")


def pg_url_for(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
async def databases(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, str]]:
    """One fresh, migrated database per backend for the whole run, dropped afterwards."""
    name = f"agencyhub_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    urls = {
        "postgresql": pg_url_for(name),
        "sqlite": f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.sqlite3'}",
    }
    for url in urls.values():
        database = Database(url)
        await upgrade(database.engine)
        await database.dispose()
    yield urls
    for cleaner in _cleaners.values():
        await cleaner.dispose()
    _cleaners.clear()
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


_cleaners: dict[str, Database] = {}  # one engine per test database, for empty_all_tables
_RESTART_SEQUENCES = text(
    "DO $$ DECLARE s record; BEGIN FOR s IN SELECT sequencename FROM pg_sequences "
    "WHERE schemaname = current_schema() LOOP "
    "EXECUTE format('ALTER SEQUENCE %I RESTART', s.sequencename); END LOOP; END $$"
)


async def empty_all_tables(url: str) -> None:
    """Every table emptied, ids restarting at 1. DELETE, children first: on tables this small
    PostgreSQL deletes in about a tenth of the time TRUNCATE takes (which recreates files),
    and every database test, and every hypothesis example that needs a clean state, pays it."""
    database = _cleaners.get(url)
    if database is None:
        database = _cleaners[url] = Database(url)
    for attempt in range(5):
        try:
            async with database.transaction() as conn:
                for table in reversed(Base.metadata.sorted_tables):
                    await conn.execute(text(f"DELETE FROM {table.name}"))
                if not database.is_sqlite:
                    await conn.execute(_RESTART_SEQUENCES)
            return
        except DBAPIError as error:
            # The app under test is still running (its outbox relay updates rows while this
            # deletes them): PostgreSQL may break the deadlock by rolling this back. Again.
            if retryable_sqlstate(error) is None or attempt == 4:
                raise


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, databases: dict[str, str]) -> str:
    """Each test runs on PostgreSQL and on SQLite, starting from empty tables."""
    url = databases[request.param]
    await empty_all_tables(url)
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    yield db
    await db.dispose()


@pytest.fixture(params=("redis", "in-process"))
def broker_url(request: pytest.FixtureRequest) -> str | None:
    return REDIS_URL if request.param == "redis" else None


@pytest.fixture
async def broker(broker_url: str | None) -> AsyncIterator[Broker]:
    b: Broker = RedisBroker(broker_url) if broker_url else InProcessBroker()
    await b.start()
    if isinstance(b, RedisBroker):
        await asyncio.wait_for(b.wait_ready(), 5)
    yield b
    await b.close()


class Clock:
    """A clock tests can move; the app reads it through Services.clock."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_settings(
    tmp_path: Path, database_url: str, redis_url: str | None = None, **overrides: object
) -> Settings:
    """Cheap argon2 parameters keep the suite fast; production keeps the library's defaults."""
    values: dict[str, object] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "secret_key": "test-secret",
        "data_dir": tmp_path,
        "auto_migrate": False,
        "outbox_poll_seconds": 0.05,
        "mail_dir": tmp_path / "mail",
        "public_url": "https://app.example",
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "server_jobs": False,  # a test runs the jobs it means to, when it means to
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture(scope="session")
def stripe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    """A Stripe-compatible server (localstripe) for the whole session of this worker."""
    with local_stripe(tmp_path_factory.mktemp("localstripe")) as server:
        yield server


def stripe_settings(server: LocalStripe) -> dict[str, object]:
    """What points the app at the test's Stripe (no retries: a test sees each request)."""
    return {
        "stripe_secret_key": SECRET_KEY,
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_api_base": server.url,
        "stripe_max_network_retries": 0,
    }


@pytest.fixture
async def app_client(settings: Settings, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    """The real ASGI app (lifespan included) with an HTTP client in front of it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.services.clock = clock
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture(scope="session")
def anyio_backend() -> Iterator[str]:
    yield "asyncio"
