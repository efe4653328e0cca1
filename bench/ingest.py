"""Usage ingestion through `recordCalls` over HTTP, next to the raw asyncpg insert rate.

    .venv/bin/python bench/ingest.py [--seconds 15] [--workers 4] [--batch 1000]
                                     [--sub-accounts 100] [--client wrk|python]

A fresh database, one agency (Agency Unlimited) with `--sub-accounts` clients each given
minutes, an ingest API key, then `--workers` connections posting batches of `--batch` new
calls for `--seconds`: once spread over every client, once all on one hot client. The load
generator is wrk (one thread; a Lua script gives every call a fresh externalId and checks that
every response accepted the whole batch) when installed, else Python asyncio clients, which
take more of the 2 cores from the server. Calls/s counts the rows the server stored. The
baseline copies the same number of rows into the `call` table with asyncpg's COPY (no
billing, no rollups).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from _account_manager import global_key, gql, sign_up_on_plan
from _common import (
    BENCH_DIR,
    CALL_COLUMNS,
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
from viewer_http import Server, parse_wrk, wrk

CREATE = """mutation($i: CreateSubAccountInput!) { createSubAccount(input: $i) {
  subAccount { id } userErrors { code } } }"""
GRANT = """mutation($i: TransferMinutesInput!) { transferMinutes(input: $i) {
  transfer { id } userErrors { code } } }"""
KEY = 'mutation { createApiKey(input: {name: "bench"}) { secret } }'
RECORD = """mutation($calls: [CallInput!]!) { recordCalls(input: {calls: $calls}) {
  accepted duplicates rejected { code } } }"""


def batch_of(targets: list[str], size: int, rng: random.Random) -> list[dict[str, Any]]:
    start = datetime.now(UTC) - timedelta(hours=2)
    return [
        {
            "externalId": uuid.uuid4().hex,
            "subAccountId": rng.choice(targets),
            "direction": rng.choice(("INBOUND", "OUTBOUND")),
            "channel": "PHONE",
            "status": rng.choice(("COMPLETED", "COMPLETED", "FAILED", "NO_ANSWER")),
            "tier": rng.choice(("BASIC", "PREMIUM")),
            "startedAt": (start + timedelta(seconds=rng.randrange(3600))).isoformat(),
            "durationSeconds": rng.randrange(1, 30),
        }
        for _ in range(size)
    ]


async def load(url: str, key: str, targets: list[str], args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(1)
    bodies = [batch_of(targets, args.batch, rng) for _ in range(8)]  # built before the clock
    accepted = 0
    latencies: list[float] = []
    deadline = time.monotonic() + args.seconds

    async def worker(n: int) -> None:
        nonlocal accepted
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            i = n
            while time.monotonic() < deadline:
                calls = [{**c, "externalId": uuid.uuid4().hex} for c in bodies[i % len(bodies)]]
                t0 = time.monotonic()
                body = await gql(client, RECORD, {"calls": calls}, key)
                latencies.append(time.monotonic() - t0)
                accepted += body["data"]["recordCalls"]["accepted"]
                i += args.workers

    t0 = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(args.workers)))
    elapsed = time.monotonic() - t0
    latencies.sort()
    return {
        "calls_per_second": round(accepted / elapsed, 1),
        "accepted": accepted,
        "batches": len(latencies),
        "seconds": round(elapsed, 2),
        "batch_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "batch_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
    }


WRK_SCRIPT = """
local template = [==[{template}]==]
local prefix = "{prefix}"
counter = 0
bad = 0
first_bad = ""
local threads = {{}}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
function request()
  counter = counter + 1
  local n = 0
  local body = string.gsub(template, "@ID@", function()
    n = n + 1
    return prefix .. tid .. "-" .. counter .. "-" .. n
  end)
  return wrk.format(nil, nil, nil, body)
end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"accepted":{batch},', 1, true) then
    bad = bad + 1
    if first_bad == "" then first_bad = string.sub(body, 1, 300) end
  end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("bad") end
  print("BENCH_BAD_RESPONSES " .. total)
  for _, t in ipairs(threads) do
    local first = t:get("first_bad")
    if first ~= "" then print("BENCH_FIRST_BAD " .. first) break end
  end
