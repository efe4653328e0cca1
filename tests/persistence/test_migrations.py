"""The migrations build exactly the tables the code declares, on both databases."""

import uuid
from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from domain.agency import SubAccountKind, sign_up
from persistence.agencies import add_agency, add_sub_account
from persistence.database import Database
from persistence.migrate import upgrade
from persistence.tables import Base
from persistence.usage import daily_t, rollup_t
from tests.conftest import PG_ADMIN_URL, pg_url_for


async def test_migrated_schema_matches_the_models(database):
    def diff(sync_conn):
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with database.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_0005_fills_the_daily_rollup_from_existing_hourly_rows(tmp_path):
    """An installation upgraded with usage already recorded gets its days summed."""
    name = f"agencyhub_mig_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    urls = [pg_url_for(name), f"sqlite+aiosqlite:///{tmp_path / 'mig.sqlite3'}"]
    hours = [datetime(2026, 11, 1, h, tzinfo=UTC) for h in (0, 5, 23)] + [
        datetime(2026, 11, 2, 1, tzinfo=UTC)
    ]
    try:
        for url in urls:
            database = Database(url)
            await upgrade(database.engine, "0004")
            async with database.transaction() as conn:
                now = datetime.now(UTC)
                signup = sign_up("Old", "old@example.com", "a long passphrase 9", None, now)
                agency = (await add_agency(conn, signup, now)).id
                account = (
                    await add_sub_account(
                        conn,
                        agency,
                        SubAccountKind.PRIMARY,
                        "Old",
                        "o@example.com",
                        now.date(),
                        0,
                        now,
                    )
                ).id
                await conn.execute(
                    rollup_t.insert(),
                    [
                        {
                            "sub_account_id": account,
                            "tier": "PREMIUM",
                            "hour_utc": at,
                            "agency_id": agency,
                            "calls": 1,
                            "seconds": 60 + i,
                            "spent_micros": 1_000 * (i + 1),
                        }
                        for i, at in enumerate(hours)
                    ],
                )
            await upgrade(database.engine)
            async with database.read() as conn:
                rows = (
                    await conn.execute(
                        select(
                            daily_t.c.day_utc,
                            daily_t.c.calls,
                            daily_t.c.seconds,
                            daily_t.c.spent_micros,
                        ).order_by(daily_t.c.day_utc)
                    )
                ).all()
            await database.dispose()
            assert [tuple(r) for r in rows] == [
                (datetime(2026, 11, 1, tzinfo=UTC), 3, 183, 6_000),
                (datetime(2026, 11, 2, tzinfo=UTC), 1, 63, 4_000),
            ], url
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
