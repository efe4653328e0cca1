"""Small factories for test data, through the public API the way a front end makes it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import httpx

SIGN_UP = """
mutation SignUp($input: SignUpAgencyInput!) {
  signUpAgency(input: $input) {
    token
    agency { id name primarySubAccount { id } }
    userErrors { code message field }
  }
}
"""

PASSWORD = "correct-horse-battery"
_counter = itertools.count(1)


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@dataclass
class SignedUpAgency:
    id: str
    primary_id: str
    token: str
    email: str


async def make_agency(
    client: httpx.AsyncClient, name: str | None = None, plan: str | None = None
) -> SignedUpAgency:
    n = next(_counter)
    email = f"owner{n}@agency{n}.example"
    body = await gql(
        client,
        SIGN_UP,
        {
            "input": {
                "agencyName": name or f"Agency {n}",
                "ownerEmail": email,
                "password": PASSWORD,
                "planName": plan,
            }
        },
    )
    payload = body["data"]["signUpAgency"]
    assert payload["userErrors"] == [], payload
    return SignedUpAgency(
        id=payload["agency"]["id"],
        primary_id=payload["agency"]["primarySubAccount"]["id"],
        token=payload["token"],
        email=email,
    )
