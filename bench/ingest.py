"""Usage ingestion: `recordCalls` calls/s over HTTP (wrk), spread over the clients and all on one
hot client, next to asyncpg COPY of as many rows; with --profile, where a batch's CPU goes
in-process (pyinstrument). BENCHMARKS.md, "Usage ingestion through recordCalls".
"""

from __future__ import annotations

import functools
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import harness
import httpx
import orjson
from harness import Session

RECORD = """mutation($calls: [CallInput!]!) { recordCalls(input: {calls: $calls}) {
  accepted duplicates rejected { code } } }"""
# Each request: the batch with a fresh externalId for every call; each response must have
# accepted the whole batch.
LUA = """
counter = 0
bad = 0
first_bad = ""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. KEY
function request()
  counter = counter + 1
  local n = 0
  local body = string.gsub(TEMPLATE, "@ID@", function()
    n = n + 1
    return PREFIX .. thread_no .. "-" .. counter .. "-" .. n
  end)
  return wrk.format(nil, nil, nil, body)
end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, ACCEPTED, 1, true) then
    bad = bad + 1
    if first_bad == "" then first_bad = string.sub(body, 1, 300) end
  end
end
function done(summary, latency, requests)
  report("bad_responses", total("bad"))
  report("first_bad_response", first("first_bad"))
end
"""


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


async def set_up(client: httpx.AsyncClient, sub_accounts: int) -> tuple[Any, str, list[str]]:
    """The agency, `sub_accounts` clients with 10 PREMIUM minutes each, an ingest key."""
    plan = "Agency Unlimited"
    agency = await harness.sign_up_on_plan(client, "Ingest", "ingest@example.com", plan)
    targets = []
    for n in range(sub_accounts):
        made = await harness.create_sub_account(
            client, agency.token, f"Client {n}", f"c{n}@ingest.example"
        )
        await harness.transfer(client, agency.token, agency.primary_gid, made, 10, "PREMIUM")
        targets.append(made)
    return agency, await harness.api_key(client, agency.token), targets


def load(
    session: Session,
    server: harness.Server,
    url: str,
    key: str,
    targets: list[str],
    name: str,
    args: Any,
) -> dict:
    """wrk posting batches for `--seconds`; calls/s from the verified batches, which the
    database must hold."""
    calls = [{**c, "externalId": "@ID@"} for c in batch_of(targets, args.batch, random.Random(1))]
    template = json.dumps({"query": RECORD, "variables": {"calls": calls}}, separators=(",", ":"))
    script = harness.lua_script(
        session.workdir / f"{name}.lua",
        LUA,
        TEMPLATE=template,
        PREFIX=f"{name}-",
        KEY=key,
        ACCEPTED=f'"accepted":{args.batch},',
    )
    before = harness.run_async(lambda: session.fetchval("SELECT count(*) FROM call"))
    with harness.cpu_used({"app server": [server.process.pid]}) as cpu:
        run = harness.wrk(f"{url}/graphql", script, args.seconds, args.workers)
    stored = harness.run_async(lambda: session.fetchval("SELECT count(*) FROM call")) - before
    if run["lua"]["bad_responses"] or run["non_2xx"] or any(run["socket_errors"].values()):
        raise RuntimeError(f"some batches failed: {run}")
    accepted = run["requests"] * args.batch  # answered in time, each checked in Lua
    if stored < accepted:
        raise RuntimeError(f"wrk saw {accepted} calls accepted, the database holds {stored}")
    return {
        "calls_per_second": round(accepted / run["seconds"], 1),
        "accepted": accepted,
        "batches": run["requests"],
        "seconds": run["seconds"],
        "batch_p50_ms": run["p50_ms"],
        "batch_p99_ms": run["p99_ms"],
        "client": "wrk -t1",
        # CPU per call moves less with the machine's other load than the rate does.
        "server_cpu_ms_per_call": _per_call(cpu["app server"], accepted),
        "postgresql_cpu_ms_per_call": _per_call(cpu["postgresql"], accepted),
        "machine_busy_cores": round(cpu["machine busy"] / cpu["wall_seconds"], 2),
    }


def _per_call(seconds: float, calls: int) -> float | None:
    return round(1000 * seconds / calls, 3) if calls else None


async def raw_copy(session: Session, agency_id: Any, sub_account_id: Any, rows: int) -> dict:
    now = datetime.now(UTC)
    same = ("OUTBOUND", "PHONE", "COMPLETED", "PREMIUM", now, 10, now)
    costs = (62_500, 50_000, 0, sub_account_id)  # what ingestion writes for the call
    records = [(agency_id, uuid.uuid4().hex, sub_account_id, *same, *costs) for _ in range(rows)]
    async with session.connect() as conn:
        started = time.monotonic()
        await conn.copy_records_to_table("call", records=records, columns=harness.CALL_COLUMNS)
        elapsed = time.monotonic() - started
    return {"rows": rows, "seconds": round(elapsed, 3), "rows_per_second": round(rows / elapsed, 1)}


