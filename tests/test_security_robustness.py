"""Regression tests for what an attacker's read of the code found (issue 15): redirects, malformed input,
production settings, email changes through ingest, failed-auth throttling, exports, charts, tracking writes,
the test suite's own targets and the server banner."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from bson import ObjectId
from pymongo import monitoring

from console import create_app
from console.audit import AuditLog
from console.config import DEV_INGEST_KEY, ConfigError
from console.members import Member
from console.timeutil import utcnow
from tests.conftest import INGEST_KEY, TEST_PASSWORD, UnsafeTestTarget, base_config, csrf_token_from, named_test_servers
from tests.engagement_helpers import TRACK, ev

ROOT = Path(__file__).resolve().parent.parent


# --- 3: next after login ------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [
    "/\\evil.example/x", "/%5Cevil.example/x", "//evil.example/x", "/\\/evil.example", "\\\\evil.example",
    "/%5C%5Cevil.example", "/%255Cevil.example", "/\t/evil.example", "/\n/evil.example", "/%09/evil.example",
    "/%0a/evil.example", "https://evil.example/", "javascript:alert(1)", "/%2F/evil.example", "evil.example",
])
def test_next_never_leaves_the_site(login, target):
    browser = login("analyst")
    response = browser.get("/login", query_string={"next": target})
    assert response.status_code == 302 and response.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/engagement", "/communication/templates?q=a%20b", "/engagement/members"])
def test_next_keeps_same_site_paths(login, target):
    browser = login("analyst")
    response = browser.get("/login", query_string={"next": target})
    assert response.status_code == 302 and response.headers["Location"] == target


def test_next_is_checked_on_sign_in_too(client, create_admin):
    admin = create_admin("analyst")
    token = csrf_token_from(client.get("/login").data)
    response = client.post("/login", data={"email": admin.email, "password": TEST_PASSWORD, "csrf_token": token,
                                           "next": "/%5Cevil.example"})
    assert response.status_code == 302 and response.headers["Location"] == "/"


# --- 4: malformed input ---------------------------------------------------------------------------------------

def test_deeply_nested_json_to_the_token_endpoint_is_a_400_problem(client):
    response = client.post("/api/auth/token", data="[" * 5000 + "]" * 5000, content_type="application/json")
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    nested = client.post("/api/auth/token", data='{"a":' * 100 + "1" + "}" * 100, content_type="application/json")
    assert nested.status_code == 400 and "nested" in nested.json["detail"]


def test_non_ascii_ingest_key_is_401_not_500(client):
    response = client.post(TRACK, json=ev("u1", "2026-01-05T10:00:00Z"), headers={"X-Ingest-Key": "clé-ü"})
    assert response.status_code == 401 and response.mimetype == "application/problem+json"
    assert Member.objects.count() == 0


def test_dollar_keys_in_the_editors_sample_data_are_a_readable_422(login):
    from console.blueprints.communication.models import EmailTemplate
    from tests.communication_helpers import WELCOME

    browser = login("content_manager")
    before = EmailTemplate.objects.count()  # the built-in catalog
    form = {**WELCOME, "text_body": "", "sample_data": json.dumps({"$where": "1", "a": {"b.c": 1}})}
    response = browser.post("/communication/templates/save", data=form)
    assert response.status_code == 422 and b"sample_data.$where" in response.data
    deep = browser.post("/communication/templates/save", data=form | {"sample_data": "[" * 3000 + "]" * 3000})
    assert deep.status_code == 422 and b"sample data must be a JSON object" in deep.data
    assert EmailTemplate.objects.count() == before and not EmailTemplate.objects(name=WELCOME["name"])


# --- 6: production settings ----------------------------------------------------------------------------------

def _production(servers, monkeypatch, **env):
    monkeypatch.setenv("CONSOLE_ENV", "production")
    for key, value in {"SECRET_KEY": "k" * 20 + "0123456789abcdefghijklmn", "INGEST_KEYS": "prod-key-1", **env}.items():
        monkeypatch.setenv(key, value)
    config = base_config(servers)
    for key in ("SECRET_KEY", "INGEST_KEYS", *(["PUBLIC_BASE_URL"] if "PUBLIC_BASE_URL" in env else [])):
        config.pop(key)
    return create_app(config)


@pytest.mark.parametrize(("env", "message"), [
    ({"SECRET_KEY": "x"}, "SECRET_KEY must be at least 32 bytes"),
    ({"SECRET_KEY": "a" * 31}, "SECRET_KEY must be at least 32 bytes"),
    ({"INGEST_KEYS": DEV_INGEST_KEY}, "INGEST_KEYS holds the development default"),
    ({"INGEST_KEYS": f"prod-key-1,{DEV_INGEST_KEY}"}, "INGEST_KEYS holds the development default"),
    ({"INGEST_TRUSTED_KEYS": DEV_INGEST_KEY}, "INGEST_TRUSTED_KEYS holds the development default"),
    ({"PUBLIC_BASE_URL": "http://127.0.0.1:5000"}, "PUBLIC_BASE_URL holds the development default"),
])
def test_production_refuses_weak_settings(servers, monkeypatch, env, message):
    with pytest.raises(ConfigError, match=message):
        _production(servers, monkeypatch, **env)


@pytest.mark.parametrize("name", ["prod", "Production", "staging", ""])
def test_an_unknown_console_env_is_refused(servers, monkeypatch, name):
    monkeypatch.setenv("CONSOLE_ENV", name)
    config = base_config(servers)
    with pytest.raises(ConfigError, match="CONSOLE_ENV must be one of"):
        create_app(config)


def test_strong_production_settings_start(servers, monkeypatch):
    try:
        app = _production(servers, monkeypatch)
        assert app.config["IS_PRODUCTION"] and app.config["SESSION_COOKIE_SECURE"]
    finally:
        monkeypatch.delenv("CONSOLE_ENV")
        create_app(base_config(servers))  # Talisman is process-wide: restore the development settings


def test_security_audit_checks_each_production_setting(make_app):
    from console.blueprints.hardening import security_audit

    weak = make_app(SECRET_KEY="short", INGEST_KEYS=DEV_INGEST_KEY, INGEST_TRUSTED_KEYS="not-an-ingest-key",
                    TRACKING_TOKEN_MAX_AGE_DAYS=0)
    with weak.app_context():
        statuses = {c["id"]: c for c in security_audit.run_checks(weak)}
    assert statuses["console_env"]["status"] == "pass"
    assert statuses["production_settings"]["status"] == "warn"
    assert "SECRET_KEY must be at least 32 bytes" in statuses["production_settings"]["detail"]
    assert "INGEST_KEYS holds the development default" in statuses["production_settings"]["detail"]
    assert statuses["trusted_ingest_keys"]["status"] == "fail"
    assert statuses["tracking_token_age"]["status"] == "warn"
    strong = make_app(INGEST_TRUSTED_KEYS=INGEST_KEY)
    with strong.app_context():
        statuses = {c["id"]: c["status"] for c in security_audit.run_checks(strong)}
    assert statuses["production_settings"] == statuses["trusted_ingest_keys"] == "pass"
    assert statuses["tracking_token_age"] == "pass"


# --- 7: ingest cannot redirect a member's mail ---------------------------------------------------------------

def _identify(client, email, key=INGEST_KEY):
    return client.post(TRACK, json=ev("m1", "2026-01-05T10:00:00Z", traits={"email": email, "name": "Mia"}),
                       headers={"X-Ingest-Key": key})


def test_an_untrusted_ingest_key_sets_a_first_email_but_cannot_change_it(client):
    assert _identify(client, "mia@members.example").status_code == 202
    assert _identify(client, "attacker@evil.example").status_code == 202
    member = Member._get_collection().find_one({"user_id": "m1"})
    assert member["email"] == "mia@members.example" and member["name"] == "Mia"
    assert "email_history" not in member
    assert AuditLog.objects(action="member.email_changed").count() == 0


def test_a_trusted_ingest_key_changes_the_email_and_it_is_recorded(make_app):
    app = make_app(INGEST_KEYS=f"{INGEST_KEY},crm-key-0123456789abcdef", INGEST_TRUSTED_KEYS="crm-key-0123456789abcdef")
    client = app.test_client()
    assert _identify(client, "mia@members.example").status_code == 202
    assert _identify(client, "mia@new.example", key="crm-key-0123456789abcdef").status_code == 202
    member = Member._get_collection().find_one({"user_id": "m1"})
    assert member["email"] == "mia@new.example"
    assert [(h["from"], h["to"], h["source"]) for h in member["email_history"]] == [
        ("mia@members.example", "mia@new.example", "ingest")]
    entry = AuditLog.objects.get(action="member.email_changed")
    assert entry.target == "member:m1" and entry.before == {"email": "mia@members.example"}
    assert entry.after == {"email": "mia@new.example"}


# --- 8: failed authentication ----------------------------------------------------------------------------------

def _login(client, email, password="wrong-password-1", ip="10.0.0.1"):
    token = csrf_token_from(client.get("/login").data)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": ip}).status_code


def test_failed_logins_are_limited_per_account_across_ips(client, create_admin):
    admin = create_admin("admin")
    codes = [_login(client, admin.email, ip=f"10.0.0.{n}") for n in range(1, 8)]
    assert codes == [401] * 5 + [429] * 2
    assert _login(client, "someone-else@test.example.com", ip="10.0.0.9") == 401  # other accounts unaffected
    failed = AuditLog.objects(action="auth.login_failed", target=admin.email)
    assert failed.count() == 5 and {e.details["reason"] for e in failed} == {"wrong password"}
    lockouts = AuditLog.objects(action="auth.lockout")
    assert lockouts.count() == 1 and lockouts.first().target == admin.email  # logged once, not per knock
    assert lockouts.first().details["scope"] == "account"


def test_failed_logins_are_limited_per_ip_across_accounts(make_app):
    app = make_app(AUTH_IP_RATE_LIMIT="4 per minute")
    client = app.test_client()
    codes = [_login(client, f"guess{n}@test.example.com") for n in range(6)]
    assert codes == [401] * 4 + [429] * 2
    assert _login(client, "guess9@test.example.com", ip="10.9.9.9") == 401  # another client is not locked out
    assert AuditLog.objects(action="auth.lockout", target="10.0.0.1").count() == 1


def test_token_and_login_failures_share_the_ip_bucket(make_app):
    app = make_app(AUTH_IP_RATE_LIMIT="3 per minute")
    client = app.test_client()
    for n in range(3):
        assert client.post("/api/auth/token", json={"email": f"t{n}@test.example.com", "password": "x"},
                           environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 401
    assert _login(client, "t9@test.example.com") == 429


def test_wrong_ingest_keys_share_one_bucket_per_ip(make_app):
    app = make_app(INGEST_RATE_LIMIT="3 per minute")
    client = app.test_client()
    codes = [client.post(TRACK, json=ev("u1", "2026-01-05T10:00:00Z"),
                         headers={"X-Ingest-Key": f"guess-{n}"}).status_code for n in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    assert client.post(TRACK, json=ev("u1", "2026-01-05T10:00:00Z"),
                       headers={"X-Ingest-Key": INGEST_KEY}).status_code == 202  # the real key has its own


# --- 9: streamed CSV ------------------------------------------------------------------------------------------

class _Reads(monitoring.CommandListener):
    """The member reads an export makes: each aggregate and getMore with the number of documents it returned."""

    def __init__(self):
        self.batches: list[tuple[str, int]] = []

    def started(self, event):
        pass

    def succeeded(self, event):
        cursor = event.reply.get("cursor") or {}
        batch = cursor.get("firstBatch", cursor.get("nextBatch"))
        if event.command_name in {"aggregate", "getMore"} and batch is not None:
            self.batches.append((event.command_name, len(batch)))

    def failed(self, event):
        pass


def test_inactive_users_csv_streams_from_the_cursor(app, api):
    from console import db

    reads = _Reads()
    app.extensions.setdefault("command_listeners", []).append(reads)
    db.init_app(app)
    old = utcnow() - timedelta(days=40)
    Member._get_collection().insert_many([{"user_id": f"u{i:05d}", "email": f"u{i}@members.example",
                                           "name": "=HYPERLINK(1)" if i == 0 else f"Member {i}",
                                           "last_seen": old - timedelta(minutes=i), "created_at": old}
                                          for i in range(2300)])
    client = api("analyst")
    reads.batches.clear()
    response = client.get("/api/phase14/engagement/inactive-users?days=0&format=csv", buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    chunks = iter(response.response)
    first = next(chunks)
    read_before_first_bytes = sum(size for _name, size in reads.batches)
    body = first + b"".join(chunks)
    response.close()
    assert read_before_first_bytes < 2300  # the first rows went out before every member was read
    assert max(size for _name, size in reads.batches) <= 1000 and len(reads.batches) >= 3
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(rows) == 2300 and rows[0]["user_id"] == "u02299" and rows[-1]["user_id"] == "u00000"
    assert rows[-1]["name"] == "'=HYPERLINK(1)"


# --- 11: chart labels -------------------------------------------------------------------------------------------

def test_member_supplied_feature_names_reach_plotly_escaped(client, login):
    name = '<a href="https://evil.example">Re-verify</a>'
    stamp = (utcnow() - timedelta(hours=1)).isoformat()
    assert client.post(TRACK, json=ev("u1", stamp, feature=name), headers={"X-Ingest-Key": INGEST_KEY}
                       ).status_code == 202
    page = login("analyst").get("/engagement").get_data(as_text=True)
    figures = [json.loads(html.unescape(raw)) for raw in re.findall(r"data-plotly='([^']*)'", page)]
    labels = [label for figure in figures for trace in figure["data"] for label in trace.get("y", [])
              if isinstance(label, str)]
    assert "&lt;a href=&quot;https://evil.example&quot;&gt;Re-verify&lt;/a&gt;" in labels
    assert not any("<a" in label for label in labels)


# --- 12: tracking writes ---------------------------------------------------------------------------------------

def _email(created=None) -> ObjectId:
    from console.blueprints.communication.models import EmailQueue

    email_id = ObjectId.from_datetime(created) if created else ObjectId()
    EmailQueue._get_collection().insert_one({"_id": email_id, "to_email": "a@members.example", "status": "sent",
                                             "links": ["https://example.org/a"], "opens": 0, "clicks": 0})
    return email_id


def _counts(email_id):
    from console.blueprints.communication.models import EmailQueue, EmailTracking

    doc = EmailQueue._get_collection().find_one({"_id": email_id})
    return doc["opens"], doc["clicks"], EmailTracking.objects(email_id=email_id).count()


def test_repeated_tracking_hits_are_written_once(client):
    from console.blueprints.communication.tracking import make_token

    email_id = _email()
    opened, clicked = make_token("open", email_id), make_token("click", email_id, 0)
    for _ in range(5):
        assert client.get(f"/t/o/{opened}").status_code == 200
        response = client.get(f"/t/c/{clicked}")
        assert response.status_code == 302 and response.headers["Location"] == "https://example.org/a"
    assert _counts(email_id) == (1, 1, 2)


def test_tracking_hits_are_rate_limited_per_ip(make_app):
    from console.blueprints.communication.tracking import make_token

    app = make_app(TRACKING_RATE_LIMIT="3 per minute", TRACKING_DEDUP_SECONDS=0)
    client = app.test_client()
    email_id = _email()
    with app.app_context():
        token = make_token("open", email_id)
    assert [client.get(f"/t/o/{token}").status_code for _ in range(6)] == [200] * 6  # the pixel is still served
    assert _counts(email_id)[0] == 3


def test_tracking_links_expire(client, app):
    from console.blueprints.communication.tracking import make_token

    old = _email(utcnow() - timedelta(days=181))
    assert client.get(f"/t/o/{make_token('open', old)}").status_code == 404
    assert client.get(f"/t/c/{make_token('click', old, 0)}").status_code == 404
    assert _counts(old) == (0, 0, 0)
    assert client.get(f"/u/{make_token('unsubscribe', old)}").status_code == 200  # unsubscribing always works
    recent = _email(utcnow() - timedelta(days=179))
    assert client.get(f"/t/o/{make_token('open', recent)}").status_code == 200


# --- 13: the suite's own targets ----------------------------------------------------------------------------------

def test_the_suite_ignores_the_consoles_real_servers():
    environ = {"MONGODB_URI": "mongodb://db.example/console", "REDIS_URL": "redis://cache.example/0"}
    assert named_test_servers(environ) == (None, None)  # it starts its own servers
    named = {**environ, "TEST_MONGODB_URI": "mongodb://127.0.0.1:27018/console_test",
             "TEST_REDIS_URL": "redis://127.0.0.1:6380/3"}
    assert named_test_servers(named) == ("mongodb://127.0.0.1:27018/console_test", "redis://127.0.0.1:6380/3")


@pytest.mark.parametrize("environ", [
    {"MONGODB_URI": "mongodb://db.example/console_test", "TEST_MONGODB_URI": "mongodb://db.example/console_test"},
    {"TEST_MONGODB_URI": "mongodb://db.example/console"},
    {"REDIS_URL": "redis://cache.example/0", "TEST_REDIS_URL": "redis://cache.example/0"},
])
def test_the_suite_refuses_test_targets_that_are_real_data(environ):
    with pytest.raises(UnsafeTestTarget):
        named_test_servers(environ)


def test_the_running_suite_uses_servers_it_started(servers):
    if not os.environ.get("TEST_MONGODB_URI"):
        assert "mongodb" in servers.handles and servers.mongo_uri.startswith("mongodb://127.0.0.1:")
    if not os.environ.get("TEST_REDIS_URL"):
        assert "redis" in servers.handles


# --- 14: no server banner -----------------------------------------------------------------------------------------

def _serve(command: list[str], servers, port: int) -> dict:
    env = {**os.environ, "MONGODB_URI": servers.mongo_uri, "REDIS_URL": servers.redis_url, "SEED_DEMO": "0",
           "CONSOLE_ENV": "development", "SECRET_KEY": "banner-test-secret-key-0123456789abcdef",
           "TELEMETRY_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    return {"healthz": dict(response.headers)}
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.3)
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.parametrize("server", ["make run (werkzeug)", "gunicorn"])
def test_no_version_banner_from_the_real_server(servers, server):
    from devtools import services

    port = services.free_port()
    command = ([sys.executable, "-m", "devtools.serve", "--port", str(port)] if server.startswith("make")
               else [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "wsgi:app"])
    headers = _serve(command, servers, port)["healthz"]
    banner = headers.get("Server", "")
    assert not re.search(r"\d|werkzeug|python", banner, re.IGNORECASE), banner
    assert "X-Powered-By" not in headers


def test_make_run_uses_the_quiet_server():
    assert '"devtools.serve"' in (ROOT / "devtools" / "stack.py").read_text()
