"""The migrations build exactly the tables the code declares, on both databases."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from domain.agency import SubAccountKind, sign_up
from persistence.agencies import add_agency, add_sub_account
from persistence.database import Database
from persistence.migrate import alembic_config, upgrade
from persistence.records import agency_t, sub_account_t
from persistence.tables import AgencyUsagePeriodRow, Base, UsagePeriodRow
from persistence.usage import call_t, daily_t, quarter_t, rollup_t
from tests.conftest import PG_ADMIN_URL, pg_url_for


async def test_migrated_schema_matches_the_models(database):
    def diff(sync_conn):
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with database.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


@asynccontextmanager
async def scratch_databases(tmp_path: Path) -> AsyncIterator[list[str]]:
    """An empty PostgreSQL database and SQLite file to migrate step by step; dropped after."""
    name = f"agencyhub_mig_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield [pg_url_for(name), f"sqlite+aiosqlite:///{tmp_path / 'mig.sqlite3'}"]
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def test_0005_fills_the_daily_rollup_from_existing_hourly_rows(tmp_path):
    """An installation upgraded with usage already recorded gets its days summed."""
    hours = [datetime(2026, 11, 1, h, tzinfo=UTC) for h in (0, 5, 23)] + [
        datetime(2026, 11, 2, 1, tzinfo=UTC)
    ]
    async with scratch_databases(tmp_path) as urls:
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


async def test_0011_splits_recorded_hours_into_quarters_that_add_up_to_them(tmp_path):
    """An installation upgraded with usage already recorded gets its quarters from its calls,
    each hour's overage on its last calls and its money shared by seconds, to the micro-dollar
    of the hour; a current period starting at half past a UTC hour is summed from there."""
    today = datetime.now(ZoneInfo("Asia/Kolkata")).date()  # the periods begin today
    hour = datetime.combine(today, time.min, tzinfo=ZoneInfo("Asia/Kolkata")).astimezone(UTC)
    hour = hour.replace(minute=0)  # 18:00 UTC, and the day begins at 18:30
    # (minute, seconds, direction, status): 18:05 and 18:20 before Kolkata's midnight, 18:40 after
    calls = [
        (5, 100, "INBOUND", "COMPLETED"),
        (20, 200, "OUTBOUND", "FAILED"),
        (40, 100, "OUTBOUND", "BUSY"),
    ]
    usage_period_t = UsagePeriodRow.__table__
    agency_usage_period_t = AgencyUsagePeriodRow.__table__
    async with scratch_databases(tmp_path) as urls:
        for url in urls:
            database = Database(url)
            await upgrade(database.engine, "0010")
            async with database.transaction() as conn:
                now = datetime.now(UTC)
                signup = sign_up("Old", "old@example.com", "a long passphrase 9", None, now)
                agency = (await add_agency(conn, signup, now)).id
                await conn.execute(
                    agency_t.update()
                    .where(agency_t.c.id == agency)
                    .values(time_zone="Asia/Kolkata", plan_started_on=today)
                )
                account = (
                    await add_sub_account(
                        conn,
                        agency,
                        SubAccountKind.PRIMARY,
                        "Old",
                        "o@example.com",
                        today,
                        0,
                        now,
                    )
                ).id
                await conn.execute(
                    call_t.insert(),
                    [
                        {
                            "agency_id": agency,
                            "external_id": f"c{minute}",
                            "sub_account_id": account,
                            "direction": direction,
                            "channel": "PHONE",
                            "status": status,
                            "tier": "PREMIUM",
                            "started_at": hour.replace(minute=minute),
                            "duration_seconds": duration,
                            "recorded_at": now,
                        }
                        for minute, duration, direction, status in calls
                    ],
                )
                row = {"sub_account_id": account, "tier": "PREMIUM", "agency_id": agency}
                sums = {
                    "calls": 3,
                    "seconds": 400,
                    "overage_seconds": 150,
                    "spent_micros": 2_000_001,
                    "cost_micros": 1_000_000,
                    "inbound": 1,
                    "outbound": 2,
                    "completed": 1,
                    "failed": 1,
                    "busy": 1,
                }
                await conn.execute(rollup_t.insert(), [{**row, "hour_utc": hour, **sums}])
                await conn.execute(
                    daily_t.insert(), [{**row, "day_utc": hour.replace(hour=0), **sums}]
                )
            await upgrade(database.engine)
            async with database.read() as conn:
                quarters = (
                    await conn.execute(
                        select(
                            quarter_t.c.quarter_utc,
                            quarter_t.c.calls,
                            quarter_t.c.seconds,
                            quarter_t.c.overage_seconds,
                            quarter_t.c.spent_micros,
                            quarter_t.c.cost_micros,
                            quarter_t.c.inbound,
                            quarter_t.c.failed,
                            quarter_t.c.busy,
                        ).order_by(quarter_t.c.quarter_utc)
                    )
                ).all()
                period = (await conn.execute(select(usage_period_t))).one()
                agency_period = (await conn.execute(select(agency_usage_period_t))).one()
            await database.dispose()
            assert [tuple(r) for r in quarters] == [
                (hour, 1, 100, 0, 500_000, 250_000, 1, 0, 0),
                (hour.replace(minute=15), 1, 200, 50, 1_000_001, 500_000, 0, 1, 0),
                (hour.replace(minute=30), 1, 100, 100, 500_000, 250_000, 0, 0, 1),
            ], url
            assert (period.period_start, period.seconds, period.spent_micros) == (
                today,
                100,
                500_000,
            )
            assert (agency_period.period_start, agency_period.seconds) == (today, 100)


async def test_0016_gives_recorded_calls_their_share_of_their_quarter(tmp_path):
    """Calls recorded before per-call costs get their quarter row's money shared by seconds
    (to the micro-dollar of the row), its overage on the last calls, and as funder the
    sub-account that pays for them now (the primary for an AGENCY-funded client)."""
    at = datetime(2026, 11, 2, 18, 0, tzinfo=UTC)
    async with scratch_databases(tmp_path) as urls:
        for url in urls:
            database = Database(url)
            await upgrade(database.engine, "0013")
            async with database.transaction() as conn:
                now = datetime.now(UTC)
                signup = sign_up("Old", "old@example.com", "a long passphrase 9", None, now)
                agency = (await add_agency(conn, signup, now)).id
                day = at.date()
                primary, client = [
                    (
                        await add_sub_account(
                            conn, agency, kind, n, f"{n}@example.com", day, 0, now
                        )
                    ).id
                    for kind, n in [(SubAccountKind.PRIMARY, "p"), (SubAccountKind.SECONDARY, "c")]
                ]
                await conn.execute(
                    sub_account_t.update()
                    .where(sub_account_t.c.id == client)
                    .values(balance_source="AGENCY")
                )
                calls = [(primary, 1, 100), (primary, 5, 200), (primary, 14, 100), (client, 3, 60)]
                await conn.execute(
                    call_t.insert(),
                    [
                        {
                            "agency_id": agency,
                            "external_id": f"c{minute}",
                            "sub_account_id": account,
                            "direction": "OUTBOUND",
                            "channel": "PHONE",
                            "status": "COMPLETED",
                            "tier": "PREMIUM",
                            "started_at": at.replace(minute=minute),
                            "duration_seconds": duration,
                            "recorded_at": now,
                        }
                        for account, minute, duration in calls
                    ],
                )
                key = {"tier": "PREMIUM", "agency_id": agency, "quarter_utc": at}
                await conn.execute(
                    quarter_t.insert(),
                    [
                        {
                            **key,
                            "sub_account_id": primary,
                            "calls": 3,
                            "seconds": 400,
                            "overage_seconds": 150,
                            "spent_micros": 2_000_001,
                            "cost_micros": 1_000_000,
                        },
                        {
                            **key,
                            "sub_account_id": client,
                            "calls": 1,
                            "seconds": 60,
                            "overage_seconds": 0,
                            "spent_micros": 375_000,
                            "cost_micros": 300_000,
                        },
                    ],
                )
            await upgrade(database.engine)
            async with database.read() as conn:
                rows = (
                    await conn.execute(
                        select(
                            call_t.c.external_id,
                            call_t.c.spent_micros,
                            call_t.c.cost_micros,
                            call_t.c.overage_seconds,
                            call_t.c.funded_by,
                        ).order_by(call_t.c.external_id)
                    )
                ).all()
            await database.dispose()
            # 2,000,001 by seconds 100:200:100 is 500,000.25, 1,000,000.5, 500,000.25: the
            # largest remainder takes the odd micro-dollar; 150 s of overage fall on the last
            # calls billed (100 s on the 18:14 call, 50 on the 18:05 one)
            assert [tuple(r) for r in rows] == [
                ("c1", 500_000, 250_000, 0, primary),
                ("c14", 500_000, 250_000, 100, primary),
                ("c3", 375_000, 300_000, 0, primary),
                ("c5", 1_000_001, 500_000, 50, primary),
            ], url


def downgrade(sync_conn, revision):
    """Alembic's downgrade to `revision` on a connection (run through `run_sync`)."""
    config = alembic_config()
    config.attributes["connection"] = sync_conn
    command.downgrade(config, revision)


