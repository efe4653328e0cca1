"""Alerts: what the agency's owner and admins (and a client's own admins) are told by mail
when a sub-account runs low, a payment fails or a spending cap is reached.

Every alert is raised through one place (`UnitOfWork.raise_alert`), in the transaction that
caused it, as a row: at most one per sub-account, kind and day (the agency's local day), sent
by the alert job after the commit. `data` is small and JSON-able, the same for every channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any
from uuid import UUID


class AlertKind(StrEnum):
    LOW_BALANCE = "LOW_BALANCE"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    SPENDING_CAP_REACHED = "SPENDING_CAP_REACHED"


@dataclass(frozen=True)
class Alert:
    agency_id: UUID
    sub_account_id: UUID
    kind: AlertKind
    day: date  # the agency's local day: one alert of a kind per sub-account and day
    data: Mapping[str, Any] = field(default_factory=dict)


def mail_text(kind: AlertKind, sub_account_name: str, data: Mapping[str, Any]) -> tuple[str, str]:
    """The subject and body of an alert's mail."""
    if kind is AlertKind.LOW_BALANCE:
        subject = f"{sub_account_name} is running low on minutes"
        body = (
            f"{sub_account_name} has about {data.get('runwayDays', '?')} days of minutes left "
            "at its recent rate. Buy minutes or turn on auto-recharge to keep its calls going."
        )
    elif kind is AlertKind.PAYMENT_FAILED:
        subject = f"A payment for {sub_account_name} failed"
        body = (
            f"The auto-recharge of {sub_account_name} could not be charged: "
            f"{data.get('reason') or 'the card was declined'}. No new attempt is made for 6 "
            "hours or until the default card changes."
        )
    else:
        subject = f"{sub_account_name} reached its spending cap"
        body = (
            f"{sub_account_name} spent ${data.get('spent', '?')} of its ${data.get('cap', '?')} "
            "cap this billing period. Its active campaigns are paused until the next billing "
            "period, a higher cap or the cap's removal; calls still reported are recorded."
        )
    return subject, body + "\n\n— agencyhub\n"
