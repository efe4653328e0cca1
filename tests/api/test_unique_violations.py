"""When a check misses a concurrent request, a unique index decides, and the client gets the
same answer the check would have given: never a 500. Each test makes the check miss (as it
does when two requests run side by side) so that the database's refusal, translated once by
the unit of work into UniqueViolation, is what the use case sees."""

from __future__ import annotations

from persistence import agencies, idempotency
from persistence import jobs as job_queries
from resolvers import jobs
from tests.api.test_account_manager import CREATE, TRANSFER, account, new_client, transfer_input
from tests.api.test_sign_up import sign_up_input
from tests.api.test_team import ACCEPT, NEW_PASSWORD, invite, mail_dir
from tests.factories import SIGN_UP, gql, make_agency
from tests.mailbox import latest_token_for


def email_check_misses(monkeypatch):
    async def nobody(conn, email):
        return False

    monkeypatch.setattr(agencies, "email_in_use", nobody)


async def test_a_sign_up_that_loses_the_race_for_its_email_is_email_taken(app_client, monkeypatch):
    # given an agency, and the email check missing it (a concurrent sign-up)
    await gql(app_client, SIGN_UP, sign_up_input("race@acme.example"))
    email_check_misses(monkeypatch)
    # when a second sign-up uses the email
    body = await gql(app_client, SIGN_UP, sign_up_input("race@acme.example"))
    # then the unique index refused it, as the check would have
    assert body["data"]["signUpAgency"]["userErrors"] == [
        {
            "code": "EMAIL_TAKEN",
            "message": "That email is already in use.",
            "field": ["input", "ownerEmail"],
        }
    ]


async def test_a_client_login_that_loses_the_race_is_email_taken(app_client, monkeypatch):
    owner = await make_agency(app_client)
    await new_client(app_client, owner, "First", "same@clients.example")
    email_check_misses(monkeypatch)
    # when another client is created with the same login meanwhile
    second = {"i": {"name": "Second", "loginEmail": "same@clients.example"}}
    body = await gql(app_client, CREATE, second, owner.token)
    # then
    assert body["data"]["createSubAccount"]["userErrors"] == [
        {"code": "EMAIL_TAKEN", "field": ["input", "loginEmail"]}
    ]


async def test_an_invitation_accepted_after_its_email_signed_up_is_email_taken(app_client):
    # given an invitation, and the invitee signing up an agency of their own meanwhile
    owner = await make_agency(app_client)
    await invite(app_client, owner.token, "both@team.example")
    secret = latest_token_for(mail_dir(app_client), "both@team.example")
    await gql(app_client, SIGN_UP, sign_up_input("both@team.example"))
    # when the invitation is accepted
    body = await gql(app_client, ACCEPT, {"token": secret, "password": NEW_PASSWORD})
    # then the user's unique email refused it
    assert body["data"]["acceptInvitation"]["userErrors"] == [{"code": "EMAIL_TAKEN"}]


async def test_a_transfer_twin_that_commits_second_answers_like_a_retry(app_client, monkeypatch):
    owner = await make_agency(app_client)
    client_id = await new_client(app_client, owner)
    request = transfer_input(owner.primary_id, client_id, "5", key="twin")
    first = await gql(app_client, TRANSFER, request, owner.token)
    # given the key's lookup missing the first transfer once (its twin had not committed yet)
    real_recall, missed = idempotency.recall, []

    async def recall(*args):
        if not missed:
            missed.append(True)
            return None
        return await real_recall(*args)

    monkeypatch.setattr(idempotency, "recall", recall)
    # when the twin arrives
    second = await gql(app_client, TRANSFER, request, owner.token)
    # then it collided on the key, was answered with the first transfer, and moved nothing
    assert missed == [True]
    assert second == first
    assert first["data"]["transferMinutes"]["userErrors"] == []
    balances = (await account(app_client, owner, owner.primary_id))["balances"]
    assert {b["tier"]: b["seconds"] for b in balances}["PREMIUM"] == 500 * 60 - 300


async def test_a_plan_period_granted_by_another_run_is_not_granted_again(app_client, monkeypatch):
    # given an agency whose first period was granted at sign-up
    await make_agency(app_client, plan="Partner")
    services = app_client.app.state.services

    # when a run does not see that grant (another run's, committed meanwhile)
    async def nothing_granted(conn, agency_id):
        return set()

    monkeypatch.setattr(job_queries, "granted_periods", nothing_granted)
    # then the plan_grant key refuses it, and the run reports nothing granted
    assert await jobs.grant_plan_minutes(services) == 0
