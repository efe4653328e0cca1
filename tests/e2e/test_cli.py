"""The console script's commands, run as a user would run them."""

import os
import subprocess

import pytest

from tests.conftest import REDIS_URL
from tests.e2e.server import AGENCYHUB
from tests.factories import gql, make_agency

pytestmark = pytest.mark.e2e

KEYS = "{ viewer { agency { apiKeys { edges { node { name } } } } } }"


def run(*args, **env):
    environment = {**os.environ, "SECRET_KEY": "test-secret", **env}
    return subprocess.run(
        [AGENCYHUB, *args], env=environment, capture_output=True, text=True, timeout=60
    )


async def test_create_api_key_from_the_command_line(app_client, database_url):
    owner = await make_agency(app_client)
    done = run(
        "create-api-key", "--agency", owner.id, "--name", "cli key", DATABASE_URL=database_url
    )
    assert done.returncode == 0, done.stderr
    assert "ahk_" in done.stdout
    listed = await gql(app_client, KEYS, token=owner.token)
    edges = listed["data"]["viewer"]["agency"]["apiKeys"]["edges"]
    assert [e["node"]["name"] for e in edges] == ["cli key"]
    unknown = run("create-api-key", "--agency", "nope", "--name", "x", DATABASE_URL=database_url)
    assert unknown.returncode == 2 and "global ID or UUID" in unknown.stderr


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
