"""The Python client in clients/python against the real app served on a local port, with a fault proxy in front
of it for the failures a network and an overloaded console produce (429 with Retry-After, 503, lost answers)."""

from __future__ import annotations

import http.client
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server

from tests.conftest import INGEST_KEY, TEST_PASSWORD, clean_state

CLIENT_DIR = Path(__file__).resolve().parent.parent / "clients" / "python"
sys.path.insert(0, str(CLIENT_DIR / "src"))

from community_console_client import (  # noqa: E402  (imported from the repository's clients/python)
    BatchResult,
    Console,
    ConsoleError,
    ConsoleUnavailable,
    EmailResult,
    Event,
    Recipient,
    TrackResult,
)


class Served:
    def __init__(self, app, url):
        self.app, self.url = app, url
        self.requests: list[tuple[str, str]] = []  # (method, path) the app received


@pytest.fixture
def served(make_app, servers):
    """The real app on a free port (werkzeug in a thread, as bench/bench_console.py serves it)."""
    from console.cli import prepare_database
    from devtools.services import free_port

    clean_state(servers)
    app = make_app(RATELIMIT_ENABLED=True)
    with app.app_context():
        prepare_database()
    port = free_port()
    found = Served(app, f"http://127.0.0.1:{port}")
    wsgi = app.wsgi_app

    def recording(environ, start_response):
        found.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        return wsgi(environ, start_response)

    app.wsgi_app = recording
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with app.app_context():
        yield found
    server.shutdown()


