"""The ledger invariant over random sequences of grants, transfers and removal moves.

Each example empties the tables and builds a fresh agency (a primary at 0 % and three
secondaries with distinct markups), applies a random sequence through
`persistence.ledger.apply` in units of work, and checks after every step, on PostgreSQL and
on SQLite:
- balances equal the sums of their ledger entries (`ledger.mismatches` is empty);
- balances equal a model of what each step should do, and a refused step changes nothing;
- no balance is negative;
- the client-price value of all the agency's minutes grows only by grants (exactly by them).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from fractions import Fraction

from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from domain.agency import SubAccount, SubAccountKind, sign_up
from domain.errors import DomainError, ErrorCode
from domain.ledger import LedgerKind, Movement
from domain.money import Tier
from domain.pricing import PriceBook, client_price_per_minute, convert_seconds, value_of_seconds
from domain.transfer import plan_conversion, plan_transfer
from persistence import agencies, ledger
from persistence.unit_of_work import UnitOfWork
from tests.conftest import empty_all_tables

now = lambda: datetime.now(UTC)
PRICES = PriceBook()
ACCOUNTS = 4  # index 0 is the primary

Balances = dict[tuple[uuid.UUID, Tier], int]


async def new_agency(database, markups: list[int]) -> tuple[uuid.UUID, list[SubAccount]]:
    signup = sign_up(
        "Ledger Props", f"{uuid.uuid4().hex}@x.example", "correct-horse-battery", None, now()
    )
    async with UnitOfWork(database, now) as uow:
        agency = await agencies.add_agency(uow.conn, signup, now())
        primary = await agencies.add_sub_account(
            uow.conn,
            agency.id,
            SubAccountKind.PRIMARY,
            "Primary",
            signup.owner_email,
            now().date(),
            0,
            now(),
        )
        accounts = [primary]
        for n, markup in enumerate(markups):
            accounts.append(
                await agencies.add_sub_account(
                    uow.conn,
                    agency.id,
                    SubAccountKind.SECONDARY,
                    f"Client {n}",
                    f"{uuid.uuid4().hex}@client.example",
                    now().date(),
                    0,
                    now(),
                    markup_bp=markup,
                )
            )
    return agency.id, accounts


async def stored_balances(database, accounts: list[SubAccount]) -> Balances:
    t = ledger.balance_t
    async with database.read() as conn:
        rows = await conn.execute(
            select(t.c.sub_account_id, t.c.tier, t.c.seconds).where(
                t.c.sub_account_id.in_([a.id for a in accounts])
            )
        )
        return {(r[0], Tier(r[1])): int(r[2]) for r in rows}


async def ledger_entries(database, accounts: list[SubAccount]) -> int:
    t = ledger.ledger_t
    async with database.read() as conn:
        query = select(func.count()).where(t.c.sub_account_id.in_([a.id for a in accounts]))
        return int(await conn.scalar(query) or 0)


def price(account: SubAccount, tier: Tier) -> Fraction:
    return client_price_per_minute(PRICES.base_per_minute(tier), account.markup_bp(tier))


def total_value(accounts: list[SubAccount], balances: Balances) -> Fraction:
    """What all the minutes are worth at each holder's client price, exactly."""
    return sum(
        (value_of_seconds(balances[a.id, tier], price(a, tier)) for a in accounts for tier in Tier),
        Fraction(0),
    )


async def apply(database, movements: list[Movement]) -> None:
    async with UnitOfWork(database, now) as uow:
        await ledger.apply(uow.conn, movements, now())


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """Pick among strategies with these weights (one_of alone draws them evenly)."""
    picks = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(range(len(picks))).flatmap(lambda k: picks[k])


tiers = st.sampled_from(Tier)
account_index = st.integers(min_value=0, max_value=ACCOUNTS - 1)
sources = weighted((1, st.just("richest")), (1, account_index))  # richest: holds most of the tier
other_accounts = st.integers(min_value=1, max_value=ACCOUNTS - 1)
grants = st.tuples(st.just("grant"), tiers, st.integers(min_value=1, max_value=100_000))
amounts = weighted(
    (3, st.tuples(st.just("share"), st.integers(min_value=1, max_value=8))),  # eighths held
    (1, st.tuples(st.just("few"), st.integers(min_value=0, max_value=6))),  # often none arrive
    (1, st.tuples(st.just("more"), st.integers(min_value=1, max_value=1_000))),  # beyond it
)
transfers = st.tuples(
    st.just("transfer"),
    sources,
    # the destination, counted from the source; 0 is the source itself: SAME_SUBACCOUNT
    weighted((5, other_accounts), (1, st.just(0))),
    tiers,
    amounts,
)
removals = st.tuples(st.just("remove"), sources, other_accounts)
# the sequence opens with a grant of each tier, so that transfers have minutes to move
opening = st.tuples(
    *(st.tuples(st.just("grant"), st.just(tier), st.integers(1, 100_000)) for tier in Tier)
)
any_step = weighted((1, grants), (3, transfers), (1, removals))


