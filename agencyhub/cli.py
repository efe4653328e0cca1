"""The command line: serve, migrate, seed-demo, export-schema, the jobs, reconcile,
check-ledger."""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import logging.config
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from agencyhub.logs import logging_config
from agencyhub.settings import ConfigurationError, Settings
from domain.errors import DomainError

WORKER_HEALTHCHECK_SECONDS = 30


def websocket_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's WebSocket settings for this app (`serve` and the benchmarks use them)."""
    from agencyhub.websocket import SmallDeflate

    return {
        "ws": SmallDeflate,  # uvicorn's websockets-sansio, deflate with small windows
        "ws_per_message_deflate": settings.ws_per_message_deflate,
        # The app's graphql-transport-ws pings keep idle sockets alive and find dead peers;
        # uvicorn's WebSocket pings would double the work (agencyhub/websocket.py).
        **({"ws_ping_interval": None} if settings.ws_keepalive_seconds > 0 else {}),
    }


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from agencyhub.app import browser_origins
    from agencyhub.metrics import multiprocess_directory_for

    try:
        browser_origins(settings)
        settings.secret()  # before any worker starts: each would stop on it with a traceback
    except ValueError as error:
        print(f"agencyhub: {error}", file=sys.stderr)
        return 2
    workers = args.workers or settings.workers
    if workers > 1 and (settings.is_embedded or not settings.redis_url):
        print(
            "agencyhub: several workers share events and data only through PostgreSQL and "
            "Redis: set DATABASE_URL and REDIS_URL, or run one worker.",
            file=sys.stderr,
        )
        return 2
    options: dict[str, Any] = {
        "host": args.host or settings.host,
        "port": args.port or settings.port,
        "loop": "auto",  # uvloop when installed
        "http": "auto",  # httptools when installed
        **websocket_options(settings),
        "log_level": "info",
        # Applied in each worker too: JSON or console lines, uvicorn's through the same
        # handler; uvicorn's access log is off, RequestObserver logs each request (ACCESS_LOG).
        "log_config": logging_config(settings.log_format, settings.log_level),
        "access_log": False,
        "proxy_headers": True,
        "lifespan": "on",
    }
    with multiprocess_directory_for(workers):
        return _run_server(settings, workers, options)


def _run_server(settings: Settings, workers: int, options: dict[str, Any]) -> int:
    import uvicorn

    from agencyhub.app import create_app

    if workers > 1:
        # Each worker process builds its app from the environment (as this one did).
        print(
            f"agencyhub: GraphQL at http://{options['host']}:{options['port']}/graphql "
            f"(PostgreSQL, Redis, {workers} worker processes)",
            flush=True,
        )
        uvicorn.run(
            "agencyhub.app:create_app",
            factory=True,
            workers=workers,
            # uvicorn kills a worker that has not answered its supervisor's ping within this
            # (5 s by default), and a new worker answers only once it has imported the app: on
            # a busy machine that took longer, and workers were killed and restarted in a loop.
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
            **options,
        )
        return 0
    config = uvicorn.Config(create_app(settings), **options)
    database = (
        f"embedded SQLite {settings.effective_database_url}"
        if settings.is_embedded
        else "PostgreSQL"
    )
    broker = "Redis" if settings.redis_url else "in-process broker"
    print(
        f"agencyhub: GraphQL at http://{config.host}:{config.port}/graphql ({database}, {broker})",
        flush=True,
    )
    uvicorn.Server(config).run()
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from persistence.database import Database
    from persistence.migrate import upgrade

    async def run() -> None:
        if settings.is_embedded:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(settings.effective_database_url)
        try:
            await upgrade(database.engine, args.revision)
        finally:
            await database.dispose()

    asyncio.run(run())
    print(f"agencyhub: database at {args.revision}", flush=True)
    return 0


def _export_schema(settings: Settings, args: argparse.Namespace) -> int:
    from schema import build_schema

    sdl = build_schema().as_str() + "\n"
    if args.output == "-":
        sys.stdout.write(sdl)
    else:
        Path(args.output).write_text(sdl)
        print(f"agencyhub: wrote {args.output}", flush=True)
    return 0


def _seed_demo(settings: Settings, args: argparse.Namespace) -> int:
    from agencyhub.demo import seed_demo

    return asyncio.run(seed_demo(settings))


