"""`Database.lookup` (who is calling, straight on asyncpg on PostgreSQL) reads exactly what the
same statement reads through SQLAlchemy: the same columns, values and Python types, constants
written in the statement included; nothing for an unknown token; SERVICE_UNAVAILABLE, not a
driver's error, when the database cannot be reached."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.errors import ServiceUnavailable
from persistence.api_keys import _BY_SECRET
from persistence.database import Database
from persistence.queries.session import _SESSION_BY_TOKEN, load_session
from resolvers.security import Tokens
from tests.factories import gql, make_agency


async def test_a_lookup_reads_what_sqlalchemy_reads(app_client, settings, clock):
    agency = await make_agency(app_client)
    key = await gql(
        app_client, 'mutation { createApiKey(input: {name: "k"}) { secret } }', token=agency.token
    )
    secret = key["data"]["createApiKey"]["secret"]
    tokens = Tokens(settings.secret())
    database = Database(settings.effective_database_url)
    try:
        for lookup, params in (
            (_SESSION_BY_TOKEN, {"token_hash": tokens.digest(agency.token), "now": clock()}),
            (_BY_SECRET, {"secret_hash": tokens.digest(secret)}),
        ):
            direct = await database.lookup(lookup, params)
            async with database.read() as conn:
                row = (await conn.execute(lookup.statement, params)).first()
            assert row is not None and direct is not None
            expected = dict(row._mapping)
            assert dict(direct) == expected
            assert {k: type(v) for k, v in direct.items()} == {
                k: type(v) for k, v in expected.items()
            }
            # The statement's own constant (the primary's `kind = 'PRIMARY'`) was sent too.
            if lookup is _SESSION_BY_TOKEN:
                assert direct["p_kind"] == "PRIMARY"

        if database.url.get_backend_name() == "postgresql":  # its pool is open, none in use
            assert database.connections_in_use()["lookup"] == 0
        session = await load_session(database, tokens.digest(agency.token), clock())
        assert session is not None and session.user.email == agency.email
        assert await load_session(database, tokens.digest("not-a-token"), clock()) is None
        later = clock() + timedelta(days=3650)  # past the session's expiry
        assert await load_session(database, tokens.digest(agency.token), later) is None
    finally:
        await database.dispose()


@pytest.mark.parametrize("url", ["postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"])
async def test_an_unreachable_database_is_service_unavailable(url, clock):
    database = Database(url)
    try:
        with pytest.raises(ServiceUnavailable):
            await database.lookup(_BY_SECRET, {"secret_hash": b"x"})
    finally:
        await database.dispose()
