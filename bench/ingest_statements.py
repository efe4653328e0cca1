"""Ingestion's call insert as text (persistence/arrays.py) against the same statement built
with SQLAlchemy Core, CPU per execution on a real PostgreSQL connection.

    .venv/bin/python bench/ingest_statements.py [--executions 200] [--rounds 6]

Both insert `--batch` new calls per statement (1 and 50 by default) through `unnest()`; the
two forms alternate round by round on the same connection so a busy machine skews both alike.
Reports the median CPU microseconds per statement and SQLAlchemy's compiled-cache status.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime
from statistics import median
from typing import Any

from _common import DEFAULT_PG, RESULTS_DIR, run_async, sqlalchemy_url, timestamp
from sqlalchemy import Uuid, bindparam, column, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import create_async_engine

from persistence.database import Database
from persistence.migrate import upgrade
from persistence.types import UTCDateTime
from persistence.usage import _CALL_ARRAYS, _INSERT_CALLS_PG, call_t


def core_statement() -> Any:
    rows = (
        func.unnest(*[bindparam(c.name, type_=ARRAY(c.type)) for c in _CALL_ARRAYS])
        .table_valued(*[column(c.name, c.type) for c in _CALL_ARRAYS])
        .render_derived(with_types=False)
    )
    chosen = select(
        bindparam("agency_id", type_=Uuid()),
        bindparam("recorded_at", type_=UTCDateTime()),
        *[rows.c[c.name] for c in _CALL_ARRAYS],
    )
    names = ["agency_id", "recorded_at", *[c.name for c in _CALL_ARRAYS]]
    return (
        pg_insert(call_t)
        .from_select(names, chosen)
        .on_conflict_do_nothing(index_elements=["agency_id", "external_id"])
        .returning(call_t.c.external_id)
    )


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    admin = create_async_engine(sqlalchemy_url(args.pg, "postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{args.database}"'))
    database = Database(sqlalchemy_url(args.pg, args.database))
    try:
        await upgrade(database.engine)
        agency, sub_account = uuid.uuid4(), uuid.uuid4()
        async with database.transaction() as conn:
            await conn.execute(
                text(
                    "INSERT INTO agency (id, name, plan_name, billing_model,"
                    " included_monthly_minutes, included_tier, plan_started_on, time_zone,"
                    " created_at) VALUES (:a, 'bench', 'Agency Lite', 'CONSUMPTION', 0,"
                    " 'PREMIUM', '2026-01-01', 'UTC', now())"
                ),
                {"a": agency},
            )
            await conn.execute(
                text(
                    "INSERT INTO sub_account (id, agency_id, kind, name, login_email, status,"
                    " subscription_start_date, balance_source, knowledge_pack_credits,"
                    " markup_basic_bp, markup_premium_bp, created_at) VALUES (:s, :a,"
                    " 'SECONDARY', 'c', 'c@bench.example', 'ACTIVE', '2026-01-01', 'CUSTOMER',"
                    " 0, 0, 0, now())"
                ),
                {"s": sub_account, "a": agency},
            )

        def params(n: int) -> dict[str, Any]:
            now = datetime.now(UTC)
            return {
                "agency_id": agency,
                "recorded_at": now,
                "external_id": [uuid.uuid4().hex for _ in range(n)],
                "sub_account_id": [sub_account] * n,
                "direction": ["OUTBOUND"] * n,
                "channel": ["PHONE"] * n,
                "status": ["COMPLETED"] * n,
                "tier": ["BASIC"] * n,
                "started_at": [now] * n,
                "duration_seconds": [60] * n,
            }

        forms = {"text": _INSERT_CALLS_PG, "core": core_statement()}
        results: dict[str, Any] = {}
        for batch in args.batches:
            cpu: dict[str, list[float]] = {name: [] for name in forms}
            cache: dict[str, str] = {}
            for round_ in range(args.rounds):
                order = list(forms) if round_ % 2 == 0 else list(reversed(forms))
                for name in order:
                    async with database.transaction() as conn:
                        t0 = time.process_time()
                        for _ in range(args.executions):
                            result = await conn.execute(forms[name], params(batch))
                            cache[name] = str(result.context.cache_hit)
                            assert len(result.scalars().all()) == batch
                        cpu[name].append((time.process_time() - t0) / args.executions * 1e6)
            results[f"batch_{batch}"] = {
                name: {"median_cpu_us": round(median(v)), "min_cpu_us": round(min(v))}
                | {"compiled_cache": cache[name]}
                for name, v in cpu.items()
            }
        return results
    finally:
        await database.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)'))
        await admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--pg", default=DEFAULT_PG)
    parser.add_argument("--database", default="agencyhub_bench_statements")
    args = parser.parse_args()
    output = {"benchmark": "ingest_statements", **run_async(lambda: measure(args))}
    text_out = json.dumps(output, indent=2)
    print(text_out)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"ingest-statements-{timestamp()}.json").write_text(text_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
