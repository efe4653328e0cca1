"""A real browser (Debian's headless chromium, driven by Selenium through chromedriver) runs a
front end served from its own origin (tests/clients/page.html) against a real server whose
CORS_ALLOWED_ORIGINS lists that origin: the page queries with fetch and watches usage with the
graphql-ws browser build. The same page from an origin not in the list is refused."""

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from tests.conftest import empty_all_tables
from tests.e2e.server import production_env, running_server
from tests.e2e.test_live_monitoring import RECORD, a_call, an_agency_with_a_client
from tests.e2e.test_server_process import post

pytestmark = pytest.mark.e2e

CLIENTS = Path(__file__).parents[1] / "clients"
FILES = {  # what the front end's own server serves
    "/": (CLIENTS / "page.html", "text/html"),
    "/graphql-ws.js": (
        CLIENTS / "node_modules/graphql-ws/umd/graphql-ws.min.js",
        "text/javascript",
    ),
}


class FrontEnd(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if (found := FILES.get(self.path.split("?")[0])) is None:
            self.send_error(404)  # the browser asks for /favicon.ico too
            return
        path, content_type = found
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def front_end() -> Iterator[str]:
    """Serves the page on a port of its own (so an origin of its own); yields that origin."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FrontEnd)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
async def origins(tmp_path_factory, databases):
    """(server base URL, a listed front end's origin, an unlisted one's)."""
    assert all(path.exists() for path, _ in FILES.values()), "npm packages missing: make clients"
    await empty_all_tables(databases["postgresql"])
    with front_end() as listed, front_end() as unlisted:
        env = production_env(
            databases["postgresql"], CORS_ALLOWED_ORIGINS=listed, WS_KEEPALIVE_SECONDS="0.2"
        )
        with running_server(tmp_path_factory.mktemp("browser"), **env) as base:
            yield base, listed, unlisted


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """Debian's chromium and chromedriver (installed by `make test`; never a downloaded build)."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert browser and driver, "chromium and chromedriver are missing: run `make clients`"
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless",
        "--no-sandbox",  # as root, in CI containers
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # With the driver's path given, Selenium never looks for (or downloads) another one.
    session = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield session
    finally:
        session.quit()


def open_page(chromium, origin, base, token, client):
    chromium.get_log("browser")  # drop what earlier pages logged
    query = urlencode({"api": base, "token": token, "subAccountId": client})
    chromium.get(f"{origin}/?{query}")


def text_of(chromium, element_id):
    return chromium.find_element(By.ID, element_id).text


def until(chromium, condition, what):
    """Waits (polling the page) until `condition(chromium)` holds; returns its value."""
    try:
        return WebDriverWait(chromium, 15, poll_frequency=0.05).until(condition)
    except TimeoutException:
        pytest.fail(f"never {what}; the page shows:\n{text_of(chromium, 'page')}")


def events_shown(chromium, count):
    """The (sequence, PREMIUM seconds) of the events listed, once there are `count` of them."""

    def listed(page):
        if not text_of(page, "socket").startswith(("connecting", "connected")):
            pytest.fail(f"the socket failed; the page shows:\n{text_of(page, 'page')}")
        items = page.find_elements(By.CSS_SELECTOR, "#events li")
        return items if len(items) >= count else None

    return [
        (int(li.get_attribute("data-sequence")), int(li.get_attribute("data-premium-seconds")))
        for li in until(chromium, listed, f"{count} events shown")
    ]


def settled(chromium):
    """What the page shows once its fetch and its socket have each succeeded or failed."""
    until(chromium, lambda page: text_of(page, "viewer") != "…", "the fetch settled")
    until(chromium, lambda page: text_of(page, "socket") != "connecting", "the socket settled")
    return text_of(chromium, "viewer"), text_of(chromium, "socket")


def test_a_page_on_a_listed_origin_queries_and_watches_usage_live(chromium, origins):
    base, listed, _ = origins
    token, client, key = an_agency_with_a_client(base)
    # given the front end open on its listed origin
    open_page(chromium, listed, base, token, client)
    before = events_shown(chromium, 1)  # the transfer, replayed: the subscription is live
    until(chromium, lambda page: text_of(page, "pings") != "0", "a keep-alive ping")
    # when the platform records a 60 s call, then a 30 s one
    post(base, RECORD, {"calls": [a_call(client, 60)]}, key)
    events_shown(chromium, 2)
    post(base, RECORD, {"calls": [a_call(client, 30)]}, key)
    events = events_shown(chromium, 3)
    # then the page shows who is signed in and each call's balance, in sequence order
    viewer, socket = settled(chromium)
    assert viewer.endswith("@e2e.example") and socket == "connected"
    assert before == events[:1]
    assert [seconds for _, seconds in events] == [480, 420, 390]
    assert events == sorted(events) and len({sequence for sequence, _ in events}) == 3


def test_a_page_on_an_unlisted_origin_can_neither_fetch_nor_connect(chromium, origins):
    base, _, unlisted = origins
    token, client, _ = an_agency_with_a_client(base)
    # when the same front end runs on an origin the server does not list
    open_page(chromium, unlisted, base, token, client)
    # then its fetch fails (the preflight is refused) and so does its WebSocket upgrade
    assert settled(chromium) == ("failed: TypeError", "closed 1006")
    assert chromium.find_elements(By.CSS_SELECTOR, "#events li") == []
    console = "\n".join(entry["message"] for entry in chromium.get_log("browser"))
    assert "blocked by CORS policy" in console, console
    assert "Unexpected response code: 403" in console, console