def over_http(args: Any) -> int:
    harness.require_wrk()
    with Session("ingest", args) as session:
        argv, env = harness.SERVE_APP, session.env()
        if args.server_workers > 1:
            argv, env["REDIS_URL"] = [*argv, "--workers", str(args.server_workers)], args.redis
        [server] = session.start("graphql", argv=argv, env=env)
        prepare = functools.partial(set_up, sub_accounts=args.sub_accounts)
        agency, key, targets = harness.over_api(server.url, prepare)
        spread = load(session, server, server.url, key, targets, "spread", args)
        print(f"spread over {len(targets)} clients: {spread}", flush=True)
        hot = load(session, server, server.url, key, targets[:1], "hot", args)
        print(f"all on one hot client:        {hot}", flush=True)
        profile = None
        if args.py_spy > 0:
            print(f"the hot load again, py-spy on the server for {args.py_spy}s", flush=True)
            profile = harness.py_spy_during(
                session,
                server,
                "ingest",
                args.py_spy,
                lambda: load(session, server, server.url, key, targets[:1], "hot-spied", args),
                subprocesses=args.server_workers > 1,
            )
            harness.print_top_self(profile)
        ids = harness.global_key(agency.agency_gid), harness.global_key(targets[0])
        raw = harness.run_async(lambda: raw_copy(session, *ids, spread["accepted"]))
        print(f"raw asyncpg COPY of as many rows: {raw}", flush=True)
        ratio = spread["calls_per_second"] / raw["rows_per_second"]
        print(f"ratio recordCalls / raw COPY: {ratio:.1%}", flush=True)
        session.write(
            {
                "settings": vars(args),
                "spread": spread,
                "hot_account": hot,
                "raw_copy": raw,
                "ratio": round(ratio, 4),
                "py_spy": profile and {k: v for k, v in profile.items() if k != "run_under_py_spy"},
            }
        )
    return 0


def in_process(args: Any) -> int:
    """`--batches` batches posted one at a time through httpx.ASGITransport, unprofiled and
    then under pyinstrument."""
    with Session("profile_ingest", args) as session:

        async def run() -> dict[str, Any]:
            async with harness.in_process_app(session.url, session.workdir) as (client, _):
                _, key, targets = await set_up(client, args.sub_accounts)
                template = batch_of(targets, args.batch, random.Random(1))
                headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}

                def body() -> bytes:
                    calls = [{**c, "externalId": uuid.uuid4().hex} for c in template]
                    return orjson.dumps({"query": RECORD, "variables": {"calls": calls}})

                # The bodies of the warm-up, the unprofiled and the profiled run, before the clock.
                runs = iter([[body() for _ in range(n)] for n in (3, args.batches, args.batches)])

                async def load() -> None:
                    for content in next(runs):
                        response = await client.post("/graphql", content=content, headers=headers)
                        answer = orjson.loads(response.content)["data"]["recordCalls"]
                        assert answer["accepted"] == args.batch, response.content[:300]

                await load()
                html = harness.RESULTS_DIR / f"profile_ingest-{session.started}.html"
                return await harness.profiled(load, args.batches, html)

        found = harness.run_async(run)
        rates = [
            round(args.batch * 1000 / found[k], 1)
            for k in ("ms_per_request", "ms_per_request_profiled")
        ]
        print(
            f"\nunprofiled: {rates[0]:,.0f} calls/s ({found['ms_per_request']:.1f} ms/batch);"
            f" profiled: {rates[1]:,.0f} calls/s"
        )
        session.write(
            {
                "settings": vars(args),
                "calls_per_second_in_process": rates[0],
                "calls_per_second_profiled": rates[1],
                **found,
            }
        )
    return 0


def main() -> int:
    parser = harness.arguments(__doc__, "agencyhub_bench_ingest")
    parser.add_argument("--seconds", type=int, default=15, help="of load, spread and hot each")
    parser.add_argument("--workers", type=int, default=4, help="wrk connections")
    parser.add_argument("--batch", type=int, default=1000, help="calls per recordCalls")
    parser.add_argument("--sub-accounts", type=int, default=100)
    parser.add_argument("--server-workers", type=int, default=1, help="server processes")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14", help="with 2+ of them")
    parser.add_argument("--profile", action="store_true", help="in-process, under pyinstrument")
    parser.add_argument("--batches", type=int, default=30, help="with --profile")
    parser.add_argument(
        "--py-spy",
        type=int,
        default=0,
        metavar="SECONDS",
        help="after the hot run, the hot load again with py-spy on the server for SECONDS",
    )
    args = parser.parse_args()
    return in_process(args) if args.profile else over_http(args)


if __name__ == "__main__":
    raise SystemExit(main())
