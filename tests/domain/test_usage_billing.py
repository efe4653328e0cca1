"""Billing a batch: every second is paid once, money per rollup line is the sum of its calls'
costs (each rounded once), and a balance never goes below zero."""

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from domain.agency import BalanceSource, SubAccount, SubAccountKind, SubAccountStatus
from domain.money import SECONDS_PER_MINUTE, Tier
from domain.pricing import PriceBook, client_price_per_minute, to_micros
from domain.usage import (
    CallChannel,
    CallDirection,
    CallStatus,
    LastSeenBalances,
    Pricer,
    ReportedCall,
    base_per_minute,
    bill,
    expected_short_calls,
    funding_account,
    quarter_of,
)

PRICES = PriceBook()
PRIMARY = uuid.uuid4()
START = datetime(2026, 11, 1, tzinfo=UTC)


def account(n: int, markup_basic: int, markup_premium: int, agency_billed: bool) -> SubAccount:
    return SubAccount(
        id=uuid.UUID(int=n + 1),
        agency_id=uuid.UUID(int=0),
        kind=SubAccountKind.SECONDARY,
        name=f"c{n}",
        login_email=f"c{n}@x.example",
        status=SubAccountStatus.ACTIVE,
        subscription_start_date=date(2026, 1, 1),
        balance_source=BalanceSource.AGENCY if agency_billed else BalanceSource.CUSTOMER,
        knowledge_pack_credits=0,
        markup_basic_bp=markup_basic,
        markup_premium_bp=markup_premium,
    )


accounts_strategy = st.lists(
    st.tuples(st.integers(0, 50_000), st.integers(0, 50_000), st.booleans()),
    min_size=1,
    max_size=4,
)
calls_strategy = st.lists(
    st.tuples(
        st.integers(0, 3),  # account index (modulo)
        st.sampled_from(list(Tier)),
        st.sampled_from(list(CallChannel)),
        st.sampled_from(list(CallDirection)),
        st.integers(0, 7_200),  # duration
        st.integers(0, 3 * 3600),  # start offset, seconds
    ),
    min_size=1,
    max_size=60,
)


def drawn(specs, raw_calls) -> tuple[dict[uuid.UUID, SubAccount], list[ReportedCall]]:
    """The accounts and calls `accounts_strategy` and `calls_strategy` describe."""
    accounts = {a.id: a for a in (account(n, *spec) for n, spec in enumerate(specs))}
    ids = list(accounts)
    calls = [
        ReportedCall(
            external_id=f"x{i}",
            sub_account_id=ids[index % len(ids)],
            direction=direction,
            channel=channel,
            status=CallStatus.COMPLETED,
            tier=tier,
            started_at=START + timedelta(seconds=offset),
            duration_seconds=duration,
        )
        for i, (index, tier, channel, direction, duration, offset) in enumerate(raw_calls)
    ]
    return accounts, calls


@given(accounts_strategy, calls_strategy, st.integers(0, 20_000))
def test_money_per_line_is_the_sum_of_its_calls_rounded_each(specs, raw_calls, balance):
    accounts, calls = drawn(specs, raw_calls)
    ids = list(accounts)
    balances = {(f, t): balance for f in [*ids, PRIMARY] for t in Tier}
    charges = Pricer(accounts, PRIMARY, PRICES).charges(calls)
    billed = bill(calls, balances, charges)

    spent: dict[tuple, int] = defaultdict(int)
    cost: dict[tuple, int] = defaultdict(int)
    seconds_by_funder: dict[tuple, int] = defaultdict(int)
    for call in calls:
        acc = accounts[call.sub_account_id]
        base = base_per_minute(PRICES, call)
        key = (acc.id, call.tier, quarter_of(call.started_at))
        price = client_price_per_minute(base, acc.markup_bp(call.tier))
        spent[key] += to_micros(call.duration_seconds * price / SECONDS_PER_MINUTE)
        cost[key] += to_micros(Fraction(call.duration_seconds * base, SECONDS_PER_MINUTE))
        seconds_by_funder[funding_account(acc, PRIMARY), call.tier] += call.duration_seconds

    assert {k: (line.spent_micros, line.cost_micros) for k, line in billed.rollups.items()} == {
        k: (spent[k], cost[k]) for k in spent
    }
    for funder, asked in seconds_by_funder.items():
        assert billed.debits.get(funder, 0) == min(asked, balance)  # never below zero
    assert sum(billed.debits.values()) + sum(billed.overage.values()) == sum(
        c.duration_seconds for c in calls
    )
    # Each call's own figures (what its row keeps) add up to the rollups and the overage.
    by_line: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    for call in calls:
        line = by_line[call.sub_account_id, call.tier, quarter_of(call.started_at)]
        line[0] += charges[call.external_id].spent_micros
        line[1] += charges[call.external_id].cost_micros
        line[2] += billed.short_calls.get(call.external_id, 0)
    assert {
        k: [r.spent_micros, r.cost_micros, r.overage_seconds] for k, r in billed.rollups.items()
    } == by_line
    assert all(
        0 < s <= c.duration_seconds for c in calls if (s := billed.short_calls.get(c.external_id))
    )


@given(accounts_strategy, calls_strategy, st.integers(0, 20_000), st.integers(0, 3))
def test_the_overage_expected_from_known_balances_is_the_bills(specs, raw_calls, balance, known):
    accounts, calls = drawn(specs, raw_calls)
    ids = list(accounts)
    balances = {(f, t): balance for f in [*ids, PRIMARY] for t in Tier}
    charges = Pricer(accounts, PRIMARY, PRICES).charges(calls)
    short = bill(calls, balances, charges).short_calls

    # every balance known: exactly the bill's short calls
    assert expected_short_calls(calls, balances, charges) == short
    # none known: nothing expected short
    assert expected_short_calls(calls, {}, charges) == {}
    # some known: the bill's short calls among those the known balances fund
    some = dict(list(balances.items())[:known])
    funded = {c.external_id for c in calls if (charges[c.external_id].funded_by, c.tier) in some}
    assert expected_short_calls(calls, some, charges) == {
        e: s for e, s in short.items() if e in funded
    }


def test_the_balances_seen_last_are_forgotten_all_at_once_past_their_limit():
    seen = LastSeenBalances(limit=3)
    a, b, c, d = ((uuid.UUID(int=n), Tier.BASIC) for n in range(4))
    seen.saw({a: 10, b: 20})
    seen.saw({c: 0})
    assert seen.of([a, b, c, d]) == {a: 10, b: 20, c: 0}
    seen.saw({d: 1})  # past the limit: everything before it is forgotten
    assert seen.of([a, b, c, d]) == {d: 1}