def _create_api_key(settings: Settings, args: argparse.Namespace) -> int:
    from agencyhub.app import running_services
    from persistence.agencies import agency_exists
    from resolvers.api_keys import issue_api_key
    from resolvers.global_id import from_global_id

    async def run() -> int:
        decoded = from_global_id(args.agency)
        agency_id = decoded[1] if decoded and decoded[0] == "Agency" else None
        if agency_id is None:
            try:
                agency_id = uuid.UUID(args.agency)
            except ValueError:
                print("agencyhub: --agency takes the agency's global ID or UUID", file=sys.stderr)
                return 2
        async with running_services(settings) as (services, relay):
            async with services.database.read() as conn:
                known = await agency_exists(conn, agency_id)
            if not known:
                print("agencyhub: no such agency", file=sys.stderr)
                return 1
            key, secret = await issue_api_key(services, agency_id, args.name, None)
            await relay.relay_once()
        print(f"API key {key.name!r} created. Its secret, shown only now:\n{secret}")
        return 0

    return asyncio.run(run())


def _job(name: str) -> Callable[[Settings, argparse.Namespace], int]:
    def run_job(settings: Settings, args: argparse.Namespace) -> int:
        from agencyhub.app import running_services
        from agencyhub.background import run_counted
        from resolvers import jobs

        by_name: dict[str, tuple[Callable[[Any], Awaitable[int]], str]] = {
            "pay-out": (jobs.pay_out, "paid {} payout(s)"),
            "charge-auto-allocations": (
                jobs.charge_auto_allocations,
                "{} auto allocation charge(s) succeeded",
            ),
            "reconcile-payments": (jobs.reconcile_payments, "settled {} pending purchase(s)"),
            "grant-plan-minutes": (jobs.grant_plan_minutes, "granted {} plan period(s)"),
            "purge-removed": (jobs.purge_removed, "purged {} removed sub-account(s)"),
            "deliver-webhooks": (jobs.deliver_webhooks, "delivered {} webhook event(s)"),
            "charge-auto-recharges": (jobs.charge_auto_recharges, "{} auto-recharge(s) succeeded"),
            "apply-spending-caps": (
                jobs.apply_spending_caps,
                "{} sub-account(s) capped or freed",
            ),
            "low-balance-alerts": (jobs.raise_low_balance_alerts, "raised {} LOW_BALANCE alert(s)"),
            "send-alerts": (jobs.send_alerts, "mailed {} alert(s)"),
        }

        async def run() -> int:
            async with running_services(settings) as (services, relay):
                if name == "prune-outbox":
                    keep = timedelta(hours=settings.outbox_retention_hours)
                    done = await run_counted(name, lambda s: jobs.prune_outbox(s, keep), services)
                    print(f"agencyhub: pruned {done} published event(s)")
                else:
                    job, said = by_name[name]
                    done = await run_counted(name, job, services)
                    print(f"agencyhub: {said.format(done)}")
                await relay.relay_once()
            return 0

        return asyncio.run(run())

    return run_job


RECONCILE_COLUMNS = (
    "record",
    "id",
    "agency_id",
    "sub_account_id",
    "created_at",
    "status",
    "amount",
    "stripe_id",
    "stripe_status",
    "stripe_amount",
    "credited_seconds",
    "expected_seconds",
    "agrees",
    "problems",
)


def _cents(cents: int | None) -> str:
    return "" if cents is None else f"{Decimal(cents) / 100:.2f}"


def _reconcile(settings: Settings, args: argparse.Namespace) -> int:
    """CSV on stdout, one row per purchase and payout made in the inclusive UTC dates; exit 1
    when any row disagrees (or could not be checked)."""
    from agencyhub.app import running_services
    from resolvers.reconciliation import reconcile

    if args.to < args.since:
        print("agencyhub: --to is before --from", file=sys.stderr)
        return 2
    start = datetime.combine(args.since, time.min, tzinfo=UTC)
    end = datetime.combine(args.to + timedelta(days=1), time.min, tzinfo=UTC)

    async def run() -> tuple[int, int]:
        rows = disagreements = 0
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(RECONCILE_COLUMNS)
        async with running_services(settings) as (services, _):
            async for line in reconcile(services, start, end):
                rows += 1
                disagreements += not line.agrees
                out.writerow(
                    (
                        line.record,
                        line.id,
                        line.agency_id,
                        line.sub_account_id or "",
                        line.created_at.isoformat(),
                        line.status,
                        _cents(line.amount_cents),
                        line.stripe_id or "",
                        line.stripe_status or "",
                        _cents(line.stripe_amount_cents),
                        "" if line.credited_seconds is None else line.credited_seconds,
                        "" if line.expected_seconds is None else line.expected_seconds,
                        "yes" if line.agrees else "no",
                        "; ".join(line.problems),
                    )
                )
        return rows, disagreements

    rows, disagreements = asyncio.run(run())
    print(f"agencyhub: {rows} row(s), {disagreements} disagreeing", file=sys.stderr)
    return 1 if disagreements else 0


def _check_ledger(settings: Settings, args: argparse.Namespace) -> int:
    from persistence.database import Database
    from persistence.ledger import mismatches

    async def run() -> int:
        database = Database(settings.effective_database_url)
        try:
            async with database.read() as conn:
                found = await mismatches(conn)
        finally:
            await database.dispose()
        for sub_account_id, tier, balance, total in found:
            print(f"MISMATCH {sub_account_id} {tier}: balance {balance} s, ledger {total} s")
        print("ledger: balanced" if not found else f"ledger: {len(found)} mismatches")
        return 1 if found else 0

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agencyhub", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP/WebSocket server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--workers", type=int, help="server processes (default WORKERS, 1); needs PostgreSQL+Redis"
    )
    serve.set_defaults(run=_serve)
    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(run=_migrate)
    seed = commands.add_parser("seed-demo", help="create a demo agency and print its logins")
    seed.set_defaults(run=_seed_demo)
    export = commands.add_parser("export-schema", help="write the GraphQL SDL")
    export.add_argument("output", nargs="?", default="schema.graphql")
    export.set_defaults(run=_export_schema)
    api_key = commands.add_parser("create-api-key", help="create an ingestion API key")
    api_key.add_argument("--agency", required=True, help="the agency's global ID or UUID")
    api_key.add_argument("--name", required=True)
    api_key.set_defaults(run=_create_api_key)
    for job, job_help in (
        ("grant-plan-minutes", "grant each plan period's included minutes once (cron: hourly)"),
        ("purge-removed", "purge sub-accounts removed longer ago than the retention period"),
        ("prune-outbox", "drop published events older than OUTBOX_RETENTION_HOURS (cron: hourly)"),
        ("reconcile-payments", "settle purchases PENDING over 10 minutes from Stripe (5 min)"),
        ("pay-out", "pay unpaid earnings over the threshold to Connect accounts (hourly)"),
        ("charge-auto-allocations", "charge each period's monthly auto allocations (hourly)"),
        ("deliver-webhooks", "send the webhook deliveries due now (the server does it itself)"),
        ("charge-auto-recharges", "charge the auto-recharges debits asked for (every minute)"),
        ("apply-spending-caps", "cap what reached its cap, free what a new period freed"),
        ("low-balance-alerts", "raise LOW_BALANCE alerts by the runway rule (hourly)"),
        ("send-alerts", "mail the alerts raised (every minute)"),
    ):
        commands.add_parser(job, help=job_help).set_defaults(run=_job(job))
    reconcile = commands.add_parser(
        "reconcile",
        help="CSV of purchases and payouts beside Stripe and the ledger (exit 1 on disagreement)",
    )
    reconcile.add_argument(
        "--from", dest="since", type=date.fromisoformat, required=True, help="UTC date, inclusive"
    )
    reconcile.add_argument("--to", type=date.fromisoformat, required=True, help="inclusive")
    reconcile.set_defaults(run=_reconcile)
    check = commands.add_parser("check-ledger", help="prove balances equal ledger sums")
    check.set_defaults(run=_check_ledger)
    args = parser.parse_args(argv)
    settings = Settings()
    logging.config.dictConfig(logging_config(settings.log_format, settings.log_level))
    try:
        return int(args.run(settings, args))
    except ConfigurationError as error:  # e.g. SECRET_KEY missing for a job on PostgreSQL
        print(f"agencyhub: {error}", file=sys.stderr)
        return 2
    except DomainError as error:  # e.g. a payment job without STRIPE_SECRET_KEY
        print(f"agencyhub: {error.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
