"""The banner a sub-account's screens show: what suspension says to the client."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.agency import SubAccount, SubAccountStatus

SUSPENDED_MESSAGE = "This account is paused by your agency. You can still sign in and read it."
CAPPED_MESSAGE = (
    "This account reached its monthly spending cap: its campaigns are paused until the next "
    "billing period or a higher cap."
)


@dataclass(frozen=True)
class Banner:
    active: bool
    message: str
    note: str | None
    since: datetime | None


def banner_of(sub_account: SubAccount) -> Banner:
    if sub_account.status is SubAccountStatus.SUSPENDED:
        return Banner(
            True, SUSPENDED_MESSAGE, sub_account.suspension_note, sub_account.suspended_at
        )
    if sub_account.capped_at is not None:  # suspension's banner says more, and comes first
        return Banner(True, CAPPED_MESSAGE, None, sub_account.capped_at)
    return Banner(False, "", None, None)
