"""`serve --workers 2`: /metrics adds up what every worker counted, whichever worker answers
the scrape, and what an earlier run left in PROMETHEUS_MULTIPROC_DIR is not counted again."""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter

import httpx
import pytest

from tests.conftest import empty_all_tables
from tests.e2e.server import children, production_env, server_process, serving_process
from tests.e2e.test_live_monitoring import an_agency_with_a_client

pytestmark = pytest.mark.e2e
PROBE = "query Probe { viewer { agency { name } } }"
COUNT = 'agencyhub_graphql_request_duration_seconds_count{operation="Probe",outcome="ok"}'


def probes_counted(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(COUNT + " "):
            return float(line.split()[-1])
    return 0.0


def post_on_a_new_connection(base, candidates, query, token):
    """(the worker that served it, the answer) for `query` sent on a connection of its own."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/healthz")  # accepted: the OS now tells who holds it
        connection.getresponse().read()
        pid = serving_process(candidates, int(port), connection.sock.getsockname()[1])
        body = json.dumps({"query": query})
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        connection.request("POST", "/graphql", body, headers)
        return pid, json.loads(connection.getresponse().read())
    finally:
        connection.close()


async def test_two_workers_metrics_add_up_whichever_answers(tmp_path, databases):
    await empty_all_tables(databases["postgresql"])
    directory = tmp_path / "prom"
    directory.mkdir()
    # given what a previous run left: it must not be added to this run's figures
    (directory / "histogram_999999.db").write_bytes(b"\0" * 64)
    env = production_env(
        databases["postgresql"], WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(directory)
    )
    with server_process(tmp_path, **env) as (url, server):
        workers = children(server.pid)
        token, _, _ = an_agency_with_a_client(url)

        # when named queries arrive on new connections until two workers served some
        served: Counter[int] = Counter()
        deadline = time.monotonic() + 60
        while (len(served) < 2 or min(served.values()) < 2) and time.monotonic() < deadline:
            pid, answer = post_on_a_new_connection(url, workers, PROBE, token)
            assert "errors" not in answer, answer
            served[pid] += 1
        assert len(served) == 2, f"every connection went to one worker: {served}"

        # then every scrape, whichever worker answers it, counts them all
        total = float(sum(served.values()))
        assert [probes_counted(url) for _ in range(6)] == [total] * 6
        assert not (directory / "histogram_999999.db").exists()
        assert any(directory.glob("*.db"))  # the workers' own files
