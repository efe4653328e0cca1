"""The GraphQL `viewer` query over HTTP next to a bare Starlette + asyncpg endpoint serving the
same JSON (bare_viewer.py), loaded by wrk; with --profile, where it spends its time in-process
(pyinstrument). BENCHMARKS.md, "viewer query over HTTP", says how and why.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import harness
import httpx
import orjson
from harness import Server, Session

VIEWER_QUERY = (
    "{ viewer { user { id email role } agency { id name primarySubAccount { id name status } } } }"
)
BODY = orjson.dumps({"query": VIEWER_QUERY})
TABLES = ("agency", "sub_account", "app_user", "auth_session", "ledger_entry")
TARGET_RATIO = 0.70
BARE_VIEWER = harness.BENCH_DIR / "bare_viewer.py"

# The measured runs send only this: a Lua response() hook costs wrk CPU per response, and on
# 2 cores that CPU is taken from the server and PostgreSQL.
LUA_REQUEST = """
wrk.method = "POST"
wrk.body = BODY
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. TOKEN
"""
# The warm-up runs add this: every response must be a 200 with exactly the expected body.
LUA_CHECK = """
bad = 0
first_bad = ""
function response(status, headers, body)
  if status ~= 200 or body ~= EXPECTED then
    bad = bad + 1
    if first_bad == "" then first_bad = status .. " " .. string.sub(body, 1, 300) end
  end
end
function done(summary, latency, requests)
  report("bad_responses", total("bad"))
  report("first_bad_response", first("first_bad"))
end
"""


@dataclass
class Run:
    server: str
    round: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: dict[str, int]
    warmup: dict[str, Any] | None
    server_cpu_seconds: float
    server_cpu_ms_per_request: float | None

    @property
    def failures(self) -> int:
        failed = self.non_2xx + sum(self.socket_errors.values())
        return failed + (self.warmup["failures"] if self.warmup else 0)


async def seed(client: httpx.AsyncClient, agencies: int) -> str:
    """The benchmark's agency and `agencies` others through the API, 4 at a time (each costs
    an argon2 hash); returns the benchmark owner's token."""
    token = (await harness.sign_up_on_plan(client, "Bench", "bench@example.com")).token
    gate = asyncio.Semaphore(4)

    async def one(i: int) -> None:
        async with gate:
            await harness.sign_up_on_plan(client, f"Agency {i:04d}", f"owner{i:04d}@example.com")

    await asyncio.gather(*(one(i) for i in range(agencies)))
    return token


def fetch_viewer(url: str, token: str) -> tuple[int, bytes]:
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    response = httpx.post(url, content=BODY, headers=headers, timeout=10)
    return response.status_code, response.content


def verify(graphql_url: str, bare_url: str, token: str) -> tuple[bytes, bytes]:
    """Both endpoints give the same JSON for the token; the bare one refuses a wrong token."""
    (g_status, g_body), (b_status, b_body) = (
        fetch_viewer(u, token) for u in (graphql_url, bare_url)
    )
    g_json = orjson.loads(g_body)
    problems = []
    if g_status != 200 or b_status != 200:
        problems.append(f"status: graphql {g_status}, bare {b_status}")
    if "errors" in g_json or not (g_json.get("data") or {}).get("viewer"):
        problems.append("the GraphQL response has errors or no viewer")
    if g_json != orjson.loads(b_body):
        problems.append("the two responses differ")
    if fetch_viewer(bare_url, "ahs_not-a-real-token")[0] != 401:
        problems.append("the bare endpoint accepted a bad token")
    if problems:
        raise SystemExit(
            f"verification FAILED: {'; '.join(problems)}\n  graphql: {g_body.decode()}"
            f"\n  bare:    {b_body.decode()}"
        )
    return g_body, b_body


