import asyncio

from tests.factories import PASSWORD, SIGN_UP, gql, make_agency

VIEWER = """
{ viewer {
    user { id email role allSubAccounts }
    agency {
      id name
      plan { name billingModel subAccountCap includedMonthlyMinutes renewalDate }
      primarySubAccount { id kind status loginEmail knowledgePackCredits
                          balances { tier seconds minutes } }
    }
} }
"""


def sign_up_input(email: str, **overrides):
    return {
        "input": {
            "agencyName": "Acme Voice",
            "ownerEmail": email,
            "password": PASSWORD,
            **overrides,
        }
    }


async def test_sign_up_creates_agency_owner_and_primary_with_the_plans_grant(app_client):
    # given a new agency on the default plan
    body = await gql(app_client, SIGN_UP, sign_up_input("Founder@Acme.example"))
    token = body["data"]["signUpAgency"]["token"]

    # when its owner asks who they are
    viewer = (await gql(app_client, VIEWER, token=token))["data"]["viewer"]

    # then the owner, the Agency Lite plan and a Primary holding 500 PREMIUM minutes exist
    assert viewer["user"]["email"] == "founder@acme.example"
    assert viewer["user"]["role"] == "AGENCY_OWNER"
    plan = viewer["agency"]["plan"]
    assert (plan["name"], plan["billingModel"], plan["subAccountCap"]) == (
        "Agency Lite",
        "CONSUMPTION",
        5,
    )
    primary = viewer["agency"]["primarySubAccount"]
    assert primary["kind"] == "PRIMARY" and primary["status"] == "ACTIVE"
    assert primary["knowledgePackCredits"] == 5
    assert {b["tier"]: b["seconds"] for b in primary["balances"]} == {
        "BASIC": 0,
        "PREMIUM": 500 * 60,
    }
    assert (
        viewer["agency"]["primarySubAccount"]["id"]
        == (body["data"]["signUpAgency"]["agency"]["primarySubAccount"]["id"])
    )


async def test_partner_plan_grants_basic_minutes(app_client):
    agency = await make_agency(app_client, plan="Partner")
    viewer = (await gql(app_client, VIEWER, token=agency.token))["data"]["viewer"]
    assert viewer["agency"]["plan"]["billingModel"] == "LEGACY_PARTNER"
    balances = viewer["agency"]["primarySubAccount"]["balances"]
    assert {b["tier"]: b["minutes"] for b in balances} == {"BASIC": "5000", "PREMIUM": "0"}


async def test_email_already_used_is_a_user_error(app_client):
    await gql(app_client, SIGN_UP, sign_up_input("taken@acme.example"))
    body = await gql(app_client, SIGN_UP, sign_up_input("TAKEN@acme.example"))
    payload = body["data"]["signUpAgency"]
    assert payload["agency"] is None and payload["token"] is None
    assert payload["userErrors"] == [
        {
            "code": "EMAIL_TAKEN",
            "message": "That email is already in use.",
            "field": ["input", "ownerEmail"],
        },
    ]


async def test_concurrent_sign_ups_with_one_email_create_one_agency(app_client):
    results = await asyncio.gather(
        *(gql(app_client, SIGN_UP, sign_up_input("race@acme.example")) for _ in range(4))
    )
    codes = [[e["code"] for e in r["data"]["signUpAgency"]["userErrors"]] for r in results]
    assert sorted(codes) == [[], ["EMAIL_TAKEN"], ["EMAIL_TAKEN"], ["EMAIL_TAKEN"]]


async def test_bad_sign_up_input_names_the_field(app_client):
    cases = [
        ({"password": "short"}, "WEAK_PASSWORD", ["input", "password"]),
        ({"ownerEmail": "not-an-email"}, "INVALID_EMAIL", ["input", "ownerEmail"]),
        ({"planName": "Platinum"}, "UNKNOWN_PLAN", ["input", "planName"]),
        ({"agencyName": "   "}, "INVALID_INPUT", ["input", "agencyName"]),
    ]
    for overrides, code, field in cases:
        variables = sign_up_input("someone@acme.example")
        variables["input"].update(overrides)
        errors = (await gql(app_client, SIGN_UP, variables))["data"]["signUpAgency"]["userErrors"]
        assert [(e["code"], e["field"]) for e in errors] == [(code, field)], overrides
