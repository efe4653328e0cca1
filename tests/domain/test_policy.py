import uuid

import pytest

from domain.errors import AccessDenied
from domain.policy import POLICY, Action, Role, Target, Viewer, can, require

AGENCY = uuid.uuid4()
OTHER_AGENCY = uuid.uuid4()
PRIMARY = uuid.uuid4()
GRANTED = uuid.uuid4()
NOT_GRANTED = uuid.uuid4()


def viewer(role: Role, *grants: uuid.UUID) -> Viewer:
    return Viewer(uuid.uuid4(), AGENCY, role, sub_account_ids=frozenset(grants))


def sub(sub_account_id: uuid.UUID, primary: bool = False) -> Target:
    return Target(AGENCY, sub_account_id, primary)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", list(Action))
def test_nobody_can_do_anything_in_another_agency(role, action):
    v = Viewer(uuid.uuid4(), AGENCY, role, all_sub_accounts=True)
    assert not can(v, action, Target(OTHER_AGENCY))
    assert not can(v, action, Target(OTHER_AGENCY, uuid.uuid4(), True))


def test_only_the_owner_transfers_ownership():
    assert can(viewer(Role.AGENCY_OWNER), Action.TRANSFER_OWNERSHIP, Target(AGENCY))
    for role in set(Role) - {Role.AGENCY_OWNER}:
        assert not can(viewer(role), Action.TRANSFER_OWNERSHIP, Target(AGENCY))


def test_agency_member_uses_the_primary_and_granted_sub_accounts_only():
    member = viewer(Role.AGENCY_MEMBER, GRANTED)
    assert can(member, Action.WORK_IN_SUB_ACCOUNT, sub(PRIMARY, primary=True))
    assert can(member, Action.WORK_IN_SUB_ACCOUNT, sub(GRANTED))
    assert not can(member, Action.WORK_IN_SUB_ACCOUNT, sub(NOT_GRANTED))
    assert not can(member, Action.MANAGE_USERS, Target(AGENCY))


def test_subaccount_member_reads_and_pays_but_does_not_change():
    member = viewer(Role.SUBACCOUNT_MEMBER, GRANTED)
    assert can(member, Action.VIEW_SUB_ACCOUNT, sub(GRANTED))
    assert can(member, Action.MAKE_PAYMENTS, sub(GRANTED))
    assert not can(member, Action.WORK_IN_SUB_ACCOUNT, sub(GRANTED))
    assert not can(member, Action.VIEW_SUB_ACCOUNT, sub(PRIMARY, primary=True))


def test_subaccount_admin_with_all_sub_accounts_is_still_not_an_agency_admin():
    admin = Viewer(uuid.uuid4(), AGENCY, Role.SUBACCOUNT_ADMIN, all_sub_accounts=True)
    assert can(admin, Action.WORK_IN_SUB_ACCOUNT, sub(NOT_GRANTED))
    assert not can(admin, Action.ADMINISTER_SUB_ACCOUNTS, Target(AGENCY))
    assert not can(admin, Action.VIEW_AGENCY_DETAILS, Target(AGENCY))


def test_require_raises_access_denied():
    with pytest.raises(AccessDenied):
        require(viewer(Role.SUBACCOUNT_MEMBER), Action.MANAGE_USERS, Target(AGENCY))


def test_every_role_has_a_row():
    assert set(POLICY) == set(Role)