def measure(
    session: Session, server: Server, path: str, token: str, expected: bytes, args: Any, no: int
) -> Run:
    """A checked warm-up, then the measured run with the server's CPU around it."""
    url, workdir = server.url + path, session.workdir
    values = {"BODY": BODY.decode(), "TOKEN": token}
    plain = harness.lua_script(workdir / f"{server.name}.lua", LUA_REQUEST, **values)
    warmup = None
    if args.warmup > 0:
        checked = harness.lua_script(
            workdir / f"{server.name}-checked.lua",
            LUA_REQUEST + LUA_CHECK,
            **values,
            EXPECTED=expected.decode(),
        )
        w = harness.wrk(url, checked, args.warmup, args.connections, args.threads)
        warmup = {k: w[k] for k in ("requests_per_second", "requests", "non_2xx", "socket_errors")}
        warmup.update(w["lua"])  # bad_responses: not a 200 with the expected body
        warmup["failures"] = w["lua"]["bad_responses"] + sum(w["socket_errors"].values())
    cpu_before = server.cpu_seconds()
    run = harness.wrk(url, plain, args.duration, args.connections, args.threads)
    cpu = server.cpu_seconds() - cpu_before
    del run["lua"]
    per_request = round(1000 * cpu / run["requests"], 4) if run["requests"] else None
    return Run(server.name, no, **run, warmup=warmup, server_cpu_seconds=round(cpu, 2),
               server_cpu_ms_per_request=per_request)  # fmt: skip


def over_http(args: Any) -> int:
    harness.require_wrk()
    with Session("viewer_http", args) as session:
        [graphql] = session.start("graphql")
        [bare] = session.start("bare", argv=[sys.executable, str(BARE_VIEWER)])
        started = time.monotonic()
        token = harness.over_api(graphql.url, lambda client: seed(client, args.agencies))
        seed_seconds = time.monotonic() - started
        counts = harness.run_async(lambda: harness.row_counts(args.pg, args.database, TABLES))
        print(f"seeded in {seed_seconds:.1f}s: {counts}", flush=True)
        urls = (graphql.url + "/graphql", bare.url + "/viewer")
        bodies = dict(zip(("graphql", "bare"), verify(*urls, token), strict=True))
        print(f"verified: both endpoints return {bodies['graphql'].decode()}", flush=True)
        targets = {"bare": (bare, "/viewer"), "graphql": (graphql, "/graphql")}
        print(
            f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.warmup}s"
            f" checked warm-up before each run, {args.rounds} round(s)",
            flush=True,
        )
        runs = []
        for no in range(1, args.rounds + 1):
            for name, (server, path) in targets.items():
                runs.append(run := measure(session, server, path, token, bodies[name], args, no))
                print(
                    f"  round {no} {name:<8} {run.requests_per_second:9.1f} req/s  p50"
                    f" {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms  server CPU"
                    f" {run.server_cpu_ms_per_request or 0:.3f} ms/req"
                    + (f"  FAILURES {run.failures}" if run.failures else ""),
                    flush=True,
                )
        profile = None
        if args.py_spy > 0:
            print(f"one more GraphQL run, py-spy on the server for {args.py_spy}s", flush=True)
            profile = harness.py_spy_during(
                session,
                graphql,
                "viewer",
                args.py_spy,
                lambda: measure(session, graphql, "/graphql", token, bodies["graphql"], args, 0),
            )
            harness.print_top_self(profile)
        verify(*urls, token)  # still correct after the load
        best = {
            name: max((r for r in runs if r.server == name), key=lambda r: r.requests_per_second)
            for name in targets
        }
        ratio = best["graphql"].requests_per_second / best["bare"].requests_per_second
        failed = sum(r.failures for r in runs)
        print(f"\n{'':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU ms/req':>12}")
        for name, label in (("bare", "bare Starlette + asyncpg"), ("graphql", "GraphQL")):
            r = best[name]
            print(
                f"{label:<28}{r.requests_per_second:>10.1f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}"
                f"{r.server_cpu_ms_per_request or 0:>12.3f}"
            )
        print(f"ratio GraphQL / bare: {ratio:.1%} (target >= {TARGET_RATIO:.0%})")
        spread = {n: [r.requests_per_second for r in runs if r.server == n] for n in targets}
        print(f"all runs (req/s): {spread}")
        checked = "every warm-up body checked" if args.warmup else "bodies not checked: --warmup 0"
        print(f"failed requests: {failed} ({checked})")
        session.write(
            {
                "settings": {
                    "duration_s": args.duration,
                    "warmup_s": args.warmup,
                    "connections": args.connections,
                    "wrk_threads": args.threads,
                    "rounds": args.rounds,
                    "agencies": args.agencies + 1,
                },
                "dataset": counts,
                "seed_seconds": round(seed_seconds, 1),
                "query": VIEWER_QUERY,
                "response": orjson.loads(bodies["graphql"]),
                "best": {name: asdict(run) for name, run in best.items()},
                "ratio": round(ratio, 4),
                "target_ratio": TARGET_RATIO,
                "runs": [asdict(r) for r in runs],
                "failed_requests": failed,
                "py_spy": profile and {k: v for k, v in profile.items() if k != "run_under_py_spy"},
            }
        )
        return 1 if failed else 0


