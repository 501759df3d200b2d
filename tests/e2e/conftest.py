"""Browser tests: the real Chromium from Debian, driven by Playwright, against a live server."""

from __future__ import annotations

import os
import shutil
import threading

import pytest
from werkzeug.serving import make_server

from tests.conftest import TEST_PASSWORD, base_config, clean_state

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium():
    if not (shutil.which(CHROMIUM) or os.path.exists(CHROMIUM)):
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"Chromium is required (REQUIRE_BROWSER=1) but {CHROMIUM} is missing")
        pytest.skip(f"BROWSER TESTS SKIPPED: {CHROMIUM} not found (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def live_server(servers):
    """The console on a free port in a background thread, sharing the test servers."""
    from console import create_app, telemetry
    from devtools.services import free_port

    port = free_port()
    telemetry._flusher.instances.clear()  # as make_app: no earlier app flushes into this one's database
    app = create_app(base_config(servers, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}"))
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    app.live_url = f"http://127.0.0.1:{port}"
    yield app
    server.shutdown()


@pytest.fixture
def live(live_server, servers):
    """A clean database for each browser test, with indexes and roles."""
    from console.cli import prepare_database

    clean_state(servers)
    with live_server.app_context():
        prepare_database()
        yield live_server


@pytest.fixture
def page(chromium, request, output_dir):
    context = chromium.new_context(viewport={"width": 1366, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.js_errors = errors
    yield tab
    tab.screenshot(path=str(output_dir / f"{request.node.name}-final.png"), full_page=True)
    context.close()


@pytest.fixture
def sign_in(live, page):
    """Create an admin with the roles and sign in through the login form in the browser."""
    from console.accounts import Admin
    from console.authz import bump_authz_version
    from console.security import hash_password

    def go(*roles: str, email: str | None = None):
        address = email or f"{'-'.join(roles)}@browser.example.com"
        Admin(email=address, name=address.split("@")[0].replace("-", " ").title(), roles=list(roles),
              password_hash=hash_password(TEST_PASSWORD)).save()
        bump_authz_version()
        page.goto(f"{live.live_url}/login")
        page.fill("input[name=email]", address)
        page.fill("input[name=password]", TEST_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live.live_url}/")
        return page

    return go
