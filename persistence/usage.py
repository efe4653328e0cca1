"""Usage storage: calls (unique per agency on external id) and the rollups per UTC quarter hour,
hour and day (each coarser one exactly the sum of the finer)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import KeyedColumnElement, Label

from domain.agency import Agency, SubAccount, SubAccountKind, SubAccountStatus
from domain.api_key import ApiKey
from domain.auto_recharge import AutoRecharge
from domain.ledger import Movement
from domain.live import PeriodUse
from domain.money import Tier
from domain.usage import CallCharge, CallStatus, ReportedCall, RollupLine, hour_of
from persistence import ledger, live, prepared
from persistence.api_keys import API_KEY_COLUMNS, api_key_from, api_key_t
from persistence.arrays import insert_unnested, insert_unnested_sql
from persistence.database import dialect_insert
from persistence.prepared import Prepared, any_of, in_list
from persistence.records import (
    AGENCY_COLUMNS,
    SUB_ACCOUNT_COLUMNS,
    agency_from,
    agency_t,
    sub_account_from,
    sub_account_t,
)
from persistence.tables import (
    AutoRechargeRequestRow,
    AutoRechargeRow,
    CallRow,
    SpendingCapRow,
    UsageDailyRow,
    UsageHourlyRow,
    UsageQuarterRow,
)

call_t = CallRow.__table__
quarter_t = UsageQuarterRow.__table__
rollup_t = UsageHourlyRow.__table__
daily_t = UsageDailyRow.__table__
STATUS_COLUMNS = {
    CallStatus.COMPLETED: "completed",
    CallStatus.FAILED: "failed",
    CallStatus.NO_ANSWER: "no_answer",
    CallStatus.BUSY: "busy",
    CallStatus.VOICEMAIL: "voicemail",
}


@dataclass(frozen=True)
class BatchContext:
    """What billing a batch needs to know first, read in one statement."""

    agency: Agency
    active_sub_accounts: int  # for the agency totals its events carry (a batch changes none)
    primary: SubAccount
    accounts: dict[uuid.UUID, SubAccount]  # the batch's sub-accounts found in the agency
    # Their auto-recharge settings (and the primary's), each with whether a request is open,
    # and their spending caps in micro-dollars: read in the same statement, so a batch that
    # crosses nothing pays nothing more for them.
    recharges: dict[uuid.UUID, tuple[AutoRecharge, bool]] = field(default_factory=dict)
    caps: dict[uuid.UUID, int] = field(default_factory=dict)


_COUNTED = sub_account_t.alias("counted")
_ACTIVE = (
    select(func.count())
    .select_from(_COUNTED)
    .where(
        _COUNTED.c.agency_id == agency_t.c.id,
        _COUNTED.c.status == SubAccountStatus.ACTIVE.value,
    )
    .correlate(agency_t)
    .scalar_subquery()
)


# Built once: every batch runs it, and building it afresh (with its cache key) cost more CPU
# than running it. One statement, one round trip: each row is one of the batch's sub-accounts
# found in the agency, or its primary, beside the key's and the agency's columns (named
# `key__…` and `agency__…`).
_recharge_t = AutoRechargeRow.__table__
_request_t = AutoRechargeRequestRow.__table__
_cap_t = SpendingCapRow.__table__
_OPEN_REQUEST = (
    select(_request_t.c.sub_account_id)
    .where(
        _request_t.c.sub_account_id == sub_account_t.c.id,
        _request_t.c.tier == _recharge_t.c.tier,
    )
    .correlate(sub_account_t, _recharge_t)
    .exists()
)


def _labelled(columns: Sequence[KeyedColumnElement[Any]], prefix: str) -> list[Label[Any]]:
    """`columns` named `{prefix}__{name}` in a statement that has other tables' columns too."""
    return [c.label(f"{prefix}__{c.name}") for c in columns]


def _unlabelled(
    row: Mapping[str, Any], columns: Sequence[KeyedColumnElement[Any]], prefix: str
) -> SimpleNamespace:
    """The values of `_labelled(columns, prefix)` in `row`, by their columns' own names."""
    return SimpleNamespace(**{c.name: row[f"{prefix}__{c.name}"] for c in columns})


