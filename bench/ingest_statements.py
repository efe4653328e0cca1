"""Ingestion's call insert as text (persistence/arrays.py) against the same statement built with
SQLAlchemy Core: CPU per execution on a real PostgreSQL connection, for batches of `--batches`
calls through `unnest()`, the two forms alternating round by round on the same connection.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import harness
from harness import Session
from sqlalchemy import Uuid, bindparam, column, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert

from persistence.database import Database
from persistence.types import UTCDateTime
from persistence.usage import _CALL_ARRAYS, _INSERT_CALLS_PG, call_t

AGENCY = """INSERT INTO agency (id, name, plan_name, billing_model, included_monthly_minutes,
 included_tier, plan_started_on, time_zone, created_at) VALUES (:a, 'bench', 'Agency Lite',
 'CONSUMPTION', 0, 'PREMIUM', '2026-01-01', 'UTC', now())"""
SUB_ACCOUNT = """INSERT INTO sub_account (id, agency_id, kind, name, login_email, status,
 subscription_start_date, balance_source, knowledge_pack_credits, markup_basic_bp,
 markup_premium_bp, created_at) VALUES (:s, :a, 'SECONDARY', 'c', 'c@bench.example', 'ACTIVE',
 '2026-01-01', 'CUSTOMER', 0, 0, 0, now())"""


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


async def measure(url: str, args: Any) -> dict[str, Any]:
    database = Database(url)
    agency, sub_account = uuid.uuid4(), uuid.uuid4()
    async with database.transaction() as conn:
        await conn.execute(text(AGENCY), {"a": agency})
        await conn.execute(text(SUB_ACCOUNT), {"s": sub_account, "a": agency})

    def params(n: int) -> dict[str, Any]:
        now = datetime.now(UTC)
        same = {"sub_account_id": sub_account, "direction": "OUTBOUND", "channel": "PHONE"}
        same |= {"status": "COMPLETED", "tier": "BASIC", "started_at": now, "duration_seconds": 60}
        arrays = {k: [v] * n for k, v in same.items()}
        ids = [uuid.uuid4().hex for _ in range(n)]
        return {"agency_id": agency, "recorded_at": now, "external_id": ids, **arrays}

    forms = {"text": _INSERT_CALLS_PG, "core": core_statement()}
    results: dict[str, Any] = {}
    try:
        for batch in args.batches:
            cpu: dict[str, list[float]] = {name: [] for name in forms}
            cache: dict[str, str] = {}
            for round_ in range(args.rounds):
                for name in list(forms) if round_ % 2 == 0 else list(reversed(forms)):
                    async with database.transaction() as conn:
                        started = time.process_time()
                        for _ in range(args.executions):
                            result = await conn.execute(forms[name], params(batch))
                            cache[name] = str(result.context.cache_hit)
                            assert len(result.scalars().all()) == batch
                        spent = time.process_time() - started
                        cpu[name].append(spent / args.executions * 1e6)
            results[f"batch_{batch}"] = {
                name: {"median_cpu_us": round(statistics.median(v)), "min_cpu_us": round(min(v))}
                | {"compiled_cache": cache[name]}
                for name, v in cpu.items()
            }
    finally:
        await database.dispose()
    return results


def main() -> int:
    parser = harness.arguments(__doc__, "agencyhub_bench_statements")
    parser.add_argument("--executions", type=int, default=200, help="per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 50], help="calls each")
    args = parser.parse_args()
    with Session("ingest_statements", args) as session:
        results = harness.run_async(lambda: measure(session.url, args))
        print(json.dumps(results, indent=2))
        session.write({"settings": vars(args), **results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
