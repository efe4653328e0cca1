"""The baseline: the viewer query's data from a bare Starlette endpoint on a raw asyncpg pool.

No GraphQL, no SQLAlchemy, no app code: POST /viewer with `Authorization: Bearer <token>`
hashes the token, runs one SQL statement and answers with the same JSON the GraphQL `viewer`
query returns for `{ viewer { user { id email role } agency { id name primarySubAccount
{ id name status } } } }`. Unknown, revoked or expired tokens get a 401.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/agencyhub_bench SECRET_KEY=bench-secret \
        .venv/bin/python bench/bare_viewer.py --port 8002

The uvicorn options are the ones `serve_app.py` uses for the app.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import os
from collections.abc import AsyncIterator

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SQL = """
SELECT u.id AS user_id, u.email, u.role,
       a.id AS agency_id, a.name AS agency_name,
       p.id AS primary_id, p.name AS primary_name, p.status AS primary_status
FROM auth_session s
JOIN app_user u ON u.id = s.user_id
JOIN agency a ON a.id = u.agency_id
JOIN sub_account p ON p.agency_id = a.id AND p.kind = 'PRIMARY'
WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
"""

UNAUTHENTICATED = orjson.dumps(
    {
        "errors": [
            {
                "message": "The token is missing, invalid, expired or revoked.",
                "extensions": {"code": "UNAUTHENTICATED"},
            }
        ]
    }
)


def global_id(type_name: str, key: object) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{key}".encode()).decode().rstrip("=")


def create_app(dsn: str, secret: bytes, pool_size: int = 10) -> Starlette:
    pool: asyncpg.Pool

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal pool
        # Sized like the app's SQLAlchemy pool (pool_size + max_overflow); asyncpg defaults
        # otherwise (statement cache on, connection reset on release).
        pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=2 * pool_size)
        try:
            yield
        finally:
            await pool.close()

    async def viewer(request: Request) -> Response:
        await request.body()  # the same request as the GraphQL one; read, not interpreted
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return Response(UNAUTHENTICATED, status_code=401, media_type="application/json")
        digest = hmac.new(secret, token.encode(), hashlib.sha256).digest()
        row = await pool.fetchrow(SQL, digest)
        if row is None:
            return Response(UNAUTHENTICATED, status_code=401, media_type="application/json")
        body = {
            "data": {
                "viewer": {
                    "user": {
                        "id": global_id("User", row["user_id"]),
                        "email": row["email"],
                        "role": row["role"],
                    },
                    "agency": {
                        "id": global_id("Agency", row["agency_id"]),
                        "name": row["agency_name"],
                        "primarySubAccount": {
                            "id": global_id("SubAccount", row["primary_id"]),
                            "name": row["primary_name"],
                            "status": row["primary_status"],
                        },
                    },
                }
            }
        }
        return Response(orjson.dumps(body), media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(
        routes=[Route("/viewer", viewer, methods=["POST"]), Route("/healthz", healthz)],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool-size", type=int, default=10)
    args = parser.parse_args()

    import uvicorn
    from serve_app import UVICORN_OPTIONS

    dsn = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://", 1)
    secret = os.environ["SECRET_KEY"].encode()
    uvicorn.run(
        create_app(dsn, secret, args.pool_size), host=args.host, port=args.port, **UVICORN_OPTIONS
    )


if __name__ == "__main__":
    main()