end
"""


async def stored_calls(pg: str, database: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(pg, database))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM call"))
    finally:
        await conn.close()


def load_wrk(
    url: str, key: str, targets: list[str], args: argparse.Namespace, name: str
) -> dict[str, Any]:
    """The same batches as `load`, posted by wrk; calls/s from the rows stored."""
    rng = random.Random(1)
    calls = [{**c, "externalId": "@ID@"} for c in batch_of(targets, args.batch, rng)]
    template = json.dumps({"query": RECORD, "variables": {"calls": calls}}, separators=(",", ":"))
    script = Path(tempfile.mkdtemp(prefix="agencyhub-bench-wrk-")) / f"{name}.lua"
    script.write_text(
        WRK_SCRIPT.format(template=template, prefix=f"{name}-", key=key, batch=args.batch)
    )
    before = run_async(lambda: stored_calls(args.pg, args.database))
    output = wrk(f"{url}/graphql", script, int(args.seconds), args.workers, threads=1)
    stored = run_async(lambda: stored_calls(args.pg, args.database)) - before
    parsed = parse_wrk(output)
    if parsed["bad_responses"] or parsed["non_2xx"] or any(parsed["socket_errors"].values()):
        raise RuntimeError(f"some batches failed:\n{output}")
    accepted = parsed["requests"] * args.batch  # answered in time, each checked in Lua
    if stored < accepted:
        raise RuntimeError(f"wrk saw {accepted} calls accepted, the database holds {stored}")
    return {
        "calls_per_second": round(accepted / parsed["seconds"], 1),
        "accepted": accepted,
        "batches": parsed["requests"],
        "seconds": parsed["seconds"],
        "batch_p50_ms": parsed["p50_ms"],
        "batch_p99_ms": parsed["p99_ms"],
        "client": "wrk -t1",
    }


async def raw_copy(
    pg: str, database: str, agency_id: Any, sub_account_id: Any, rows: int
) -> dict[str, Any]:
    conn = await asyncpg.connect(asyncpg_dsn(pg, database))
    now = datetime.now(UTC)
    records = [
        (
            agency_id,
            uuid.uuid4().hex,
            sub_account_id,
            "OUTBOUND",
            "PHONE",
            "COMPLETED",
            "PREMIUM",
            now,
            10,
            now,
        )
        for _ in range(rows)
    ]
    t0 = time.monotonic()
    await conn.copy_records_to_table(
        "call",
        records=records,
        columns=CALL_COLUMNS,
    )
    elapsed = time.monotonic() - t0
    await conn.close()
    return {"rows": rows, "seconds": round(elapsed, 3), "rows_per_second": round(rows / elapsed, 1)}


async def set_up(url: str, sub_accounts: int) -> tuple[Any, str, list[str]]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await set_up_with(client, sub_accounts)


async def set_up_with(client: httpx.AsyncClient, sub_accounts: int) -> tuple[Any, str, list[str]]:
    """The agency, `sub_accounts` clients with 10 PREMIUM minutes each, an ingest key."""
    agency = await sign_up_on_plan(client, "Ingest", "ingest@example.com", "Agency Unlimited")
    targets = []
    for n in range(sub_accounts):
        body = await gql(
            client,
            CREATE,
            {"i": {"name": f"Client {n}", "loginEmail": f"c{n}@ingest.example"}},
            agency.token,
        )
        target = body["data"]["createSubAccount"]["subAccount"]["id"]
        await gql(
            client,
            GRANT,
            {
                "i": {
                    "fromId": agency.primary_gid,
                    "toId": target,
                    "tier": "PREMIUM",
                    "minutes": "10",
                }
            },
            agency.token,
        )
        targets.append(target)
    key = (await gql(client, KEY, token=agency.token))["data"]["createApiKey"]["secret"]
    return agency, key, targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--sub-accounts", type=int, default=100)
    parser.add_argument("--pg", default=DEFAULT_PG)
    parser.add_argument("--database", default="agencyhub_bench_ingest")
    parser.add_argument("--server-workers", type=int, default=1, help="server processes")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--client",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="load generator (default: wrk when installed)",
    )
    args = parser.parse_args()
    started = timestamp()
    workdir = Path(tempfile.mkdtemp(prefix="agencyhub-bench-ingest-"))
    pg_version = run_async(lambda: recreate_database(args.pg, args.database))
    server: Server | None = None
    try:
        db_url = sqlalchemy_url(args.pg, args.database)
        migrate(db_url, workdir)
        env = app_env(db_url, workdir)
        command = [sys.executable, str(BENCH_DIR / "serve_app.py")]
        if args.server_workers > 1:
            env["REDIS_URL"] = args.redis
            command += ["--workers", str(args.server_workers)]
        server = Server("graphql", command, env, workdir)
        server.wait_ready()
        agency, key, targets = run_async(lambda: set_up(server.url, args.sub_accounts))
        if args.client == "wrk":
            spread = load_wrk(server.url, key, targets, args, "spread")
        else:
            spread = run_async(lambda: load(server.url, key, targets, args))
        print(f"spread over {len(targets)} clients: {spread}", flush=True)
        if args.client == "wrk":
            hot = load_wrk(server.url, key, targets[:1], args, "hot")
        else:
            hot = run_async(lambda: load(server.url, key, targets[:1], args))
        print(f"all on one hot client:        {hot}", flush=True)
        raw = run_async(
            lambda: raw_copy(
                args.pg,
                args.database,
                global_key(agency.agency_gid),
                global_key(targets[0]),
                spread["accepted"],
            )
        )
        print(f"raw asyncpg COPY of as many rows: {raw}", flush=True)
        ratio = spread["calls_per_second"] / raw["rows_per_second"]
        print(f"ratio recordCalls / raw COPY: {ratio:.1%}", flush=True)
        RESULTS_DIR.mkdir(exist_ok=True)
        out = RESULTS_DIR / f"ingest-{started}.json"
        out.write_text(
            json.dumps(
                {
                    "benchmark": "ingest",
                    "started_at": started,
                    "machine": machine_info(pg_version),
                    "settings": vars(args),
                    "spread": spread,
                    "hot_account": hot,
                    "raw_copy": raw,
                    "ratio": round(ratio, 4),
                },
                indent=2,
                default=str,
            )
        )
        print(f"wrote {out}")
    finally:
        if server is not None:
            server.stop()
        run_async(lambda: drop_database(args.pg, args.database))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
