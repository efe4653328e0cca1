"""The console script's commands, run as a user would run them."""

import asyncio
import os
import subprocess
import uuid

import pytest

from tests.conftest import REDIS_URL
from tests.e2e.server import AGENCYHUB
from tests.factories import gql, make_agency

pytestmark = pytest.mark.e2e

KEYS = "{ viewer { agency { apiKeys { edges { node { name } } } } } }"
NEWEST_ENTRY = """{ viewer { agency { auditLog(first: 1) {
  edges { node { kind email summary } } } } } }"""


def run(*args, **env):
    environment = {**os.environ, "SECRET_KEY": "test-secret", **env}
    return subprocess.run(
        [AGENCYHUB, *args], env=environment, capture_output=True, text=True, timeout=60
    )


async def test_create_api_key_from_the_command_line(app_client, database_url):
    owner = await make_agency(app_client)
    # In a thread: the in-process app's relay must keep running (on SQLite it may hold the
    # write lock for a moment, and a blocked event loop would hold it for the CLI's 30 s).
    done = await asyncio.to_thread(
        run,
        "create-api-key",
        "--agency",
        owner.id,
        "--name",
        "cli key",
        DATABASE_URL=database_url,
    )
    assert done.returncode == 0, done.stderr
    assert "ahk_" in done.stdout
    listed = await gql(app_client, KEYS, token=owner.token)
    edges = listed["data"]["viewer"]["agency"]["apiKeys"]["edges"]
    assert [e["node"]["name"] for e in edges] == ["cli key"]
    # the audit log says the command line did it, with no user to name
    logged = await gql(app_client, NEWEST_ENTRY, token=owner.token)
    [entry] = [e["node"] for e in logged["data"]["viewer"]["agency"]["auditLog"]["edges"]]
    assert entry == {
        "kind": "API_KEY_CREATED",
        "email": None,
        "summary": "created the API key 'cli key' from the command line",
    }
    unknown = await asyncio.to_thread(
        run, "create-api-key", "--agency", "nope", "--name", "x", DATABASE_URL=database_url
    )
    assert unknown.returncode == 2 and "global ID or UUID" in unknown.stderr
    missing = ("create-api-key", "--agency", str(uuid.uuid4()), "--name", "x")
    nowhere = await asyncio.to_thread(run, *missing, DATABASE_URL=database_url)
    assert nowhere.returncode == 1 and "no such agency" in nowhere.stderr


def test_seed_demo_then_check_ledger_on_a_fresh_embedded_database(tmp_path):
    env = {"DATA_DIR": str(tmp_path / "data")}
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    seeded = subprocess.run(
        [AGENCYHUB, "seed-demo"],
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert seeded.returncode == 0, seeded.stderr
    assert "owner@demo-agency.example" in seeded.stdout
    checked = subprocess.run(
        [AGENCYHUB, "check-ledger"],
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert checked.returncode == 0 and "ledger: balanced" in checked.stdout


def test_export_schema_writes_the_sdl(tmp_path):
    out = tmp_path / "schema.graphql"
    done = run("export-schema", str(out))
    assert done.returncode == 0
    assert "type Query" in out.read_text()


@pytest.mark.parametrize(
    "command", [["serve"], ["serve", "--workers", "2"], ["grant-plan-minutes"]]
)
def test_postgresql_without_secret_key_stops_with_one_line(tmp_path, databases, command):
    # given the production shape with SECRET_KEY forgotten
    environment = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    environment.update(DATABASE_URL=databases["postgresql"], REDIS_URL=REDIS_URL)
    # when the server (or a job) starts
    done = subprocess.run(
        [AGENCYHUB, *command],
        env=environment,
        cwd=tmp_path,  # no .env file here
        capture_output=True,
        text=True,
        timeout=60,
    )
    # then it stops at once, naming the setting, instead of generating a key of its own
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("agencyhub: SECRET_KEY is required"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "data" / "secret_key").exists()
