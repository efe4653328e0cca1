"""The alert job (`send-alerts`): mails each alert row raised (`UnitOfWork.raise_alert`) to the
agency's owner and admins and the sub-account's own admins, then marks it sent.

Rows are written in the transactions that raised them, so a crash loses none: an unsent row is
sent by the next run. A crash between sending and marking sends it again; every copy carries
the same Message-ID (made from the alert's id and the recipient), which mail systems use to
drop duplicates. One process sends at a time (its advisory lock), so no two send at once.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

from domain.alerts import Alert, AlertKind, mail_text
from domain.reporting import HealthFlagKind, HealthInputs, health_flags, local_range
from persistence import alerts
from persistence.mail import compose
from persistence.queries.loaders import balances_by_sub_account
from persistence.queries.reports import client_usage_in_windows
from persistence.unit_of_work import UnitOfWork
from resolvers.context import Services

log = logging.getLogger(__name__)


async def send_alerts(services: Services) -> int:
    """Returns how many alerts were sent."""
    async with services.database.read() as conn:
        unsent = await alerts.unsent(conn)
    sent = 0
    for alert in unsent:
        async with services.database.read() as conn:
            to = await alerts.recipients(conn, alert.agency_id, alert.sub_account_id)
        subject, text = mail_text(alert.kind, alert.sub_account_name, alert.data)
        try:
            for recipient in to:
                message = compose(services.mail_from, recipient, subject, text)
                domain = message["Message-ID"].rpartition("@")[2].rstrip(">")
                del message["Message-ID"]
                message["Message-ID"] = f"<alert-{alert.id}-{_token(recipient)}@{domain}>"
                await services.mailer.send(message)
        except Exception:
            log.warning("alert %s not sent; trying again at the next run", alert.id, exc_info=True)
            continue

        async def mark(uow: UnitOfWork, alert_id: uuid.UUID = alert.id) -> None:
            await alerts.mark_sent(uow.conn, alert_id, services.clock())

        await services.transact(mark, audited=False)
        sent += 1
    return sent


async def raise_low_balance_alerts(services: Services) -> int:
    """LOW_BALANCE for every active sub-account whose runway (balance over the recent burn,
    the health flag's rule) is short: one statement over the rollups and one over the balances
    per agency; raising one already raised today adds nothing. Returns how many were raised."""
    now = services.clock()
    thresholds = services.health
    async with services.database.read() as conn:
        live = await alerts.live_sub_accounts(conn)
    raised = 0
    for (agency_id, zone), ids in live.items():
        today = now.astimezone(ZoneInfo(zone)).date()
        burn = local_range(today - timedelta(days=thresholds.burn_window_days - 1), today, zone)
        async with services.database.read() as conn:
            recent, _ = await client_usage_in_windows(
                conn, agency_id, (burn.start_utc, burn.end_utc), {}
            )
            balances = await balances_by_sub_account(conn, ids)
        low = []
        for sub_account_id, held in zip(ids, balances, strict=True):
            burnt = recent.get(sub_account_id)
            flags = health_flags(
                HealthInputs(
                    suspended=False,
                    balance_seconds=sum(b.seconds for b in held),
                    recent_burn_seconds=0 if burnt is None else burnt.seconds,
                    overage_seconds=0,
                    seconds=0,
                    previous_seconds=0,
                    calls=0,
                    failed_calls=0,
                ),
                thresholds,
            )
            for flag in flags:
                if flag.kind is HealthFlagKind.LOW_BALANCE:
                    low.append((sub_account_id, str(flag.runway_days)))
        if not low:
            continue

        found = [
            Alert(agency_id, sub_account_id, AlertKind.LOW_BALANCE, today, {"runwayDays": runway})
            for sub_account_id, runway in low
        ]

        async def record(uow: UnitOfWork, found: list[Alert] = found) -> int:
            added = 0
            for alert in found:
                added += await uow.raise_alert(alert)
            return added

        raised += await services.transact(record, audited=False)
    return raised


def _token(email: str) -> str:
    return hashlib.sha256(email.lower().encode()).hexdigest()[:16]
