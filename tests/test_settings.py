"""The settings' traps: the token key every process must share."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from agencyhub.app import create_app
from agencyhub.settings import ConfigurationError, Settings

PG_URL = "postgresql+asyncpg://nobody@127.0.0.1:1/never-opened"
PROCESSES = 4
ROUNDS = 30  # today's 4 processes see the unguarded race in roughly a quarter of the rounds


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


def _start_with_the_embedded_key(data_dirs: list[str], barrier, results) -> None:
    for data_dir in data_dirs:
        barrier.wait()  # every process asks for the key at the same moment
        try:
            key = Settings(_env_file=None, data_dir=Path(data_dir)).secret()  # type: ignore[call-arg]
        except Exception as error:
            key = f"failed: {error!r}".encode()
        results.put((data_dir, key))


def test_processes_starting_together_on_an_empty_data_dir_share_one_whole_key(tmp_path):
    # given several server processes starting at once, round after round on an empty DATA_DIR
    context = multiprocessing.get_context("spawn")
    data_dirs = [str(tmp_path / f"round-{n}") for n in range(ROUNDS)]
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    processes = [
        context.Process(target=_start_with_the_embedded_key, args=(data_dirs, barrier, results))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        keys: dict[str, list[bytes]] = {}
        for _ in range(PROCESSES * ROUNDS):
            data_dir, key = results.get(timeout=60)
            keys.setdefault(data_dir, []).append(key)
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    # then in every round they all run with one and the same non-empty key
    split = {Path(d).name: {k[:12] for k in ks} for d, ks in keys.items() if len(set(ks)) != 1}
    assert split == {}, "processes of one round got different keys"
    assert all(ks[0] and not ks[0].startswith(b"failed") for ks in keys.values()), keys
