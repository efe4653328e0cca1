"""Where the GraphQL `viewer` query spends its time, measured in-process with pyinstrument.

    .venv/bin/python bench/profile_viewer.py [--requests 3000] [--concurrency 16]

Creates a fresh database (agencyhub_profile), migrates it, builds the app with
`create_app(Settings(...))`, enters its lifespan and signs up the benchmark agency plus
`--agencies` others through the API. Then sends `--requests` viewer queries through
httpx.ASGITransport (no sockets, no uvicorn/httptools: the app, its database round trips and
the in-process client) on uvloop and profiles them. Prints pyinstrument's text report, a
breakdown by layer and the top functions; saves the HTML report and a JSON summary to
bench/results/. Drops the database at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from _common import (
    DEFAULT_PG,
    RESULTS_DIR,
    ROOT,
    VIEWER_QUERY,
    app_settings,
    drop_database,
    machine_info,
    migrate,
    recreate_database,
    run_async,
    seed,
    sqlalchemy_url,
    table_counts,
    timestamp,
)
from pyinstrument import Profiler
from pyinstrument.frame import Frame

BODY = orjson.dumps({"query": VIEWER_QUERY})

# Layers, matched on the file path in this order; the first match wins. Frames without a file
# (C functions) belong to the layer of their caller.
SITE = "/site-packages/"
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("strawberry", (SITE + "strawberry/",)),
    ("graphql-core", (SITE + "graphql/",)),
    ("sqlalchemy", (SITE + "sqlalchemy/",)),
    ("asyncpg", (SITE + "asyncpg/",)),
    ("starlette", (SITE + "starlette/",)),
    ("httpx client (not server work)", (SITE + "httpx/", SITE + "httpcore/")),
    ("anyio", (SITE + "anyio/",)),
    ("pydantic", (SITE + "pydantic/", SITE + "pydantic_core/")),
    ("other libraries", (SITE,)),
    (
        "agencyhub code",
        tuple(
            str(ROOT / pkg) + "/"
            for pkg in ("agencyhub", "resolvers", "schema", "persistence", "domain")
        ),
    ),
    ("benchmark driver", (str(ROOT / "bench") + "/",)),
    ("asyncio / stdlib", ("/lib/python3",)),
)


SERVER_LAYERS = frozenset(
    (
        "strawberry",
        "graphql-core",
        "sqlalchemy",
        "asyncpg",
        "starlette",
        "anyio",
        "pydantic",
        "other libraries",
        "agencyhub code",
    )
)
EVENT_LOOP = "event loop (uvloop C code, incl. idle wait)"


def layer_of(path: str | None) -> str | None:
    if not path or path.startswith("<"):
        return None
    for name, prefixes in LAYERS:
        if any(prefix in path for prefix in prefixes):
            return name
    return "other"


def self_time(frame: Frame) -> float:
    return max(frame.time - sum(child.time for child in frame.children), 0.0)


@dataclass
class Breakdown:
    layers: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    self_time: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    inclusive: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    layer: dict[str, str] = field(default_factory=dict)
    callers: dict[str, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )

    def top_self(self, total: float, n: int) -> list[dict[str, Any]]:
        ranked = sorted(self.self_time.items(), key=lambda kv: kv[1], reverse=True)[:n]
        return [
            {
                "function": name,
                "seconds": round(seconds, 3),
                "percent": round(100 * seconds / total, 1),
                "layer": self.layer[name],
                "mostly_called_from": max(self.callers[name].items(), key=lambda kv: kv[1])[0],
            }
            for name, seconds in ranked
        ]

    def top_inclusive(
        self, total: float, n: int, layers: frozenset[str] = SERVER_LAYERS
    ) -> list[dict[str, Any]]:
        server = [(k, v) for k, v in self.inclusive.items() if self.layer[k] in layers]
        ranked = sorted(server, key=lambda kv: kv[1], reverse=True)[:n]
        return [
            {
                "function": name,
                "seconds": round(seconds, 3),
                "percent": round(100 * seconds / total, 1),
                "layer": self.layer[name],
            }
            for name, seconds in ranked
        ]

    def by_layer(self, total: float) -> list[dict[str, Any]]:
        ranked = sorted(self.layers.items(), key=lambda kv: kv[1], reverse=True)
        return [
            {"layer": name, "seconds": round(s, 3), "percent": round(100 * s / total, 1)}
            for name, s in ranked
        ]


def breakdown(root: Frame) -> Breakdown:
    """Self time per layer and per function, inclusive time per function.

    pyinstrument's synthetic frames ("[self]", "[await]") count for their parent; C functions
    ("<built-in>") are named on their own but count for their caller's layer, except the event
    loop's own run call, whose self time is the loop's C code and its idle wait. With
    async_mode off, each task (and each SQLAlchemy greenlet) is its own stack from the loop.
    """
    result = Breakdown()

    def walk(frame: Frame, name: str, layer: str, caller: str, open_names: frozenset[str]) -> None:
        if not frame.is_synthetic:
            parent = name
            path = frame.file_path or ""
            if path == "<built-in>":
                name = f"{frame.function} (built-in)"
                if frame.function in ("run_until_complete", "run_forever"):
                    layer = EVENT_LOOP
            else:
                name = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
                layer = layer_of(path) or layer
            result.layer.setdefault(name, layer)
            if name != parent:  # recursion: keep the outer caller
                caller = parent
        own = self_time(frame)
        result.layers[layer] += own
        result.self_time[name] += own
        result.callers[name][caller] += own
        if name not in open_names:  # recursion and [self] children count once
            result.inclusive[name] += frame.time
        for child in frame.children:
            walk(child, name, layer, caller, open_names | {name})

    walk(root, "root", "other", "root", frozenset())
    result.layer.setdefault("root", "other")
    return result


async def profile_posts(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    body: bytes,
    requests: int,
    html: Path,
    top: int,
    top_agencyhub: int = 15,
) -> dict[str, Any]:
    """`requests` POSTs of `body` under pyinstrument, one at a time; the HTML report goes to
    `html`, the breakdown by layer and function into the returned summary."""
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    started = time.perf_counter()
    profiler.start()
    for _ in range(requests):
        await client.post("/graphql", content=body, headers=headers)
    profiler.stop()
    elapsed = time.perf_counter() - started
    return profile_summary(profiler, elapsed, requests, html, top, top_agencyhub)


def profile_summary(
    profiler: Profiler, elapsed: float, requests: int, html: Path, top: int, top_agencyhub: int
) -> dict[str, Any]:
    """Writes the HTML report (after the measurement) and summarises the profile."""
    session = profiler.last_session
    assert session is not None
    root = session.root_frame(trim_stem=False)
    assert root is not None
    found = breakdown(root)
    total = root.time
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(profiler.output_html())
    return {
        "requests": requests,
        "ms_per_request_profiled": round(1000 * elapsed / requests, 2),
        "html": str(html.relative_to(ROOT)),
        "layers_self": found.by_layer(total),
        "top_self": found.top_self(total, top),
        "top_inclusive": found.top_inclusive(total, top),
        "top_inclusive_agencyhub": found.top_inclusive(
            total, top_agencyhub, frozenset({"agencyhub code"})
        ),
        "text": profiler.output_text(unicode=True, color=False, show_all=False),
    }


def print_rows(title: str, rows: list[dict[str, Any]], label: str, extra: str = "") -> None:
    print(f"\n{title}")
    for row in rows:
        tail = f"   <- {row[extra]}" if extra else ""
        print(f"  {row['percent']:5.1f}%  {row['seconds']:8.3f}s  {row[label]}{tail}")


async def profile(args: argparse.Namespace, url: str, data_dir: Path) -> dict[str, Any]:
    from agencyhub.app import create_app

    app = create_app(app_settings(url, data_dir))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            seed_started = time.monotonic()
            token = await seed(client, args.agencies)
            seed_seconds = time.monotonic() - seed_started
            headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}

            first = await client.post("/graphql", content=BODY, headers=headers)
            expected = first.content
            body = orjson.loads(expected)
            if first.status_code != 200 or "errors" in body or not body["data"]["viewer"]:
                raise SystemExit(f"the viewer query failed: {first.status_code} {expected!r}")

            failures = 0

            async def worker(count: int) -> None:
                nonlocal failures
                for _ in range(count):
                    response = await client.post("/graphql", content=BODY, headers=headers)
                    if response.status_code != 200 or response.content != expected:
                        failures += 1

            async def load(total: int) -> None:
                per, extra = divmod(total, args.concurrency)
                await asyncio.gather(*(worker(per + (i < extra)) for i in range(args.concurrency)))

            await load(args.warmup)
            started = time.perf_counter()
            await load(args.requests)  # the same load unprofiled, for the rate without overhead
            unprofiled = time.perf_counter() - started
            profiler = Profiler(interval=args.interval, async_mode="disabled")
            started = time.perf_counter()
            profiler.start()
            await load(args.requests)
            profiler.stop()
            elapsed = time.perf_counter() - started
    return {
        "profiler": profiler,
        "elapsed": elapsed,
        "unprofiled": unprofiled,
        "failures": failures,
        "seed_seconds": seed_seconds,
        "response": body,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=300, help="unprofiled requests first")
    parser.add_argument("--agencies", type=int, default=200, help="extra agencies to sign up")
    parser.add_argument("--interval", type=float, default=0.0005, help="sampling interval (s)")
    parser.add_argument("--top", type=int, default=30, help="rows in the function tables")
    parser.add_argument("--pg", default=DEFAULT_PG, help="user@host:port of PostgreSQL")
    parser.add_argument("--database", default="agencyhub_profile")
    args = parser.parse_args()

    started_at = timestamp()
    data_dir = Path(tempfile.mkdtemp(prefix="agencyhub-profile-"))
    pg_version = run_async(lambda: recreate_database(args.pg, args.database))
    try:
        url = sqlalchemy_url(args.pg, args.database)
        migrate(url, data_dir)
        outcome = run_async(lambda: profile(args, url, data_dir))
        counts = run_async(lambda: table_counts(args.pg, args.database))
    finally:
        run_async(lambda: drop_database(args.pg, args.database))
        shutil.rmtree(data_dir, ignore_errors=True)

    profiler: Profiler = outcome["profiler"]
    print(profiler.output_text(unicode=True, color=False, show_all=False))

    session = profiler.last_session
    assert session is not None
    root = session.root_frame(trim_stem=False)
    assert root is not None
    total = root.time
    found = breakdown(root)
    rate = args.requests / outcome["elapsed"]
    plain_rate = args.requests / outcome["unprofiled"]
    print(
        f"{args.requests} requests, {args.concurrency} concurrent, in-process:"
        f" {plain_rate:.0f} req/s unprofiled ({1000 / plain_rate:.3f} ms per request),"
        f" {rate:.0f} req/s profiled; {outcome['failures']} failures"
    )
    layer_rows = found.by_layer(total)
    self_rows = found.top_self(total, args.top)
    inclusive_rows = found.top_inclusive(total, args.top)
    print_rows("Self time by layer (C calls count for their caller's layer):", layer_rows, "layer")
    print_rows(
        f"Top {args.top} functions by self time (<- the caller it mostly came from):",
        self_rows,
        "function",
        "mostly_called_from",
    )
    print_rows(
        f"Top {args.top} app and library functions by inclusive time:", inclusive_rows, "function"
    )
    ours = found.top_inclusive(total, 15, frozenset({"agencyhub code"}))
    print_rows("Top 15 agencyhub functions by inclusive time:", ours, "function")
    sqlalchemy = found.top_inclusive(total, 15, frozenset({"sqlalchemy"}))
    print_rows(
        "Top 15 SQLAlchemy functions by inclusive time (greenlet stacks are separate roots):",
        sqlalchemy,
        "function",
    )

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    html = RESULTS_DIR / f"profile_viewer-{started_at}.html"
    html.write_text(profiler.output_html())
    summary = RESULTS_DIR / f"profile_viewer-{started_at}.json"
    summary.write_text(
        json.dumps(
            {
                "benchmark": "profile_viewer",
                "started_at": started_at,
                "machine": machine_info(pg_version),
                "settings": {
                    "requests": args.requests,
                    "concurrency": args.concurrency,
                    "warmup": args.warmup,
                    "interval_s": args.interval,
                    "agencies": args.agencies + 1,
                },
                "dataset": counts,
                "elapsed_s": round(outcome["elapsed"], 3),
                "requests_per_second_in_process": round(plain_rate, 1),
                "requests_per_second_in_process_profiled": round(rate, 1),
                "failures": outcome["failures"],
                "profiled_seconds": round(total, 3),
                "layers_self": layer_rows,
                "top_self": self_rows,
                "top_inclusive": inclusive_rows,
                "top_inclusive_agencyhub": ours,
                "top_inclusive_sqlalchemy": sqlalchemy,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {html}\nwrote {summary}")
    return 1 if outcome["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
