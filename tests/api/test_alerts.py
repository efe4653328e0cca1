"""Alert mails: every alert goes through `UnitOfWork.raise_alert` (a row, at most one per
sub-account, kind and day, in the transaction that raised it), and the alert job mails it
(.eml files in the embedded default) to the agency's owner and admins and the sub-account's
own admins, once."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select

from domain.alerts import Alert, AlertKind
from domain.policy import Role
from persistence.tables import UserRow
from resolvers import jobs
from tests.mailbox import mailbox
from tests.world import build_world

user_t = UserRow.__table__


async def emails(services, *user_ids) -> set[str]:
    async with services.database.read() as conn:
        rows = await conn.execute(select(user_t.c.email).where(user_t.c.id.in_(user_ids)))
        return {r.email for r in rows}


async def test_an_alert_is_mailed_once_a_day_to_the_admins_of_the_agency_and_the_client(
    app_client, settings
):
    services = app_client.app.state.services
    world = await build_world(services)
    other_client_admin = await world.add_user(Role.SUBACCOUNT_ADMIN, grants=(world.s2_id,))
    day = date(2026, 12, 1)

    def alert(kind=AlertKind.PAYMENT_FAILED, on=day, sub_account=world.s1_id) -> Alert:
        return Alert(world.agency_id, sub_account, kind, on, {"reason": "Your card was declined."})

    # when the same alert is raised twice in one transaction and again in another
    async with services.uow() as uow:
        assert await uow.raise_alert(alert())
        assert not await uow.raise_alert(alert())
    async with services.uow() as uow:
        assert not await uow.raise_alert(alert())
        # another kind, or the next day, is another alert
        assert await uow.raise_alert(alert(AlertKind.LOW_BALANCE))
        assert await uow.raise_alert(alert(on=day + timedelta(days=1)))
    # an alert raised in a transaction that rolls back is never sent
    try:
        async with services.uow() as uow:
            assert await uow.raise_alert(alert(AlertKind.SPENDING_CAP_REACHED))
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    # then the job sends three alerts, once
    assert await jobs.send_alerts(services) == 3
    assert await jobs.send_alerts(services) == 0
    sent = [message for _, message in mailbox(settings.data_dir / "mail")]
    agency_and_client_admins = await emails(
        services,
        world.user_ids["AGENCY_OWNER"],
        world.user_ids["AGENCY_ADMIN"],
        world.user_ids["SUBACCOUNT_ADMIN"],
    )
    assert {m["To"] for m in sent} == agency_and_client_admins
    assert len(sent) == 3 * len(agency_and_client_admins)
    assert not await emails(services, other_client_admin) & {m["To"] for m in sent}
    subjects = sorted({m["Subject"] for m in sent})
    assert subjects == [
        "A payment for Client One failed",
        "Client One is running low on minutes",
    ]
    assert "Your card was declined." in sent[0].get_content() or any(
        "Your card was declined." in m.get_content() for m in sent
    )
    # each (alert, recipient) has one Message-ID, the same if it were ever sent again
    assert len({m["Message-ID"] for m in sent}) == len(sent)


async def test_low_balance_follows_the_health_flags_runway_rule_once_a_day(app_client, clock):
    from tests.api.conftest import make_setup
    from tests.api.test_usage import RECORD, call
    from tests.factories import gql

    services = app_client.app.state.services
    _, client, key = await make_setup(app_client)
    # given a client that used 400 of its 480 seconds this week (a runway of 1.4 days)
    body = await gql(app_client, RECORD, {"calls": [call(client, None, 400)]}, key)
    assert body["data"]["recordCalls"]["accepted"] == 1
    # when the check runs twice in a day: one alert
    assert await jobs.raise_low_balance_alerts(services) == 1
    assert await jobs.raise_low_balance_alerts(services) == 0
    assert await jobs.send_alerts(services) == 1
    # and the next day, still low, another
    clock.advance(timedelta(days=1))
    assert await jobs.raise_low_balance_alerts(services) == 1
