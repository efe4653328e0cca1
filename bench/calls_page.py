"""`SubAccount.calls` first page for a sub-account with 1,000,000 calls: p95 over HTTP (the
answer checked against raw SQL first), the statements of a request, the page's SQL as the app
sends it run raw (asyncpg) and its `EXPLAIN (ANALYZE, BUFFERS)`: one backward range of
ix_call_sub_account_started_id under a LIMIT. BENCHMARKS.md, "Messaging and the per-call list
(issue 15)".

The calls (with their costs, overage and funder, billed by the app's Pricer) and their rollups
are loaded by bench/dataset.py: by default one sub-account (the agency's primary) and 1 M calls
over the last 30 days, all inside the range asked for.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import dataset
import harness
import orjson
from harness import Session

CALLS = """query($id: ID!, $from: Date!, $to: Date!, $first: Int, $after: String) {
  node(id: $id) { ... on SubAccount {
    calls(range: {from: $from, to: $to}, first: $first, after: $after) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { cursor node { externalId startedAt durationSeconds direction channel status tier
        overageSeconds cost { amount } baseCost { amount } fundedBy { id } } } } } } }"""
RAW_PAGE = """SELECT external_id, spent_micros, started_at, id FROM call WHERE sub_account_id = $1
  AND started_at >= $2 AND started_at < $3 ORDER BY started_at DESC, id DESC LIMIT $4 OFFSET $5"""


@contextlib.contextmanager
def captured(database: Any, marker: str) -> Any:
    """(SQL, parameters) of every statement containing `marker` the app's engines send."""
    from sqlalchemy import event

    seen: list[tuple[str, Any]] = []
    engines = {database.engine.sync_engine, database._read_engine.sync_engine}

    def before(conn: Any, cursor: Any, sql: str, parameters: Any, *args: Any) -> None:
        if marker in sql:
            seen.append((sql, parameters))

    for engine in engines:
        event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", before)