def _batch_context(batch_accounts: ColumnElement[bool]) -> Select[Any]:
    """The batch's context beside the live API key whose secret it was sent with: no row when
    there is no such key (one statement, so a group's key check costs no round trip)."""
    return (
        select(
            *_labelled(API_KEY_COLUMNS, "key"),
            *_labelled(AGENCY_COLUMNS, "agency"),
            _ACTIVE.label("agency__active"),
            *SUB_ACCOUNT_COLUMNS,
            _recharge_t.c.enabled.label("recharge__enabled"),
            _recharge_t.c.tier.label("recharge__tier"),
            _recharge_t.c.threshold_minutes.label("recharge__threshold"),
            _recharge_t.c.top_up_minutes.label("recharge__top_up"),
            _OPEN_REQUEST.label("recharge__requested"),
            _cap_t.c.amount_micros.label("cap__amount"),
        )
        .select_from(
            api_key_t.join(agency_t, agency_t.c.id == api_key_t.c.agency_id)
            .join(
                sub_account_t,
                and_(
                    sub_account_t.c.agency_id == agency_t.c.id,
                    or_(batch_accounts, sub_account_t.c.kind == SubAccountKind.PRIMARY.value),
                ),
            )
            .outerjoin(
                _recharge_t,
                and_(_recharge_t.c.sub_account_id == sub_account_t.c.id, _recharge_t.c.enabled),
            )
            .outerjoin(_cap_t, _cap_t.c.sub_account_id == sub_account_t.c.id)
        )
        .where(
            api_key_t.c.secret_hash == bindparam("secret_hash"), api_key_t.c.revoked_at.is_(None)
        )
    )


# On PostgreSQL the batch's accounts go as one array (persistence/prepared.py).
_BATCH_CONTEXT = Prepared(
    _batch_context(any_of(sub_account_t.c.id, "ids")),
    fallback=_batch_context(in_list(sub_account_t.c.id, "ids")),
)


async def batch_context(
    conn: AsyncConnection, key_digest: bytes, sub_account_ids: list[uuid.UUID]
) -> tuple[ApiKey, BatchContext] | None:
    """The live API key with secret digest `key_digest` and what billing a batch sent with it
    needs to know first, about its agency and `sub_account_ids` (those of them in the agency),
    in one statement; None when no live key has that secret."""
    params = {"secret_hash": key_digest, "ids": sub_account_ids}
    rows = await prepared.fetch(conn, _BATCH_CONTEXT, params)
    if not rows:
        return None
    found = [sub_account_from(r) for r in rows]
    [primary] = [s for s in found if s.is_primary]
    first = rows[0]._mapping
    key = api_key_from(_unlabelled(first, API_KEY_COLUMNS, "key"))
    agency = _unlabelled(first, AGENCY_COLUMNS, "agency")
    wanted = set(sub_account_ids)
    recharges = {
        r.id: (
            AutoRecharge(True, Tier(r.recharge__tier), r.recharge__threshold, r.recharge__top_up),
            bool(r.recharge__requested),
        )
        for r in rows
        if r.recharge__tier is not None
    }
    caps = {r.id: int(r.cap__amount) for r in rows if r.cap__amount is not None}
    return key, BatchContext(
        agency_from(agency),
        int(first["agency__active"]),
        primary,
        {s.id: s for s in found if s.id in wanted},
        recharges,
        caps,
    )


# Every column of `call` a batch supplies per call (the overage as expected before billing,
# corrected by `bill` where it was not); the agency and the time it was recorded are the
# batch's.
_CALL_ARRAYS = [c for c in call_t.columns if c.name not in ("id", "agency_id", "recorded_at")]
_INSERT_CALLS_PG = Prepared(
    insert_unnested(
        call_t,
        _CALL_ARRAYS,
        constants=(call_t.c.agency_id, call_t.c.recorded_at),
        tail="ON CONFLICT (agency_id, external_id) DO NOTHING RETURNING external_id, ctid",
    )
)
_CHARGED = ("funded_by", "spent_micros", "cost_micros")


def _call_row(call: ReportedCall, charge: CallCharge, overage_seconds: int) -> dict[str, Any]:
    return {
        "external_id": call.external_id,
        "sub_account_id": call.sub_account_id,
        "direction": call.direction.value,
        "channel": call.channel.value,
        "status": call.status.value,
        "tier": call.tier.value,
        "started_at": call.started_at,
        "duration_seconds": call.duration_seconds,
        "funded_by": charge.funded_by,
        "spent_micros": charge.spent_micros,
        "cost_micros": charge.cost_micros,
        "overage_seconds": overage_seconds,
    }


