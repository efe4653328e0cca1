"""Apply migrations programmatically (the `migrate` command and the embedded default)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database up to `revision` over an existing engine."""
    async with engine.connect() as connection:
        await connection.run_sync(_upgrade_sync, revision)
        await connection.commit()


def _upgrade_sync(connection: object, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def revision(url: str, message: str) -> None:
    """Autogenerate a new migration from the tables (for developers)."""
    command.revision(alembic_config(url), message=message, autogenerate=True)