class FaultProxy:
    """Forwards to the app, except for scripted faults, one per request in order:
    ("answer", status, headers) answers without forwarding; ("lose", status) forwards, then answers `status`
    instead of the app's answer (the work was done, the client never hears of it)."""

    def __init__(self, target: str, faults: list):
        self.faults = list(faults)
        self.seen: list[tuple[float, bytes]] = []
        host, port = urlsplit(target).hostname, urlsplit(target).port
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.seen.append((time.monotonic(), body))
                fault = proxy.faults.pop(0) if proxy.faults else None
                if fault and fault[0] == "answer":
                    self._send(fault[1], fault[2], b'{"type": "about:blank", "title": "Busy", "status": %d, '
                                                   b'"detail": "try later", "errors": []}' % fault[1])
                    return
                upstream = http.client.HTTPConnection(host, port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "connection"}}
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                if fault and fault[0] == "lose":
                    self._send(fault[1], {}, b"<html>bad gateway</html>", "text/html")
                    return
                self._send(answer.status, {k: v for k, v in answer.getheaders()
                                           if k.lower() in {"retry-after"}}, data, answer.getheader("Content-Type"))

            def _send(self, status, headers, body, content_type="application/problem+json"):
                self.send_response(status)
                self.send_header("Content-Type", content_type or "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def proxy(served):
    made = []

    def start(*faults):
        made.append(FaultProxy(served.url, list(faults)))
        return made[-1]

    yield start
    for each in made:
        each.close()


def _activity(*fields):
    from console.blueprints.engagement.models import UserActivity

    return list(UserActivity._get_collection().find({}, {"_id": 0, **{f: 1 for f in fields}}))


def _admin_client(served, create_admin, role="admin") -> Console:
    admin = create_admin(role)
    return Console.login(served.url, admin.email, TEST_PASSWORD)


def _member_and_template(email="mia@example.org"):
    from console.blueprints.communication.models import EmailTemplate
    from console.members import Member

    Member._get_collection().insert_one({"user_id": "m1", "email": email, "name": "Mia"})
    return str(EmailTemplate(name="Welcome", subject="Hi {{ name }}", html_body="<p>Hi {{ name }}</p>",
                             category="transactional").save().id)


# --- tracking ------------------------------------------------------------------------------------------------

def test_track_with_the_ingest_key_generates_an_event_id_and_dedupes(served):
    console = Console(served.url, ingest_key=INGEST_KEY)
    result = console.track("m1", "page_view", feature="blog", properties={"path": "/b/1"},
                           traits={"email": "m1@example.org"}, timestamp="2026-01-05T10:00:00Z")
    assert isinstance(result, TrackResult)
    assert result.accepted == 1 and result.duplicates == 0 and len(result.event_ids) == 1
    stored = _activity("event_id", "feature", "properties")
    assert stored == [{"event_id": result.event_ids[0], "feature": "blog", "properties": {"path": "/b/1"}}]
    again = console.track("m1", "page_view", event_id=result.event_ids[0])
    assert again.accepted == 0 and again.duplicates == 1
    assert len(_activity("event_id")) == 1


def test_track_many_sends_chunks_of_1000_and_counts_rejections_over_all_events(served):
    console = Console(served.url, ingest_key=INGEST_KEY)
    events = [Event(f"m{n % 50}", "click", properties={"n": n}) for n in range(2500)]
    events[1500] = {"user_id": "m1", "event": ""}  # invalid: an empty event name
    result = console.track_many(events)
    assert result.accepted == 2499 and result.duplicates == 0
    assert [r.index for r in result.rejected] == [1500] and result.rejected[0].errors[0].field == "event"
    posts = [r for r in served.requests if r == ("POST", "/api/phase14/engagement/track-activity")]
    assert len(posts) == 3
    assert len(_activity("event_id")) == 2499
    assert len(set(result.event_ids)) == 2500


def test_a_rejected_single_event_raises_one_error_type_with_the_field_errors(served):
    console = Console(served.url, ingest_key=INGEST_KEY)
    with pytest.raises(ConsoleError) as caught:
        console.track("m1", "x" * 300)
    error = caught.value
    assert error.status == 422 and error.title == "Validation failed"
    assert "event" in error.field_errors and _activity("event_id") == []


def test_the_ingest_key_authorizes_nothing_else(served):
    _member_and_template()
    console = Console(served.url, ingest_key=INGEST_KEY)
    with pytest.raises(ConsoleError) as caught:
        console.send_email("0" * 24, user_id="m1")
    assert caught.value.status == 401
    with pytest.raises(ConsoleError) as caught:
        Console(served.url, ingest_key="wrong").track("m1", "x")
    assert caught.value.status == 401


# --- retries -------------------------------------------------------------------------------------------------

def test_429_and_503_are_retried_honouring_retry_after_and_stored_once(served, proxy):
    faulty = proxy(("answer", 429, {"Retry-After": "1"}), ("answer", 503, {"Retry-After": "1"}))
    console = Console(faulty.url, ingest_key=INGEST_KEY, backoff=0.01)
    started = time.monotonic()
    result = console.track("m1", "signup")
    assert result.accepted == 1
    assert len(faulty.seen) == 3 and faulty.seen[2][0] - faulty.seen[0][0] >= 1.9  # waited as told, twice
    assert faulty.seen[0][1] == faulty.seen[2][1]  # the same body (and event_id) every time
    assert len(_activity("event_id")) == 1 and time.monotonic() - started < 10


def test_a_lost_answer_is_retried_with_the_same_ids_and_nothing_is_done_twice(served, proxy, create_admin):
    from console.blueprints.communication.models import EmailQueue

    template_id = _member_and_template()
    token = _admin_client(served, create_admin).token
    faulty = proxy(("lose", 502), ("lose", 502))
    console = Console(faulty.url, token=token, ingest_key=INGEST_KEY, backoff=0.01)

    tracked = console.track("m1", "purchase")
    assert tracked.accepted == 0 and tracked.duplicates == 1  # the first attempt stored it; the retry was a duplicate
    assert len(_activity("event_id")) == 1

    faulty.faults = [("lose", 502)]
    sent = console.send_email(template_id, user_id="m1", variables={"name": "Mia"})
    assert isinstance(sent, EmailResult) and sent.duplicate and sent.idempotency_key
    assert EmailQueue.objects.count() == 1 and str(EmailQueue.objects.first().id) == sent.email_id


def test_batch_send_is_not_retried_after_a_5xx_but_is_after_a_429(served, proxy, create_admin):
    from console.blueprints.communication.models import EmailQueue

    template_id = _member_and_template()
    token = _admin_client(served, create_admin).token
    faulty = proxy(("lose", 502))
    console = Console(faulty.url, token=token, backoff=0.01)
    with pytest.raises(ConsoleError) as caught:
        console.batch_send(template_id, [Recipient(user_id="m1")])
    assert caught.value.status == 502 and len(faulty.seen) == 1  # once only: it may have been done
    assert EmailQueue.objects.count() == 1

    faulty.faults = [("answer", 429, {"Retry-After": "0"})]
    batch = console.batch_send(template_id, [Recipient(email="other@example.org", variables={"name": "O"})])
    assert isinstance(batch, BatchResult) and batch.queued == 1 and len(faulty.seen) == 3


def test_a_longer_retry_after_than_allowed_raises_at_once(served):
    served.app.config["INGEST_RATE_LIMIT"] = "2 per minute"
    console = Console(served.url, ingest_key=INGEST_KEY, max_retry_after=5)
    console.track("m1", "a")
    console.track("m1", "b")
    started = time.monotonic()
    with pytest.raises(ConsoleError) as caught:
        console.track("m1", "c")
    assert caught.value.status == 429 and caught.value.retry_after == 60
    assert time.monotonic() - started < 3
    assert len(_activity("event_id")) == 2


def test_no_console_at_all_is_console_unavailable_after_the_retries(served):
    from devtools.services import free_port

    console = Console(f"http://127.0.0.1:{free_port()}", ingest_key=INGEST_KEY, max_retries=2, backoff=0.01)
    with pytest.raises(ConsoleUnavailable) as caught:
        console.track("m1", "x")
    assert isinstance(caught.value, ConsoleError) and caught.value.status is None


# --- communication -------------------------------------------------------------------------------------------

def test_send_email_and_batch_send_with_a_token(served, create_admin, run_jobs, servers):
    template_id = _member_and_template()
    console = _admin_client(served, create_admin)
    first = console.send_email(template_id, user_id="m1", variables={"name": "Mia"}, idempotency_key="welcome-m1")
    assert first.status in {"queued", "sent"} and not first.duplicate
    again = console.send_email(template_id, user_id="m1", variables={"name": "Mia"}, idempotency_key="welcome-m1")
    assert again.email_id == first.email_id and again.duplicate
    batch = console.batch_send(template_id, [Recipient(user_id="m1"), {"email": "b@example.org"}],
                               variables={"name": "Friend"})
    assert batch.queued == 2 and batch.skipped == 0
    run_jobs()
    status = console.batch_status(batch.batch_id)
    assert status.total == 2 and status.sent == 2 and status.status == "complete"
    assert sorted(m["To"] for m in servers.messages()) == ["b@example.org", "mia@example.org", "mia@example.org"]


def test_problem_details_carry_status_title_and_field_errors(served, create_admin):
    console = _admin_client(served, create_admin)
    with pytest.raises(ConsoleError) as caught:
        console.batch_send("0" * 24, [{"user_id": ""}], priority="urgent")
    error = caught.value
    assert error.status == 422 and error.title == "Validation failed" and error.type == "/problems/validation"
    assert {"priority", "recipients.0.user_id"} <= set(error.field_errors), error.field_errors
    with pytest.raises(ConsoleError) as caught:
        Console.login(served.url, "nobody@example.org", "wrong-password-123")
    assert caught.value.status == 401
    analyst = _admin_client(served, create_admin, "analyst")
    with pytest.raises(ConsoleError) as caught:
        analyst.send_email("0" * 24, email="x@example.org")
    assert caught.value.status == 403 and caught.value.title == "Permission denied"


def test_notify_sends_the_bound_template_once_per_event_id(served, create_admin, servers, run_jobs):
    from console.members import Member
    from console.security import issue_token

    Member._get_collection().insert_one({"user_id": "m1", "email": "mia@example.org", "name": "Mia"})
    token, _ = issue_token(create_admin("super_admin"))
    browser = served.app.test_client()
    browser.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    created = browser.post("/api/phase14/communication/templates", json={
        "name": "Approved", "subject": "Approved, {{ name }}", "html_body": "<p>{{ title }}</p>",
        "category": "transactional", "key": "client.checked"})
    assert created.status_code == 201, created.json
    bound = browser.put("/api/phase14/communication/bindings/client.checked",
                        json={"template_key": "client.checked"})
    assert bound.status_code == 200, bound.json
    console = Console(served.url, token=token)

    first = console.notify("client.checked", user_id="m1", data={"name": "Mia", "title": "Clean-up"})
    assert first.email_id and not first.skipped and not first.duplicate and first.event_id
    again = console.notify("client.checked", user_id="m1", data={"name": "Mia", "title": "Clean-up"},
                           event_id=first.event_id)
    assert again.email_id == first.email_id and again.duplicate
    with pytest.raises(ConsoleError) as caught:
        console.notify("no_such.event", user_id="m1")
    assert caught.value.status == 422 and "event" in caught.value.field_errors
    run_jobs()
    assert [m["To"] for m in servers.messages()] == ["mia@example.org"]


# --- packaging -----------------------------------------------------------------------------------------------

def test_the_client_installs_with_pip_and_needs_nothing_else(tmp_path):
    source, target = tmp_path / "client", tmp_path / "site"
    shutil.copytree(CLIENT_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, capture_output=True,
                   timeout=240)
    check = (f"import sys; sys.path.insert(0, {str(target)!r}); "
             "import importlib.metadata as m, community_console_client as c; "
             "print(c.__version__, c.__file__, m.requires('community-console-client'))")
    out = subprocess.run([sys.executable, "-I", "-c", check], check=True, capture_output=True, text=True,
                         timeout=60).stdout.split()
    assert out[0] == "0.1.0" and out[1].startswith(str(target)) and out[2] == "None"