def opening_then(parts: tuple[tuple, list]) -> list:
    return [*parts[0], *parts[1]]


operations = st.tuples(opening, st.lists(any_step, min_size=4, max_size=12)).map(opening_then)


def seconds_to_send(amount: tuple[str, int], held: int) -> int:
    how, n = amount
    if how == "few":
        return n
    if how == "share":
        return held * n // 8
    return held + n


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    markups=st.lists(
        st.integers(min_value=0, max_value=100_000),
        min_size=ACCOUNTS - 1,
        max_size=ACCOUNTS - 1,
        unique=True,
    ),
    steps=operations,
)
async def test_ledger_sums_equal_balances_and_only_grants_create_value(
    database_url, database, markups, steps
):
    # each example on empty tables: the ledger-wide check sees only this example's entries,
    # and a failing example replays exactly as it ran
    await empty_all_tables(database_url)
    agency_id, accounts = await new_agency(database, markups)
    primary = accounts[0]
    model: Balances = {(a.id, tier): 0 for a in accounts for tier in Tier}
    granted = Fraction(0)
    assert await stored_balances(database, accounts) == model

    for number, step in enumerate(steps):
        note(f"step {number}: {step}")
        reference = f"prop:{uuid.uuid4().hex}"
        value_before = total_value(accounts, model)
        entries_before = await ledger_entries(database, accounts)
        expected = dict(model)
        refused: ErrorCode | None = None
        predicted: ErrorCode | None = None
        lost = Fraction(0)  # value a step may lose to rounding, per its own bound

        if step[0] == "grant":
            _, tier, seconds = step
            await apply(
                database,
                [Movement(agency_id, primary.id, tier, seconds, LedgerKind.PLAN_GRANT, reference)],
            )
            expected[primary.id, tier] += seconds
            granted += value_of_seconds(seconds, price(primary, tier))
            moved = 1

        elif step[0] == "transfer":
            _, i, offset, tier, amount = step
            if i == "richest":
                i = max(range(ACCOUNTS), key=lambda k: model[accounts[k].id, tier])
            j = (i + offset) % ACCOUNTS
            source, destination = accounts[i], accounts[j]
            sent = seconds_to_send(amount, model[source.id, tier])
            arrives = convert_seconds(sent, price(source, tier), price(destination, tier))
            if i == j:
                predicted = ErrorCode.SAME_SUBACCOUNT
            elif arrives == 0:
                predicted = ErrorCode.INVALID_INPUT
            elif model[source.id, tier] < sent:
                predicted = ErrorCode.INSUFFICIENT_MINUTES
            moved = 0
            try:
                plan = plan_transfer(source, destination, tier, sent, PRICES)
                movements = plan.movements(agency_id, source.id, destination.id, reference)
                await apply(database, movements)
            except DomainError as error:
                refused = error.code
            else:
                assert plan.received_seconds == arrives
                expected[source.id, tier] -= sent
                expected[destination.id, tier] += arrives
                moved = len(movements)
                lost = value_of_seconds(1, price(destination, tier))
            assert refused == predicted
            event(f"transfer {refused or 'applied'}")

        else:  # move everything an account holds to another one, as removal does
            _, i, offset = step
            if i == "richest":
                i = max(range(ACCOUNTS), key=lambda k: sum(model[accounts[k].id, t] for t in Tier))
            source, destination = accounts[i], accounts[(i + offset) % ACCOUNTS]
            movements = []
            for tier in Tier:
                held = model[source.id, tier]
                if held:
                    plan = plan_conversion(source, destination, tier, held, PRICES)
                    movements += plan.movements(
                        agency_id,
                        source.id,
                        destination.id,
                        reference,
                        (LedgerKind.REMOVAL_OUT, LedgerKind.REMOVAL_IN),
                    )
                    expected[source.id, tier] = 0
                    expected[destination.id, tier] += plan.received_seconds
                    lost += value_of_seconds(1, price(destination, tier))
            if movements:
                await apply(database, movements)
            moved = len(movements)
            event(f"removal {'moved minutes' if movements else 'of an empty account'}")

        balances = await stored_balances(database, accounts)
        assert balances == expected
        assert all(seconds >= 0 for seconds in balances.values())
        assert await ledger_entries(database, accounts) == entries_before + moved
        async with database.read() as conn:
            assert await ledger.mismatches(conn) == []

        value_after = total_value(accounts, balances)
        if step[0] == "grant":
            assert value_after == value_before + value_of_seconds(step[2], price(primary, step[1]))
        else:
            assert value_after <= value_before
            assert value_before - value_after < lost or value_after == value_before
        model = balances

    assert total_value(accounts, model) <= granted
