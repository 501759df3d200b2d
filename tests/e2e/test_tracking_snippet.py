"""The platform's pages on another origin use /static/track.js: clicks, a reload mid-batch, a navigation and a
failed flush, and every event reaches the console exactly once, with its session and the member's traits."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from werkzeug.serving import make_server

from tests.conftest import INGEST_KEY, base_config, clean_state

PLATFORM_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<script src="{console}/static/track.js" data-ingest-key="{key}" data-flush-ms="1500"{options}></script>
<script>ConsoleTrack.identify("member-7", {{"email": "mia@example.org", "name": "Mia"}});</script>
</head><body>
<h1>{title}</h1>
<button id="like" data-feature="forum">Like</button>
<button id="share" data-feature="forum">Share</button>
<a id="next" href="/events">Events</a>
<script>
  document.querySelectorAll("button").forEach(function (button) {{
    button.addEventListener("click", function () {{
      var n = Number(sessionStorage.getItem("clicks") || 0) + 1;
      sessionStorage.setItem("clicks", String(n));
      ConsoleTrack.track(button.id, {{feature: button.dataset.feature, properties: {{click: n}}}});
    }});
  }});
</script>
</body></html>"""


@pytest.fixture
def platform(servers):
    """The console on one port, allowing the platform's origin to send activity; the platform on another."""
    from console import create_app, telemetry
    from console.cli import prepare_database
    from devtools.services import free_port

    console_port, platform_port = free_port(), free_port()
    console_url = f"http://127.0.0.1:{console_port}"
    platform_url = f"http://localhost:{platform_port}"  # another site, not only another port
    clean_state(servers)
    telemetry._flusher.instances.clear()
    app = create_app(base_config(servers, PUBLIC_BASE_URL=console_url, INGEST_CORS_ORIGINS=platform_url))
    with app.app_context():
        prepare_database()
    app.ingest_requests = []  # (query string, content type) of every POST to track-activity the console got
    wsgi = app.wsgi_app

    def recording(environ, start_response):
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].endswith("/track-activity"):
            app.ingest_requests.append((environ.get("QUERY_STRING", ""), environ.get("CONTENT_TYPE", "")))
        return wsgi(environ, start_response)

    app.wsgi_app = recording
    console_server = make_server("127.0.0.1", console_port, app, threaded=True)

    class Platform(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/favicon.ico":
                self.send_response(404)
                self.end_headers()
                return
            title = "Events" if self.path.startswith("/events") else "Community home"
            options = ' data-page-views="off"' if self.path.startswith("/quiet") else ""
            body = PLATFORM_PAGE.format(title=title, console=console_url, key=INGEST_KEY, options=options).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    platform_server = ThreadingHTTPServer(("127.0.0.1", platform_port), Platform)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (console_server, platform_server)]
    for thread in threads:
        thread.start()
    app.platform_url = platform_url
    yield app
    platform_server.shutdown()
    console_server.shutdown()


def _stored(app) -> list[dict]:
    from console.blueprints.engagement.models import UserActivity

    with app.app_context():
        return list(UserActivity._get_collection().find({}, {"_id": 0}))


def _queue(page) -> list:
    return page.evaluate("JSON.parse(localStorage.getItem('consoleTrack:queue') || '[]')")