async def insert_new_calls(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    calls: list[ReportedCall],
    charges: dict[str, CallCharge],
    now: datetime,
    overage: Mapping[str, int],
) -> dict[str, Any]:
    """Insert the calls with their charges and the overage expected of them (0 for a call not
    in `overage`); returns the external ids that were new (the rest were duplicates), each
    with where its row is, for `bill` to correct its overage (on PostgreSQL its `ctid`,
    which stays put until the transaction ends: nothing else can see the row to change it;
    None elsewhere).

    In external-id order, whatever the batch's order: a batch waits on the unique-index entry
    of an uncommitted twin, and two batches re-sending the same calls in different orders
    would otherwise each hold an entry the other waits for.
    """
    if not calls:
        return {}
    calls = sorted(calls, key=lambda c: c.external_id)
    if conn.dialect.name == "postgresql":
        arrays: dict[str, list[Any]] = {c.name: [] for c in _CALL_ARRAYS}
        for call in calls:
            row = _call_row(call, charges[call.external_id], overage.get(call.external_id, 0))
            for name, value in row.items():
                arrays[name].append(value)
        params = {"agency_id": agency_id, "recorded_at": now, **arrays}
        return dict(await prepared.fetch(conn, _INSERT_CALLS_PG, params))
    statement = (
        dialect_insert(conn, call_t)
        .values(
            [
                {
                    "agency_id": agency_id,
                    "recorded_at": now,
                    **_call_row(c, charges[c.external_id], overage.get(c.external_id, 0)),
                }
                for c in calls
            ]
        )
        .on_conflict_do_nothing(index_elements=["agency_id", "external_id"])
        .returning(call_t.c.external_id)
    )
    return dict.fromkeys((await conn.scalars(statement)).all())


# The calls' overage on PostgreSQL, by where `insert_new_calls` put their rows: found by
# address whatever the plan. By external id, the generic plan PostgreSQL made while `call`
# looked small (a fresh database, or statistics not yet gathered) hashed every call of the
# agency to find them, on every billed group with a call past an empty balance.
_SET_OVERAGE_PG = (
    "UPDATE call SET overage_seconds = rows.overage_seconds"
    " FROM unnest(CAST(:short_at AS tid[]), CAST(:short_overage_seconds AS integer[]))"
    " AS rows (at, overage_seconds)"
    " WHERE call.ctid = rows.at AND call.ctid = ANY(CAST(:short_at AS tid[]))"
    # No `call.agency_id = :agency_id` as well: the planner then took the agency's index
    # again (tests/persistence/test_plans.py). The addresses are this transaction's own rows.
)


async def set_overage(conn: AsyncConnection, agency_id: uuid.UUID, short: dict[str, int]) -> None:
    """`short`: the calls whose overage (the seconds their funding balance could not cover,
    known once the batch is billed) is not what their row was inserted with; one statement
    for all of them. PostgreSQL's goes in `bill`'s statement."""
    if not short:
        return
    await conn.execute(
        update(call_t)
        .where(call_t.c.agency_id == agency_id, call_t.c.external_id == bindparam("ext"))
        .values(overage_seconds=bindparam("short")),
        [{"ext": e, "short": s} for e, s in short.items()],
    )


# What the rollups add up: every column but the row's key and its agency.
SUMMED_COLUMNS = tuple(
    c.name for c in rollup_t.columns if not c.primary_key and c.name != "agency_id"
)
assert set(STATUS_COLUMNS.values()) <= set(SUMMED_COLUMNS)


def quarter_rows(
    agency_id: uuid.UUID, lines: dict[tuple[uuid.UUID, Tier, datetime], RollupLine]
) -> list[dict[str, Any]]:
    """A batch's rollup lines as `usage_quarter_hour` rows."""
    rows = []
    for (sub_account_id, tier, quarter), line in sorted(
        lines.items(), key=lambda item: (item[0][0], item[0][1].value, item[0][2])
    ):
        counts = line.by_status or {}
        rows.append(
            {
                "sub_account_id": sub_account_id,
                "tier": tier.value,
                "quarter_utc": quarter,
                "agency_id": agency_id,
                "calls": line.calls,
                "seconds": line.seconds,
                "overage_seconds": line.overage_seconds,
                "spent_micros": line.spent_micros,
                "cost_micros": line.cost_micros,
                "inbound": line.inbound,
                "outbound": line.outbound,
                **{column: counts.get(status, 0) for status, column in STATUS_COLUMNS.items()},
            }
        )
    return rows


