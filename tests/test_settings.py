"""The settings' traps: the token key every process must share."""

from __future__ import annotations

from pathlib import Path

import pytest

from agencyhub.app import create_app
from agencyhub.settings import ConfigurationError, Settings

PG_URL = "postgresql+asyncpg://nobody@127.0.0.1:1/never-opened"


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_secret_key_is_required_with_a_database_url(tmp_path):
    # given PostgreSQL and no SECRET_KEY, when the server asks for its key
    with pytest.raises(ConfigurationError, match="SECRET_KEY is required with DATABASE_URL"):
        settings(tmp_path, database_url=PG_URL).secret()
    # then nothing was generated on this host
    assert not (tmp_path / "secret_key").exists()


def test_a_blank_secret_key_counts_as_unset(tmp_path):
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        settings(tmp_path, database_url=PG_URL, secret_key="  ").secret()


async def test_the_app_does_not_start_on_postgresql_without_secret_key(tmp_path):
    app = create_app(settings(tmp_path, database_url=PG_URL))
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        async with app.router.lifespan_context(app):
            pass  # pragma: no cover - the lifespan must not start


def test_the_embedded_default_keeps_its_generated_key(tmp_path):
    first = settings(tmp_path).secret()
    assert len(first) >= 48 and settings(tmp_path).secret() == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