def tables(sync_conn) -> set[str]:
    return set(inspect(sync_conn).get_table_names())


async def test_0018_adds_the_webhook_tables_beside_existing_data_and_goes_back(tmp_path):
    """An installation with an agency gets empty webhook tables that take endpoints and
    deliveries; the downgrade drops them and nothing else."""
    from domain.webhooks import WebhookEndpoint, WebhookEvent, WebhookEventKind
    from persistence import webhooks

    async with scratch_databases(tmp_path) as urls:
        for url in urls:
            database = Database(url)
            await upgrade(database.engine, "0017")
            now = datetime.now(UTC)
            async with database.transaction() as conn:
                signup = sign_up("Old", "old@example.com", "a long passphrase 9", None, now)
                agency = (await add_agency(conn, signup, now)).id
            await upgrade(database.engine, "0018")
            endpoint = WebhookEndpoint(
                uuid.uuid4(),
                agency,
                "https://hooks.example.com/in",
                frozenset({WebhookEventKind.PAYOUT_PAID}),
                True,
                now,
            )
            event = WebhookEvent(WebhookEventKind.PAYOUT_PAID, agency, None, {"amount": "1.00"})
            async with database.transaction() as conn:
                await webhooks.add_endpoint(conn, endpoint, b"sealed")
                assert await webhooks.queue_deliveries(conn, [event], now) == 1
            async with database.engine.connect() as conn:
                await conn.run_sync(downgrade, "0017")
                await conn.commit()
                left = await conn.run_sync(tables)
                assert not {"webhook_endpoint", "webhook_delivery"} & left
                assert await conn.scalar(select(agency_t.c.name)) == "Old"
            await upgrade(database.engine)
            async with database.read() as conn:
                assert await webhooks.endpoint_count(conn, agency) == 0
            await database.dispose()