def _summed(batches: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Batches' quarter rows as one row per (sub-account, tier, quarter), in that order."""
    if len(batches) == 1:
        return batches[0]
    return _sum_rows(
        (row for batch in batches for row in batch), "quarter_utc", "quarter_utc", lambda q: q
    )


def hourly_rows(quarters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Quarter rows summed per UTC hour."""
    return _sum_rows(quarters, "quarter_utc", "hour_utc", hour_of)


def daily_rows(hourly: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hourly rows summed per UTC day."""
    return _sum_rows(
        hourly,
        "hour_utc",
        "day_utc",
        lambda hour: hour.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0),
    )


def _sum_rows(
    rows: Iterable[dict[str, Any]],
    source: str,
    period: str,
    period_of: Callable[[datetime], datetime],
) -> list[dict[str, Any]]:
    """Rows added up per (sub-account, tier, `period_of` their `source` column), in that
    order; the period goes in column `period`."""
    sums: dict[tuple[uuid.UUID, str, datetime], dict[str, Any]] = {}
    for row in rows:
        moment = period_of(row[source])
        key = (row["sub_account_id"], row["tier"], moment)
        into = sums.get(key)
        if into is None:
            sums[key] = {
                "sub_account_id": row["sub_account_id"],
                "tier": row["tier"],
                period: moment,
                "agency_id": row["agency_id"],
                **{c: row[c] for c in SUMMED_COLUMNS},
            }
        else:
            for c in SUMMED_COLUMNS:
                into[c] += row[c]
    return [sums[k] for k in sorted(sums)]


def _upsert_sql(table: Table, prefix: str) -> str:
    """Adds each row's sums to the row of its (sub-account, tier, hour or day)."""
    key = ", ".join(c.name for c in table.primary_key.columns)
    added = ", ".join(f"{c} = {table.name}.{c} + excluded.{c}" for c in SUMMED_COLUMNS)
    return insert_unnested_sql(
        table, list(table.columns), tail=f"ON CONFLICT ({key}) DO UPDATE SET {added}", prefix=prefix
    )


# The three rollups in one statement (one round trip); the hour's parameters are named
# `hour_…`, the day's `day_…`.
_UPSERT_ALL_PG = text(
    f"WITH quarter AS ({_upsert_sql(quarter_t, '')}),"
    f" hourly AS ({_upsert_sql(rollup_t, 'hour_')}) {_upsert_sql(daily_t, 'day_')}"
)
# Ingestion's: the three rollups and the period counters (persistence/live.py), whose new
# totals it returns, in one statement; the quarter's parameters are named `quarter_…` here.
_ADD_USE_PG = Prepared(
    text(
        f"WITH quarter AS ({_upsert_sql(quarter_t, 'quarter_')}),"
        f" hourly AS ({_upsert_sql(rollup_t, 'hour_')}),"
        f" daily AS ({_upsert_sql(daily_t, 'day_')}),"
        f" {live.ADD_USE_CTES_PG}{live.ADD_USE_SELECT_PG}"
    )
)


def _rollup_tables(
    agency_id: uuid.UUID, batches: Sequence[dict[tuple[uuid.UUID, Tier, datetime], RollupLine]]
) -> list[tuple[Table, list[dict[str, Any]]]]:
    """The batches' rows for each rollup table (none when no call was billed)."""
    quarters = _summed([quarter_rows(agency_id, lines) for lines in batches if lines])
    if not quarters:
        return []
    hourly = hourly_rows(quarters)
    return [(quarter_t, quarters), (rollup_t, hourly), (daily_t, daily_rows(hourly))]


def _rollup_arrays(
    tables: list[tuple[Table, list[dict[str, Any]]]], prefixes: Sequence[str]
) -> dict[str, list[Any]]:
    return {
        f"{prefix}{c.name}": [r[c.name] for r in rows]
        for (table, rows), prefix in zip(tables, prefixes, strict=True)
        for c in table.columns
    }


async def add_use(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    batches: Sequence[dict[tuple[uuid.UUID, Tier, datetime], RollupLine]],
    use: PeriodUse,
) -> live.CurrentUse:
    """`add_to_rollups` and then `live.add_period_use`, returning the latter's figures: one
    statement on PostgreSQL (one round trip where there were two)."""
    tables = _rollup_tables(agency_id, batches)
    if conn.dialect.name != "postgresql" or not tables:
        await add_to_rollups(conn, agency_id, batches)
        return await live.add_period_use(conn, agency_id, use)
    params = {
        **_rollup_arrays(tables, ("quarter_", "hour_", "day_")),
        **live.add_use_params(agency_id, use),
    }
    return live.current_use(use, await prepared.fetch(conn, _ADD_USE_PG, params))


# What a billed group writes after locking its balances, in one statement (PostgreSQL): the
# debits and their ledger rows (`moved`, `entries`), the calls' overage, the rollups and the
# period counters, returning the counters' figures and, in a last row of its own, how many
# balances moved. The balance rows stay locked until commit, and every other group with a
# call on one of them waits that long: one round trip here instead of three (the debit, the
# overage, the rollups) is two fewer in that wait.
_BILL_PG = Prepared(
    text(
        f"WITH {ledger.apply_locked_ctes_pg('move_')},"
        f" overage AS ({_SET_OVERAGE_PG}),"
        f" quarter AS ({_upsert_sql(quarter_t, 'quarter_')}),"
        f" hourly AS ({_upsert_sql(rollup_t, 'hour_')}),"
        f" daily AS ({_upsert_sql(daily_t, 'day_')}),"
        f" {live.ADD_USE_CTES_PG}{live.ADD_USE_SELECT_PG}"
        " UNION ALL SELECT NULL, NULL, (SELECT count(*) FROM moved), NULL"
    )
)


async def bill(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    movements: Sequence[Movement],
    short: dict[str, int],
    new_calls: Mapping[str, Any],
    batches: Sequence[dict[tuple[uuid.UUID, Tier, datetime], RollupLine]],
    use: PeriodUse,
    now: datetime,
) -> live.CurrentUse:
    """A billed group's writes once its balances are locked (`ledger.balances_for_update`):
    `ledger.apply_locked(movements)`, `set_overage(short)` and `add_use(batches, use)`, whose
    figures it returns; INSUFFICIENT_MINUTES if a debit would take a balance below zero. One
    statement on PostgreSQL. `short` holds only the calls whose overage differs from what
    `insert_new_calls` inserted; `new_calls` is what it returned (they are among them)."""
    tables = _rollup_tables(agency_id, batches)
    if conn.dialect.name != "postgresql" or not tables:
        if movements:
            await ledger.apply_locked(conn, movements, now)
        await set_overage(conn, agency_id, short)
        return await add_use(conn, agency_id, batches, use)
    moves, expected = ledger.apply_locked_params(movements, now, prefix="move_")
    params = {
        **moves,
        "short_at": [new_calls[external_id] for external_id in short],
        "short_overage_seconds": list(short.values()),
        **_rollup_arrays(tables, ("quarter_", "hour_", "day_")),
        **live.add_use_params(agency_id, use),
    }
    rows = await prepared.fetch(conn, _BILL_PG, params)
    # The row without a period is the count of balances moved (found by that, not by its
    # place: UNION ALL promises no order).
    [(_, _, moved, _)] = [row for row in rows if row[1] is None]
    ledger.check_moved(moved, expected)
    return live.current_use(use, [row for row in rows if row[1] is not None])


async def add_to_rollups(
    conn: AsyncConnection,
    agency_id: uuid.UUID,
    batches: Sequence[dict[tuple[uuid.UUID, Tier, datetime], RollupLine]],
) -> None:
    """One upsert per rollup table for the batches billed together: each row adds to what is
    there."""
    tables = _rollup_tables(agency_id, batches)
    if not tables:
        return
    if conn.dialect.name == "postgresql":
        await conn.execute(_UPSERT_ALL_PG, _rollup_arrays(tables, ("", "hour_", "day_")))
        return
    for table, rows in tables:
        statement = dialect_insert(conn, table).values(rows)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[c.name for c in table.primary_key.columns],
                set_={c: table.c[c] + statement.excluded[c] for c in SUMMED_COLUMNS},
            )
        )
