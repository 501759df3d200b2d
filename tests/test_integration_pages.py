"""The Install tracking page and the snippet it points at."""

from __future__ import annotations

import html
import re

from tests.conftest import INGEST_KEY

PAGE = "/integration/tracking"


def _lines(body: str) -> list[str]:
    block = re.search(r'<pre class="code" id="install-lines">(.*?)</pre>', body, re.S)
    assert block, "no install lines on the page"
    return [html.unescape(line) for line in block.group(1).strip().splitlines()]


def test_admin_sees_the_two_lines_with_key_and_console_origin(make_app, app, login):
    browser = login("admin")
    response = browser.get(PAGE)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    first, second = _lines(body)
    assert first == f'<script src="http://localhost/static/track.js" data-ingest-key="{INGEST_KEY}"></script>'
    assert second.startswith('<script>ConsoleTrack.identify("USER_ID", {') and second.endswith("</script>")
    assert 'id="install-origins-missing"' in body and "INGEST_CORS_ORIGINS=" in body
    assert f'href="{PAGE}"' in browser.get("/").get_data(as_text=True)  # the nav entry


def test_page_lists_the_allowed_origins_and_the_chosen_tracking_key(make_app, servers, create_admin):
    from tests.conftest import clean_state, signed_in_client

    clean_state(servers)
    configured = make_app(INGEST_KEYS="server-key-0123456789abcdef,browser-key-0123456789abcdef",
                          TRACKING_INGEST_KEY="browser-key-0123456789abcdef",
                          PUBLIC_BASE_URL="https://console.example.org/",
                          INGEST_CORS_ORIGINS="https://www.example.org", CORS_ORIGINS="http://localhost:3000")
    with configured.app_context():
        from console.cli import prepare_database

        prepare_database()
        browser = signed_in_client(configured, create_admin("super_admin"))
        body = browser.get(PAGE).get_data(as_text=True)
    first, _ = _lines(body)
    assert first == ('<script src="https://console.example.org/static/track.js" '
                     'data-ingest-key="browser-key-0123456789abcdef"></script>')
    origins = re.search(r'id="install-origins">(.*?)</ul>', body, re.S).group(1)
    assert "https://www.example.org" in origins and "http://localhost:3000" in origins
    assert "plain HTTP" in origins and "server-key" not in body


def test_without_ingest_keys_the_page_says_what_to_set(make_app, servers, create_admin, login):
    browser = login("admin")
    browser.application.config["INGEST_KEYS"] = ""
    body = browser.get(PAGE).get_data(as_text=True)
    assert "No ingest key is configured" in body and "install-lines" not in body


def test_roles_without_engagement_track_cannot_open_it(app, login):
    for role in ("analyst", "content_manager", "moderator"):
        browser = login(role)
        assert browser.get(PAGE).status_code == 403
        assert f'href="{PAGE}"' not in browser.get("/").get_data(as_text=True)
    assert app.test_client().get(PAGE).status_code == 302  # anonymous: to the login page


def test_snippet_is_served_small_without_cookies(client):
    response = client.get("/static/track.js")
    assert response.status_code == 200
    assert response.mimetype in {"text/javascript", "application/javascript"}
    assert "Set-Cookie" not in response.headers
    source = response.get_data(as_text=True)
    assert len(source) < 16 * 1024
    assert "document.cookie" not in source and "import " not in source and "require(" not in source
    for name in ("sendBeacon", "localStorage", "event_id", "session_id", "Retry-After", "X-Ingest-Key",
                 "ingest_key="):
        assert name in source, name
