"""The viewer benchmark's baseline: the `viewer` query's answer from a bare Starlette endpoint
on a raw asyncpg pool, with no GraphQL, no SQLAlchemy and no app code (BENCHMARKS.md, step 4).
POST /viewer with `Authorization: Bearer <token>`; 401 for an unknown, revoked or expired one."""

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
import uvicorn
from harness import UVICORN_OPTIONS
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
        # Sized like the app's pool; asyncpg's defaults otherwise (statement cache, reset on
        # release).
        pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=2 * pool_size)
        try:
            yield
        finally:
            await pool.close()

    def refuse() -> Response:
        return Response(UNAUTHENTICATED, status_code=401, media_type="application/json")

    async def viewer(request: Request) -> Response:
        await request.body()  # the same request as the GraphQL one; read, not interpreted
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return refuse()
        digest = hmac.new(secret, token.strip().encode(), hashlib.sha256).digest()
        row = await pool.fetchrow(SQL, digest)
        if row is None:
            return refuse()
        primary = {
            "id": global_id("SubAccount", row["primary_id"]),
            "name": row["primary_name"],
            "status": row["primary_status"],
        }
        user = {"id": global_id("User", row["user_id"]), "email": row["email"], "role": row["role"]}
        agency = {
            "id": global_id("Agency", row["agency_id"]),
            "name": row["agency_name"],
            "primarySubAccount": primary,
        }
        body = {"data": {"viewer": {"user": user, "agency": agency}}}
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
    args = parser.parse_args()
    dsn = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://", 1)
    app = create_app(dsn, os.environ["SECRET_KEY"].encode())
    uvicorn.run(app, host=args.host, port=args.port, **UVICORN_OPTIONS)


if __name__ == "__main__":
    main()
