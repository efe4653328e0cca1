"""The names fanout.py and soak.py import from here, now in harness.py: delete this module once
they import harness themselves."""

import os

from harness import (
    BENCH_DIR,
    BIN,
    DEFAULT_PG,
    RESULTS_DIR,
    app_env,
    asyncpg_dsn,
    drop_database,
    machine_info,
    migrate,
    recreate_database,
    run_async,
    sqlalchemy_url,
    timestamp,
)

__all__ = [
    "BENCH_DIR",
    "BIN",
    "DEFAULT_PG",
    "RESULTS_DIR",
    "app_env",
    "asyncpg_dsn",
    "drop_database",
    "loadavg",
    "machine_info",
    "migrate",
    "recreate_database",
    "run_async",
    "sqlalchemy_url",
    "timestamp",
]


def loadavg() -> list[float]:
    return list(os.getloadavg())