async def test_0019_adds_wallet_automation_beside_existing_data_and_goes_back(tmp_path):
    """An installation with an agency and a client gets empty wallet-automation tables that
    take an alert; the downgrade drops them and nothing else."""
    from domain.alerts import Alert, AlertKind
    from persistence import alerts

    wallet_tables = {
        "auto_recharge",
        "auto_recharge_request",
        "spending_cap",
        "cap_check",
        "alert",
    }

    async with scratch_databases(tmp_path) as urls:
        for url in urls:
            database = Database(url)
            await upgrade(database.engine, "0018")
            now = datetime.now(UTC)
            async with database.transaction() as conn:
                signup = sign_up("Old", "old@example.com", "a long passphrase 9", None, now)
                agency = await add_agency(conn, signup, now)
                primary = (
                    await add_sub_account(
                        conn,
                        agency.id,
                        SubAccountKind.PRIMARY,
                        "Old",
                        "o@example.com",
                        now.date(),
                        0,
                        now,
                    )
                ).id
            await upgrade(database.engine, "0019")
            async with database.engine.connect() as conn:
                assert wallet_tables <= await conn.run_sync(tables)
            alert = Alert(
                agency.id, primary, AlertKind.LOW_BALANCE, now.date(), {"runwayDays": "2"}
            )
            async with database.transaction() as conn:
                assert await alerts.add(conn, alert, now)
                assert not await alerts.add(conn, alert, now)  # one a day
            async with database.engine.connect() as conn:
                await conn.run_sync(downgrade, "0018")
                await conn.commit()
                left = await conn.run_sync(tables)
                assert not wallet_tables & left
                assert "webhook_endpoint" in left
                assert await conn.scalar(select(agency_t.c.name)) == "Old"
            await upgrade(database.engine)
            await database.dispose()


async def test_0020_leaves_unnumbered_events_out_of_the_sequence_indexes_and_goes_back(tmp_path):
    """Events already in the outbox stay; numbers stay unique among numbered rows; rows not
    yet numbered are in neither the unique index nor the per-topic one, so the relay's search
    for them cannot pick those (a bitmap scan of them visited every row numbered since the
    last vacuum); the downgrade puts the unique constraint back."""
    from sqlalchemy.exc import IntegrityError

    from persistence.outbox import outbox

    def row(sequence):
        now = datetime.now(UTC)
        return {"topic": "t", "kind": "K", "payload": "{}", "created_at": now, "sequence": sequence}

    def indexed(sync_conn) -> dict[str, str | None]:
        """Each index of `outbox` and its condition (None: every row)."""
        found = inspect(sync_conn).get_indexes("outbox")
        return {
            i["name"]: (
                i.get("dialect_options", {}).get("postgresql_where")
                or i.get("dialect_options", {}).get("sqlite_where")
            )
            for i in found
        }

    async with scratch_databases(tmp_path) as urls:
        for url in urls:
            database = Database(url)
            await upgrade(database.engine, "0019")
            async with database.transaction() as conn:
                await conn.execute(outbox.insert(), [row(1), row(2), row(None), row(None)])
            await upgrade(database.engine, "0020")
            async with database.engine.connect() as conn:
                conditions = await conn.run_sync(indexed)
                assert "sequence IS NOT NULL" in str(conditions["uq_outbox_sequence"])
                assert "sequence IS NOT NULL" in str(conditions["ix_outbox_topic_sequence"])
                assert await conn.scalar(select(func.count()).select_from(outbox)) == 4
            async with database.transaction() as conn:
                await conn.execute(outbox.insert(), [row(None)])  # many rows await a number
            with pytest.raises(IntegrityError):  # a number given twice
                async with database.transaction() as conn:
                    await conn.execute(outbox.insert(), [row(2)])
            async with database.engine.connect() as conn:
                await conn.run_sync(downgrade, "0019")
                await conn.commit()
            with pytest.raises(IntegrityError):
                async with database.transaction() as conn:
                    await conn.execute(outbox.insert(), [row(1)])
            await upgrade(database.engine)
            await database.dispose()
