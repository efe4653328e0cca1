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

from domain.alerts import mail_text
from persistence import alerts
from persistence.mail import compose
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


def _token(email: str) -> str:
    return hashlib.sha256(email.lower().encode()).hexdigest()[:16]