def in_process(args: Any) -> int:
    """`--requests` viewer queries, `--concurrency` at a time, through httpx.ASGITransport,
    unprofiled and then under pyinstrument."""
    with Session("profile_viewer", args) as session:

        async def run() -> dict[str, Any]:
            async with harness.in_process_app(session.url, session.workdir) as (client, _):
                started = time.monotonic()
                token = await seed(client, args.agencies)
                seed_seconds = time.monotonic() - started
                headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
                expected = (await client.post("/graphql", content=BODY, headers=headers)).content
                if b'"errors"' in expected or b'"viewer":null' in expected:
                    raise SystemExit(f"the viewer query failed: {expected!r}")
                failures = 0

                async def worker(count: int) -> None:
                    nonlocal failures
                    for _ in range(count):
                        response = await client.post("/graphql", content=BODY, headers=headers)
                        failures += response.status_code != 200 or response.content != expected

                async def load(total: int = args.requests) -> None:
                    per, extra = divmod(total, args.concurrency)
                    await asyncio.gather(
                        *(worker(per + (i < extra)) for i in range(args.concurrency))
                    )

                await load(args.requests // 10)  # warm-up
                html = harness.RESULTS_DIR / f"profile_viewer-{session.started}.html"
                profile = await harness.profiled(load, args.requests, html)
            return {"seed_seconds": round(seed_seconds, 1), "failures": failures, **profile}

        found = harness.run_async(run)
        rates = [round(1000 / found[k], 1) for k in ("ms_per_request", "ms_per_request_profiled")]
        print(
            f"\n{args.requests} requests, {args.concurrency} concurrent, in-process: {rates[0]:.0f}"
            f" req/s unprofiled ({found['ms_per_request']:.3f} ms per request), {rates[1]:.0f}"
            f" req/s profiled; {found['failures']} failures"
        )
        settings = {k: getattr(args, k) for k in ("requests", "concurrency")}
        settings["agencies"] = args.agencies + 1
        counts = harness.run_async(lambda: harness.row_counts(args.pg, args.database, TABLES))
        session.write(
            {
                "settings": settings,
                "dataset": counts,
                "requests_per_second_in_process": rates[0],
                "requests_per_second_in_process_profiled": rates[1],
                **found,
            }
        )
        return 1 if found["failures"] else 0


def main() -> int:
    parser = harness.arguments(__doc__, "agencyhub_bench")
    parser.add_argument("--duration", type=int, default=15, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=2, help="bare+graphql pairs; best counts")
    parser.add_argument("--warmup", type=int, default=3, help="checked seconds before each run")
    parser.add_argument("--agencies", type=int, default=200, help="extra agencies to sign up")
    parser.add_argument("--profile", action="store_true", help="in-process, under pyinstrument")
    parser.add_argument("--requests", type=int, default=3000, help="with --profile")
    parser.add_argument("--concurrency", type=int, default=16, help="with --profile")
    parser.add_argument(
        "--py-spy",
        type=int,
        default=0,
        metavar="SECONDS",
        help="after the rounds, one more GraphQL run with py-spy on the server for SECONDS",
    )
    args = parser.parse_args()
    return in_process(args) if args.profile else over_http(args)


if __name__ == "__main__":
    raise SystemExit(main())
