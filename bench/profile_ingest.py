"""Where a `recordCalls` batch spends its time, measured in-process with pyinstrument.

    .venv/bin/python bench/profile_ingest.py [--batches 30] [--batch 1000] [--sub-accounts 100]

Creates a fresh database (agencyhub_profile_ingest), migrates it, builds the app with
`create_app(Settings(...))` inside its lifespan, sets up the agency, its clients with minutes
and an ingest key through the API (as bench/ingest.py does), then posts `--batches` batches of
`--batch` new calls through httpx.ASGITransport (no sockets) one at a time and profiles them.
Prints the calls/s without and with the profiler, pyinstrument's report and a breakdown by
layer (the same layers as profile_viewer.py). Drops the database at the end.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson
from _common import (
    DEFAULT_PG,
    RESULTS_DIR,
    app_settings,
    drop_database,
    migrate,
    recreate_database,
    run_async,
    sqlalchemy_url,
    timestamp,
)
from ingest import RECORD, batch_of, set_up_with
from profile_viewer import breakdown, print_rows
from pyinstrument import Profiler


async def profile(args: argparse.Namespace, url: str, data_dir: Path) -> None:
    from agencyhub.app import create_app

    app = create_app(app_settings(url, data_dir))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=120
        ) as client:
            _, key, targets = await set_up_with(client, args.sub_accounts)
            rng = random.Random(1)
            template = batch_of(targets, args.batch, rng)
            headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}

            def body() -> bytes:
                calls = [{**c, "externalId": uuid.uuid4().hex} for c in template]
                return orjson.dumps({"query": RECORD, "variables": {"calls": calls}})

            async def post(count: int) -> float:
                bodies = [body() for _ in range(count)]  # built before the clock
                started = time.perf_counter()
                for content in bodies:
                    response = await client.post("/graphql", content=content, headers=headers)
                    accepted = orjson.loads(response.content)["data"]["recordCalls"]["accepted"]
                    assert accepted == args.batch, response.content[:300]
                return time.perf_counter() - started

            await post(3)  # warm-up
            plain = await post(args.batches)
            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
            profiled = await post(args.batches)
            profiler.stop()
    calls = args.batches * args.batch
    print(f"unprofiled: {calls / plain:,.0f} calls/s ({plain / args.batches * 1000:.1f} ms/batch)")
    print(f"profiled:   {calls / profiled:,.0f} calls/s")
    print(profiler.output_text(unicode=True, color=False, show_all=False)[:12000])
    session = profiler.last_session
    assert session is not None
    root = session.root_frame()
    assert root is not None
    parts = breakdown(root)
    print_rows("self time by layer", parts.by_layer(root.time), "layer")
    print_rows("top functions by self time", parts.top_self(root.time, 25), "function", "layer")
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"profile-ingest-{timestamp()}.html"
    out.write_text(profiler.output_html())
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--sub-accounts", type=int, default=100)
    parser.add_argument("--pg", default=DEFAULT_PG)
    parser.add_argument("--database", default="agencyhub_profile_ingest")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="agencyhub-profile-ingest-"))
    run_async(lambda: recreate_database(args.pg, args.database))
    try:
        url = sqlalchemy_url(args.pg, args.database)
        migrate(url, workdir)
        run_async(lambda: profile(args, url, workdir))
    finally:
        run_async(lambda: drop_database(args.pg, args.database))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
