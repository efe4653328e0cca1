"""The migrations build exactly the tables the code declares, on both databases."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from persistence.tables import Base


async def test_migrated_schema_matches_the_models(database):
    def diff(sync_conn):
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with database.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []
