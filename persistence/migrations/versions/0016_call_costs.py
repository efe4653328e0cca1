"""per-call costs: what each call cost, at the client price and at base cost, its overage, and
whose balance paid, kept on the call so that a range's calls add up to the report exactly

Ingestion rounds each call's cost once and the rollups add those figures up; from now on the
call row keeps them too. Calls recorded before are given their share of their quarter-hour
rollup row: money in proportion to their seconds (largest remainders, so a quarter's calls add
up to the row exactly, and so every local range, made of whole quarters, adds up to its report),
the row's overage to its latest-starting calls (calls are billed in start order, so the balance
ran out on the last ones), and as funder the sub-account that pays for it today. The index for
the per-call list gains the id, the keyset's tie-break.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 08:30:00
"""

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

CHUNK = 5_000


def upgrade() -> None:
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("spent_micros", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("cost_micros", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("overage_seconds", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("funded_by", sa.Uuid(), nullable=True))
        batch_op.drop_index("ix_call_sub_account_started")
        batch_op.create_index(
            "ix_call_sub_account_started_id", ["sub_account_id", "started_at", "id"], unique=False
        )
    _share_out_recorded_costs()


def downgrade() -> None:
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.drop_index("ix_call_sub_account_started_id")
        batch_op.create_index(
            "ix_call_sub_account_started", ["sub_account_id", "started_at"], unique=False
        )
        batch_op.drop_column("funded_by")
        batch_op.drop_column("overage_seconds")
        batch_op.drop_column("cost_micros")
        batch_op.drop_column("spent_micros")


_call = sa.table(
    "call",
    sa.column("id", sa.BigInteger()),
    sa.column("sub_account_id", sa.Uuid()),
    sa.column("external_id", sa.String()),
    sa.column("tier", sa.String()),
    sa.column("started_at", UTCDateTime()),
    sa.column("duration_seconds", sa.Integer()),
    sa.column("spent_micros", sa.BigInteger()),
    sa.column("cost_micros", sa.BigInteger()),
    sa.column("overage_seconds", sa.Integer()),
    sa.column("funded_by", sa.Uuid()),
)
_quarter = sa.table(
    "usage_quarter_hour",
    sa.column("sub_account_id", sa.Uuid()),
    sa.column("tier", sa.String()),
    sa.column("quarter_utc", UTCDateTime()),
    sa.column("calls", sa.BigInteger()),
    sa.column("seconds", sa.BigInteger()),
    sa.column("overage_seconds", sa.BigInteger()),
    sa.column("spent_micros", sa.BigInteger()),
    sa.column("cost_micros", sa.BigInteger()),
)
_sub_account = sa.table(
    "sub_account",
    sa.column("id", sa.Uuid()),
    sa.column("agency_id", sa.Uuid()),
    sa.column("kind", sa.String()),
    sa.column("balance_source", sa.String()),
)


def _share_out_recorded_costs() -> None:
    """One sub-account at a time: its quarter rows and its calls (by the index on sub-account
    and start), each call given its share."""
    bind = op.get_bind()
    accounts = {r.id: r for r in bind.execute(sa.select(_sub_account))}
    primaries = {r.agency_id: r.id for r in accounts.values() if r.kind == "PRIMARY"}
    with_calls = bind.execute(sa.select(_call.c.sub_account_id).distinct()).scalars().all()
    update = (
        _call.update()
        .where(_call.c.id == sa.bindparam("call_id"))
        .values(
            spent_micros=sa.bindparam("spent"),
            cost_micros=sa.bindparam("cost"),
            overage_seconds=sa.bindparam("short"),
            funded_by=sa.bindparam("funder"),
        )
    )
    pending: list[dict[str, Any]] = []
    for account_id in with_calls:
        account = accounts[account_id]
        funder = (
            primaries.get(account.agency_id, account_id)
            if account.balance_source == "AGENCY"
            else account_id
        )
        calls: dict[tuple[str, datetime], list[Any]] = defaultdict(list)
        for c in bind.execute(
            sa.select(_call)
            .where(_call.c.sub_account_id == account_id)
            .order_by(_call.c.started_at, _call.c.external_id)
        ):
            at = c.started_at
            quarter = at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)
            calls[c.tier, quarter].append(c)
        for row in bind.execute(sa.select(_quarter).where(_quarter.c.sub_account_id == account_id)):
            for call_id, spent, cost, short in call_shares(
                row._mapping, calls.pop((row.tier, row.quarter_utc), [])
            ):
                pending.append(
                    {"call_id": call_id, "spent": spent, "cost": cost, "short": short, "funder": funder}
                )
        for left in calls.values():  # calls no rollup row counted (written by hand): no cost
            pending.extend(
                {"call_id": c.id, "spent": 0, "cost": 0, "short": 0, "funder": funder} for c in left
            )
        if len(pending) >= CHUNK:
            bind.execute(update, pending)
            pending = []
    if pending:
        bind.execute(update, pending)


def call_shares(row: Any, calls: list[Any]) -> list[tuple[int, int, int, int]]:
    """(call id, spent, cost, overage seconds) for a quarter row's calls in billing order (start,
    external id), adding up to the row exactly."""
    if not calls:
        return []
    weights = [c.duration_seconds for c in calls]
    spent = shares(row["spent_micros"], weights)
    cost = shares(row["cost_micros"], weights)
    short = [0] * len(calls)
    overage = row["overage_seconds"]
    for i in reversed(range(len(calls))):  # overage falls on the last calls billed
        short[i] = min(overage, calls[i].duration_seconds)
        overage -= short[i]
    return [
        (c.id, s, k, o) for c, s, k, o in zip(calls, spent, cost, short, strict=True)
    ]


def shares(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights`, whole numbers that add up to it (largest
    remainders first); all of it to the first when the weights are all zero."""
    whole = sum(weights)
    if whole == 0:
        return [total, *([0] * (len(weights) - 1))]
    floors = [total * w // whole for w in weights]
    order = sorted(range(len(weights)), key=lambda i: -(total * weights[i] % whole))
    for i in order[: total - sum(floors)]:
        floors[i] += 1
    return floors
