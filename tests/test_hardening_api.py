"""Hardening endpoints: permissions, shapes, validation and the security audit."""

import secrets

import pytest

from console.blueprints.hardening import security_audit
from console.config import DEV_INGEST_KEY
from tests.hardening_helpers import API

VIEW_ENDPOINTS = ["security-audit", "error-analysis", "performance-review", "slow-queries",
                  "health-comprehensive", "production-checklist"]


@pytest.mark.parametrize("path", VIEW_ENDPOINTS)
def test_view_endpoints_need_hardening_view(app, api, path):
    assert app.test_client().get(f"{API}/{path}").status_code == 401
    assert api("analyst").get(f"{API}/{path}").status_code == 403
    response = api("admin").get(f"{API}/{path}")
    assert response.status_code in (200, 503)
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("path", "query"), [
    ("error-analysis", "hours=0"), ("performance-review", "hours=abc"), ("performance-review", "hours=100000"),
    ("slow-queries", "threshold_ms=-1"),
])
def test_bad_query_is_422(api, path, query):
    response = api("admin").get(f"{API}/{path}?{query}")
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"


def test_security_audit_shape_and_no_secrets(app, api):
    response = api("admin").get(f"{API}/security-audit")
    assert response.status_code == 200
    body = response.json
    assert 0 <= body["score"] <= 100
    ids = {c["id"] for c in body["checks"]}
    assert {"secret_key", "debug", "session_cookie_secure", "session_cookie_httponly", "csrf", "hsts",
            "https_redirect", "frame_options", "content_type_nosniff", "referrer_policy", "csp", "proxy_fix",
            "trusted_hosts", "mongodb_auth", "mongodb_tls", "redis_password", "dev_ingest_key", "admin_passwords",
            "route_permissions", "rate_limits", "request_size", "server_header"} <= ids
    for c in body["checks"]:
        assert set(c) == {"id", "title", "status", "severity", "detail", "remediation"}
        assert c["status"] in {"pass", "warn", "fail"}
        assert c["severity"] in {"critical", "high", "medium", "low"}
        assert c["remediation"] or c["status"] == "pass"
    by_id = {c["id"]: c for c in body["checks"]}
    assert by_id["route_permissions"]["status"] == "pass"
    assert by_id["csp"]["status"] == "pass" and by_id["frame_options"]["status"] == "pass"
    assert by_id["rate_limits"]["status"] == "pass"
    assert by_id["hsts"]["status"] == "warn"  # development: HSTS is sent only in production
    text = response.get_data(as_text=True)
    assert app.config["SECRET_KEY"] not in text
    assert app.config["MONGODB_URI"] not in text and app.config["REDIS_URL"] not in text


def _statuses(app) -> dict:
    with app.app_context():
        return {c["id"]: c["status"] for c in security_audit.run_checks(app)}


def test_audit_checks_flip_from_fail_to_pass_when_config_is_fixed(app, make_app):
    weak = make_app(SECRET_KEY="changeme", INGEST_KEYS=f"{DEV_INGEST_KEY},other", DEBUG=True,
                    MAX_CONTENT_LENGTH=None)
    before = _statuses(weak)
    assert before["secret_key"] == "fail"
    assert before["dev_ingest_key"] == "fail"
    assert before["debug"] == "fail"
    assert before["request_size"] == "fail"
    strong = make_app(SECRET_KEY=secrets.token_urlsafe(48), INGEST_KEYS=secrets.token_urlsafe(32), TESTING=False,
                      TRUSTED_HOSTS=["console.example.com"], PUBLIC_BASE_URL="https://console.example.com")
    after = _statuses(strong)
    assert after["secret_key"] == "pass"
    assert after["dev_ingest_key"] == "pass"
    assert after["debug"] == "pass"
    assert after["request_size"] == "pass"
    assert after["trusted_hosts"] == "pass"
    with weak.app_context():
        weak_score = security_audit.score(security_audit.run_checks(weak))
    with strong.app_context():
        strong_score = security_audit.score(security_audit.run_checks(strong))
    assert strong_score > weak_score


def test_production_settings_pass_transport_checks(make_app, servers, monkeypatch):
    monkeypatch.setenv("CONSOLE_ENV", "production")
    prod = make_app(SECRET_KEY=secrets.token_urlsafe(48), INGEST_KEYS=secrets.token_urlsafe(32), TESTING=False,
                    CONSOLE_ENV="production")
    try:
        statuses = _statuses(prod)
    finally:
        make_app()  # Talisman is process-wide: restore the development settings for later tests
    assert statuses["hsts"] == "pass"
    assert statuses["https_redirect"] == "pass"
    assert statuses["session_cookie_secure"] == "pass"
    assert statuses["mongodb_auth"] == "warn"  # the local test server has no credentials


def test_proxy_fix_follows_trust_proxy(make_app, app):
    behind_proxy = make_app(TRUST_PROXY=1)
    with behind_proxy.app_context():
        check = next(c for c in security_audit.run_checks(behind_proxy) if c["id"] == "proxy_fix")
    assert check["status"] == "pass" and "ProxyFix is installed" in check["detail"]


def test_admins_without_recent_password_change_are_flagged(app, create_admin):
    from datetime import timedelta

    from console.timeutil import utcnow

    admin = create_admin("admin", email="stale@example.com")
    admin.update(set__password_changed_at=utcnow() - timedelta(days=200))
    check = next(c for c in security_audit.run_checks(app) if c["id"] == "admin_passwords")
    assert check["status"] == "warn" and "stale@example.com" in check["detail"]
    admin.update(set__password_changed_at=utcnow())
    check = next(c for c in security_audit.run_checks(app) if c["id"] == "admin_passwords")
    assert check["status"] == "pass"


def test_route_without_permission_fails_the_audit(make_app, app):
    exposed = make_app()
    exposed.add_url_rule("/leaky", "leaky", lambda: "secret")
    with exposed.app_context():
        check = next(c for c in security_audit.run_checks(exposed) if c["id"] == "route_permissions")
    assert check["status"] == "fail" and "/leaky" in check["detail"]


def test_checklist_items_are_verified_live(app, api):
    from console.telemetry.models import RequestMetric

    response = api("admin").get(f"{API}/production-checklist")
    assert response.status_code == 200
    body = response.json
    items = {i["id"]: i for i in body["items"]}
    for entry in body["items"]:
        assert set(entry) == {"id", "title", "status", "detail"} and entry["status"] in {"pass", "warn", "fail"}
    assert items["mongodb.indexes"]["status"] == "pass"
    assert items["mongodb.ttl"]["status"] == "pass"
    assert items["authz.routes"]["status"] == "pass"
    assert items["observability"]["status"] == "pass"
    assert items["backups.recent"]["status"] == "warn"  # none recorded (development)
    assert items["redis.workers"]["status"] == "fail"  # no worker runs during tests
    assert items["dependencies.vulnerabilities"]["detail"].startswith(("Not checked", "pip-audit"))
    assert body["ready"] is False
    # a dropped index is noticed on the next call
    RequestMetric._get_collection().drop_index("at_1")
    items = {i["id"]: i for i in api("admin").get(f"{API}/production-checklist").json["items"]}
    assert items["mongodb.indexes"]["status"] == "fail" and "request_metrics" in items["mongodb.indexes"]["detail"]


@pytest.mark.parametrize("path", ["/system", f"{API}/security-audit"])
def test_security_headers_on_hardening_page_and_api(login, path):
    response = login("admin").get(path)
    assert response.status_code == 200
    headers = response.headers
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Powered-By" not in headers and "Werkzeug" not in headers.get("Server", "")