def main() -> int:
    parser = harness.arguments(__doc__, "agencyhub_bench_calls_page")
    dataset.Options.add_arguments(parser)
    parser.set_defaults(sub_accounts=1, calls=1_000_000, days=30)
    parser.add_argument("--first", type=int, default=50, help="calls per page (max 100)")
    parser.add_argument("--requests", type=int, default=300, help="measured, one at a time")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--count-requests", type=int, default=3, help="in-process, counted")
    parser.add_argument("--timed-requests", type=int, default=50, help="in-process, SQL timed")
    parser.add_argument("--profile", action="store_true", help="in-process, under pyinstrument")
    parser.add_argument("--deep", type=int, default=500_000, help="a later page: after this call")
    args = parser.parse_args()
    with Session("calls_page", args) as session:
        [server] = session.start("graphql")
        t0 = time.monotonic()
        data = dataset.generate(server.url, args.pg, args.database, dataset.Options.from_args(args))
        data["total_seconds"] = round(time.monotonic() - t0, 1)
        token = data.pop("token")
        data.pop("consistency", None)
        primary = data["primary_id"]

        from resolvers.global_id import to_global_id

        today = datetime.now(UTC).date()
        first_day = today - timedelta(days=args.days)  # the history starts `days` before now
        variables = {
            "id": to_global_id("SubAccount", primary),
            "from": first_day.isoformat(),
            "to": today.isoformat(),
            "first": args.first,
        }
        body = orjson.dumps({"query": CALLS, "variables": variables})
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}

        async def raw_top(offset: int = 0, limit: int = args.first) -> tuple[int, list[Any]]:
            from domain.reporting import local_range

            window = local_range(first_day, today, "UTC")
            async with session.connect() as conn:
                count = await conn.fetchval(
                    "SELECT count(*) FROM call WHERE sub_account_id = $1", primary
                )
                top = await conn.fetch(
                    RAW_PAGE, primary, window.start_utc, window.end_utc, limit, offset
                )
            return int(count), top

        count, top = harness.run_async(raw_top)
        answer = harness.over_api(
            server.url, lambda c: c.post("/graphql", content=body, headers=headers)
        ).json()
        calls = answer["data"]["node"]["calls"]
        got = [e["node"]["externalId"] for e in calls["edges"]]
        from domain.money import to_dollars

        problems = []
        if got != [r["external_id"] for r in top]:
            problems.append("the page differs from the raw SQL's newest calls")
        costs = [e["node"]["cost"]["amount"] for e in calls["edges"]]
        if costs != [str(to_dollars(r["spent_micros"])) for r in top]:
            problems.append(f"costs differ: {costs[:3]} vs {[r['spent_micros'] for r in top[:3]]}")
        if calls["totalCount"] != count or not calls["pageInfo"]["hasNextPage"]:
            problems.append(f"totalCount {calls['totalCount']}, {count} call rows")
        if problems:
            raise SystemExit(f"the page is wrong: {problems}")
        print(f"checked: the first {len(got)} of {count:,} calls equal raw SQL's", flush=True)

        http = harness.sequential(server, body, headers, args.warmup, args.requests)
        print(
            f"HTTP sequential: p50 {http['p50_ms']} ms, p95 {http['p95_ms']} ms,"
            f" p99 {http['p99_ms']} ms; cores {harness.cores(http['cpu_seconds'])}",
            flush=True,
        )
        # A page deep in the range: `after` the cursor of the call at --deep (newest first).
        from types import SimpleNamespace

        from persistence.queries.calls import encode_cursor

        _, deep_rows = harness.run_async(lambda: raw_top(args.deep, args.first + 1))
        cursor = encode_cursor(
            SimpleNamespace(started_at=deep_rows[0]["started_at"], id=deep_rows[0]["id"])
        )
        deep_body = orjson.dumps({"query": CALLS, "variables": variables | {"after": cursor}})
        deep = harness.over_api(
            server.url, lambda c: c.post("/graphql", content=deep_body, headers=headers)
        ).json()["data"]["node"]["calls"]
        if [e["node"]["externalId"] for e in deep["edges"]] != [
            r["external_id"] for r in deep_rows[1:]
        ]:
            raise SystemExit(f"the page after call {args.deep:,} differs from raw SQL's")
        http_deep = harness.sequential(server, deep_body, headers, args.warmup, args.requests)
        print(
            f"HTTP sequential, the page after call {args.deep:,}: p50 {http_deep['p50_ms']} ms,"
            f" p95 {http_deep['p95_ms']} ms (checked against raw SQL)",
            flush=True,
        )
        session.stop_servers()

        async def in_process() -> dict[str, Any]:
            async with harness.in_process_app(session.url, session.workdir) as (client, services):
                for _ in range(3):
                    await client.post("/graphql", content=body, headers=headers)
                counted = await harness.counted_requests(
                    client, services.database, body, headers, args.count_requests
                )
                bodies = [body] * args.timed_requests
                counted |= await harness.sql_share(client, services.database, bodies, headers)
                if args.profile:
                    html = harness.RESULTS_DIR / f"profile_calls_page-{session.started}.html"
                    counted["profile"] = await harness.profiled_posts(
                        client, body, headers, args.timed_requests, html
                    )
                with captured(services.database, "FROM call") as seen:
                    await client.post("/graphql", content=body, headers=headers)
                    await client.post("/graphql", content=deep_body, headers=headers)
                [(sql, parameters), (deep_sql, deep_parameters)] = seen
                async with session.connect() as conn:
                    explain = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *parameters)
                    explain_deep = await conn.fetch(
                        "EXPLAIN (ANALYZE, BUFFERS) " + deep_sql, *deep_parameters
                    )
                    statement = await conn.prepare(sql)
                    for _ in range(args.warmup):
                        await statement.fetch(*parameters)
                    spent = []
                    for _ in range(args.requests):
                        started = time.perf_counter()
                        await statement.fetch(*parameters)
                        spent.append(time.perf_counter() - started)
                return counted | {
                    "page_sql": harness.one_line(sql, 2000),
                    "page_parameters": [str(p) for p in parameters],
                    "explain": [r[0] for r in explain],
                    "deep_page_sql": harness.one_line(deep_sql, 2000),
                    "explain_deep_page": [r[0] for r in explain_deep],
                    "raw_page_sql": harness.summary_ms(spent),
                }

        found = harness.run_async(in_process)
        print(f"statements per request: {found['statements_per_request']}")
        for statement in found["statements"]:
            print(f"  {statement[:200]}")
        print(
            f"in-process: p50 {found['in_process_latency']['p50_ms']} ms a request, of which SQL"
            f" {found['sql_ms_per_request']['p50_ms']} ms (p50; {found['sql_share_of_request']:.0%}"
            f" of the mean), Python ≈ {found['python_ms_per_request_mean']} ms"
        )
        print(f"the page's SQL, raw (asyncpg, prepared): {found['raw_page_sql']}")
        print("EXPLAIN (ANALYZE, BUFFERS) of the page's SQL:")
        for line in found["explain"]:
            print(f"  {line}")
        print(f"EXPLAIN (ANALYZE, BUFFERS) of the page after call {args.deep:,}:")
        for line in found["explain_deep_page"]:
            print(f"  {line}")
        index_scan = any(
            "Index Scan Backward using ix_call_sub_account_started_id" in line
            for line in found["explain"]
        )
        limited = found["explain"][0].lstrip().startswith("Limit")
        print(
            f"one backward range of ix_call_sub_account_started_id under a LIMIT: "
            f"{index_scan and limited}"
        )
        session.write(
            {
                "settings": {k: v for k, v in vars(args).items() if k != "output"},
                "dataset": data,
                "query": CALLS,
                "variables": variables,
                "call_rows_of_the_sub_account": count,
                "http": http,
                "deep_page": {"after_call": args.deep, "cursor": cursor, "http": http_deep},
                "in_process": found,
                "reads_one_index_range": index_scan and limited,
                "ratio_graphql_p50_to_raw_page_p50": round(
                    http["p50_ms"] / found["raw_page_sql"]["p50_ms"], 2
                ),
            }
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