def _wait(page, predicate, timeout=40.0, step=250):
    """Poll while letting Playwright run (its sync API dispatches route handlers only inside its own calls)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        page.wait_for_timeout(step)
    return False


def test_snippet_on_another_origin_stores_every_event_once(platform, page):
    refused = {"count": 0}

    def fail_first_flush(route):
        # the first fetch flush meets an overloaded console: 503 with Retry-After, then the real one answers
        if route.request.method == "POST" and route.request.resource_type == "fetch" and not refused["count"]:
            refused["count"] += 1
            route.fulfill(status=503, headers={"Retry-After": "1", "Access-Control-Allow-Origin": platform.platform_url,
                                               "Content-Type": "application/problem+json"},
                          body=json.dumps({"type": "about:blank", "title": "Service unavailable", "status": 503,
                                           "detail": "busy", "errors": []}))
        else:
            route.continue_()

    page.route("**/api/phase14/engagement/track-activity*", fail_first_flush)
    page.goto(f"{platform.platform_url}/")
    page.click("#like")
    page.click("#share")
    page.click("#like")
    assert len(_queue(page)) == 4  # the page view and three clicks, not sent yet (the flush waits 1.5 s)
    page.reload()  # mid-batch: the beacon on page hide or the queue after the reload carries them
    page.click("#like")
    page.click("#like")
    assert _wait(page, lambda: refused["count"] == 1, timeout=10), "no flush was attempted"
    page.click("#next")
    page.wait_for_url(f"{platform.platform_url}/events")
    page.click("#share")

    expected_clicks = 6
    assert _wait(page, lambda: not _queue(page), timeout=60), f"events still queued: {_queue(page)}"
    assert _wait(page, lambda: len(_stored(platform)) >= expected_clicks + 3, timeout=20)
    page.wait_for_timeout(1500)  # anything sent twice would have arrived by now
    stored = _stored(platform)

    clicks = sorted(e["properties"]["click"] for e in stored if e["event"] in {"like", "share"})
    assert clicks == list(range(1, expected_clicks + 1)), clicks  # each click exactly once
    views = [e for e in stored if e["event"] == "page_view"]
    assert sorted(v["properties"]["title"] for v in views) == ["Community home", "Community home", "Events"]
    assert [v["properties"]["path"] for v in views if v["properties"]["title"] == "Events"] == ["/events"]
    assert len(stored) == expected_clicks + 3
    assert len({e["event_id"] for e in stored}) == len(stored)
    assert {e["user_id"] for e in stored} == {"member-7"}
    assert len({e["session_id"] for e in stored}) == 1  # one visit, one session
    assert {e.get("feature") for e in stored if e["event"] != "page_view"} == {"forum"}
    assert refused["count"] == 1
    # the reload handed the unsent batch to sendBeacon (key in the query, text/plain JSON); flushes use the header
    beacons = [r for r in platform.ingest_requests if "ingest_key=" in r[0]]
    assert beacons and all(r[1].startswith("text/plain") for r in beacons)
    assert any(r == ("", "application/json") for r in platform.ingest_requests)

    from console.members import Member

    with platform.app_context():
        member = Member._get_collection().find_one({"user_id": "member-7"})
    assert member["email"] == "mia@example.org" and member["name"] == "Mia"
    assert page.context.cookies() == []  # the snippet sets no cookies on either origin
    assert not [e for e in page.js_errors if "Failed to load resource" not in e], page.js_errors


def test_a_new_session_starts_after_30_idle_minutes(platform, page):
    page.goto(f"{platform.platform_url}/")
    first = page.evaluate("JSON.parse(localStorage.getItem('consoleTrack:session')).id")
    page.evaluate("""() => {
        const s = JSON.parse(localStorage.getItem('consoleTrack:session'));
        s.last -= 31 * 60 * 1000;
        localStorage.setItem('consoleTrack:session', JSON.stringify(s));
    }""")
    page.click("#like")
    assert page.evaluate("JSON.parse(localStorage.getItem('consoleTrack:session')).id") != first
    assert _wait(page, lambda: len(_stored(platform)) == 2, timeout=20)
    assert len({e["session_id"] for e in _stored(platform)}) == 2


def test_page_views_can_be_turned_off_and_reset_forgets_the_member(platform, page):
    page.goto(f"{platform.platform_url}/quiet")
    page.click("#like")
    assert _wait(page, lambda: not _queue(page), timeout=20)
    assert [e["event"] for e in _stored(platform)] == ["like"]  # no page view
    page.evaluate("ConsoleTrack.reset()")
    page.evaluate("ConsoleTrack.track('anonymous_click')")
    page.wait_for_timeout(2500)
    assert [e["event"] for e in _queue(page)] == ["anonymous_click"]  # held: nobody is identified
    assert len(_stored(platform)) == 1
    page.evaluate("ConsoleTrack.identify('member-8')")
    assert _wait(page, lambda: not _queue(page), timeout=20)
    assert {(e["user_id"], e["event"]) for e in _stored(platform)} == {("member-7", "like"),
                                                                       ("member-8", "anonymous_click")}
