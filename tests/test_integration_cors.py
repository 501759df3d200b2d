"""CORS for the platform's frontend, the beacon path of track-activity, and the audit of the CORS settings."""

from __future__ import annotations

import json
import secrets

import pytest

from console.blueprints.engagement.models import UserActivity
from console.blueprints.hardening import security_audit
from console.cors import parse_origins
from tests.conftest import INGEST_KEY, clean_state, csrf_token_from

FRONTEND = "https://app.example.org"
SITE = "https://www.example.org"
EVIL = "https://evil.example.net"
TRACK = "/api/phase14/engagement/track-activity"
METRICS = "/api/phase14/engagement/metrics"
ROLES = "/api/phase14/roles"
CORS_HEADERS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
                "Access-Control-Max-Age", "Access-Control-Allow-Credentials")


@pytest.fixture
def cors_app(make_app, servers):
    from console.cli import prepare_database

    clean_state(servers)
    application = make_app(CORS_ORIGINS=f"{FRONTEND}, https://admin.example.org/", INGEST_CORS_ORIGINS=SITE,
                           CORS_MAX_AGE=900)
    with application.app_context():
        prepare_database()
        yield application


@pytest.fixture
def bearer(cors_app, create_admin):
    from console.security import issue_token

    token, _ = issue_token(create_admin("admin"))
    return {"Authorization": f"Bearer {token}"}


def preflight(client, path, origin, method="GET", headers="authorization"):
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": headers})


def cors_headers(response) -> dict:
    return {name: response.headers[name] for name in CORS_HEADERS if name in response.headers}


def test_listed_origin_gets_preflight_and_response_headers_unlisted_gets_none(cors_app, bearer):
    client = cors_app.test_client()
    allowed = preflight(client, ROLES, FRONTEND, "POST", "authorization, content-type")
    assert allowed.status_code == 204
    assert cors_headers(allowed) == {
        "Access-Control-Allow-Origin": FRONTEND, "Access-Control-Allow-Methods": "GET, POST",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Ingest-Key", "Access-Control-Max-Age": "900"}
    assert "Origin" in allowed.headers["Vary"]

    denied = preflight(client, ROLES, EVIL, "POST", "authorization, content-type")
    assert denied.status_code == 204 and cors_headers(denied) == {}

    answer = client.get(ROLES, headers={"Origin": FRONTEND, **bearer})
    assert answer.status_code == 200 and answer.json["items"]
    assert cors_headers(answer) == {"Access-Control-Allow-Origin": FRONTEND}
    assert "Retry-After" in answer.headers["Access-Control-Expose-Headers"]
    assert "Origin" in answer.headers["Vary"]
    other = client.get(ROLES, headers={"Origin": EVIL, **bearer})
    assert other.status_code == 200 and cors_headers(other) == {}
    # the trailing slash in the setting is normalised away; the origin still has to match exactly
    assert client.get(ROLES, headers={"Origin": "https://admin.example.org", **bearer}).headers[
        "Access-Control-Allow-Origin"] == "https://admin.example.org"
    assert cors_headers(client.get(ROLES, headers={"Origin": "https://app.example.org.evil.net", **bearer})) == {}
    assert cors_headers(client.get(ROLES, headers={"Origin": "http://app.example.org", **bearer})) == {}


def test_errors_carry_the_headers_so_the_frontend_can_read_the_problem(cors_app):
    response = cors_app.test_client().get(ROLES, headers={"Origin": FRONTEND})
    assert response.status_code == 401 and response.mimetype == "application/problem+json"
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND


def test_only_the_routes_methods_and_the_apis_headers_are_allowed(cors_app):
    client = cors_app.test_client()
    assert cors_headers(preflight(client, ROLES, FRONTEND, "DELETE")) == {}  # /roles has no DELETE
    assert cors_headers(preflight(client, ROLES, FRONTEND, "GET", "authorization, x-custom")) == {}
    assert preflight(client, "/api/phase14/roles/admin", FRONTEND, "DELETE").headers[
        "Access-Control-Allow-Methods"] == "DELETE"
    assert preflight(client, "/api/phase14/no-such-thing", FRONTEND).status_code == 404


def test_nothing_outside_the_api_is_opened(cors_app):
    client = cors_app.test_client()
    for path in ("/login", "/static/track.js", "/healthz"):
        response = client.get(path, headers={"Origin": FRONTEND})
        assert cors_headers(response) == {}, path
        assert cors_headers(preflight(client, path, FRONTEND)) == {}, path


def test_credentials_are_never_allowed_cross_origin(cors_app, bearer):
    client = cors_app.test_client()
    for response in (preflight(client, ROLES, FRONTEND), client.get(ROLES, headers={"Origin": FRONTEND, **bearer}),
                     preflight(client, TRACK, SITE, "POST", "content-type, x-ingest-key")):
        assert "Access-Control-Allow-Credentials" not in response.headers


def test_ingest_origins_may_only_send_activity(cors_app):
    client = cors_app.test_client()
    track = preflight(client, TRACK, SITE, "POST", "content-type, x-ingest-key")
    assert track.headers["Access-Control-Allow-Origin"] == SITE
    assert track.headers["Access-Control-Allow-Methods"] == "POST"
    assert cors_headers(preflight(client, METRICS, SITE)) == {}
    assert cors_headers(preflight(client, ROLES, SITE)) == {}
    sent = client.post(TRACK, json={"user_id": "m1", "event": "page_view", "event_id": "x1"},
                       headers={"Origin": SITE, "X-Ingest-Key": INGEST_KEY})
    assert sent.status_code == 202 and sent.headers["Access-Control-Allow-Origin"] == SITE
    # the full API origins may send activity too
    assert preflight(client, TRACK, FRONTEND, "POST", "content-type, x-ingest-key").headers[
        "Access-Control-Allow-Origin"] == FRONTEND


def test_by_default_no_origin_is_allowed(app, client):
    for origin in (FRONTEND, "http://localhost", "null"):
        assert cors_headers(preflight(client, TRACK, origin, "POST", "content-type, x-ingest-key")) == {}
        assert cors_headers(client.get(ROLES, headers={"Origin": origin})) == {}


def test_a_wildcard_is_refused_not_widened(make_app, servers):
    clean_state(servers)
    wild = make_app(CORS_ORIGINS="*, https://*.example.org", INGEST_CORS_ORIGINS="*")
    client = wild.test_client()
    for origin in (FRONTEND, "https://x.example.org", "*"):
        assert cors_headers(preflight(client, ROLES, origin)) == {}
        assert cors_headers(preflight(client, TRACK, origin, "POST", "content-type")) == {}


def test_parse_origins_keeps_exact_origins_only():
    origins, refused = parse_origins(" https://A.example.org/ ,http://127.0.0.1:8080,*,ftp://x.org,"
                                     "https://x.org/path,https://u@x.org,,")
    assert origins == {"https://a.example.org", "http://127.0.0.1:8080"}
    assert len(refused) == 4 and "wildcard" in refused[0]


# --- the beacon path: key in the query, text/plain body ------------------------------------------------------

def beacon(client, body, origin=SITE, key=INGEST_KEY, path=TRACK):
    headers = {"Origin": origin} if origin else {}
    return client.post(f"{path}?ingest_key={key}", data=json.dumps(body), content_type="text/plain;charset=UTF-8",
                       headers=headers)


def test_beacon_from_an_allowed_origin_is_stored(cors_app):
    client = cors_app.test_client()
    response = beacon(client, {"events": [{"user_id": "m1", "event": "page_view", "event_id": "b1"},
                                          {"user_id": "m1", "event": "click", "event_id": "b2"}]})
    assert response.status_code == 202 and response.json["accepted"] == 2
    assert beacon(client, {"events": [{"user_id": "m1", "event": "click", "event_id": "b2"}]}).json[
        "duplicates"] == 1
    assert sorted(UserActivity.objects.distinct("event_id")) == ["b1", "b2"]
    # a server (no Origin header) may use the query key too
    assert beacon(client, {"user_id": "m2", "event": "x", "event_id": "b3"}, origin=None).status_code == 202


def test_beacon_refusals_change_nothing(cors_app, login):
    client = cors_app.test_client()
    event = {"user_id": "m1", "event": "page_view", "event_id": "r1"}
    refused = beacon(client, event, origin=EVIL)
    assert refused.status_code == 403 and "INGEST_CORS_ORIGINS" in refused.json["detail"]
    assert beacon(client, event, key="wrong-key").status_code == 401
    # the query key opens nothing but ingestion: elsewhere it is ignored
    assert client.get(f"{METRICS}?ingest_key={INGEST_KEY}").status_code == 401
    # a text/plain body still needs the beacon path
    plain = client.post(TRACK, data=json.dumps(event), content_type="text/plain",
                        headers={"X-Ingest-Key": INGEST_KEY})
    assert plain.status_code == 415
    assert UserActivity.objects.count() == 0

    # a signed-in admin's cookie cannot be ridden by adding ?ingest_key= to another endpoint (CSRF still applies)
    browser = login("super_admin")
    browser.environ_base.pop("HTTP_X_CSRFTOKEN")
    forged = browser.post(f"{ROLES}?ingest_key={INGEST_KEY}", json={"name": "forged", "description": "",
                                                                     "permissions": []})
    assert forged.status_code == 400
    assert browser.get("/api/phase14/roles/forged/permissions").status_code == 404
    # the same admin with the CSRF token is allowed: the 400 above was the CSRF check
    allowed = browser.post(ROLES, json={"name": "forged", "description": "", "permissions": []},
                           headers={"X-CSRFToken": csrf_token_from(browser.get("/").data)})
    assert allowed.status_code == 201


# --- the security audit ------------------------------------------------------------------------------------

def _cors_check(make_app, **config) -> dict:
    application = make_app(**config)
    with application.app_context():
        return next(c for c in security_audit.run_checks(application) if c["id"] == "cors_origins")


def test_audit_passes_exact_https_origins_and_none(make_app, app):
    assert _cors_check(make_app)["status"] == "pass"
    good = _cors_check(make_app, CORS_ORIGINS=FRONTEND, INGEST_CORS_ORIGINS=SITE)
    assert good["status"] == "pass" and FRONTEND in good["detail"] and SITE in good["detail"]


def test_audit_warns_in_development_about_a_wildcard(make_app, app):
    check = _cors_check(make_app, CORS_ORIGINS="*")
    assert check["status"] == "warn" and "*" in check["detail"] and check["remediation"]
    assert _cors_check(make_app, INGEST_CORS_ORIGINS="http://localhost:3000")["status"] == "pass"


def test_audit_fails_a_wildcard_or_plain_http_origin_in_production(make_app, app, monkeypatch):
    monkeypatch.setenv("CONSOLE_ENV", "production")
    prod = {"SECRET_KEY": secrets.token_urlsafe(48), "INGEST_KEYS": secrets.token_urlsafe(32), "TESTING": False,
            "CONSOLE_ENV": "production"}
    try:
        plain = _cors_check(make_app, CORS_ORIGINS=f"{FRONTEND},http://app.example.org", **prod)
        wild = _cors_check(make_app, INGEST_CORS_ORIGINS="*", **prod)
        fine = _cors_check(make_app, CORS_ORIGINS=FRONTEND, INGEST_CORS_ORIGINS=SITE, **prod)
    finally:
        make_app()  # Talisman is process-wide: restore the development settings for later tests
    assert plain["status"] == "fail" and "http://app.example.org" in plain["detail"]
    assert wild["status"] == "fail" and "INGEST_CORS_ORIGINS" in wild["detail"]
    assert fine["status"] == "pass"


def test_openapi_document_validates_and_documents_the_beacon_key(cors_app):
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    spec = cors_app.test_client().get("/api/openapi.json", headers={"Origin": FRONTEND}).json
    assert [error.message for error in OPENAPI_31_VALIDATOR.iter_errors(spec)] == []
    assert spec["components"]["securitySchemes"]["ingestKeyQuery"] == {
        "type": "apiKey", "in": "query", "name": "ingest_key", "description": spec["components"]["securitySchemes"][
            "ingestKeyQuery"]["description"]}
    track = spec["paths"][TRACK]["post"]
    assert {"ingestKeyQuery": []} in track["security"] and {"ingestKey": []} in track["security"]
    assert all({"ingestKeyQuery": []} not in op.get("security", []) for path, ops in spec["paths"].items()
               for op in ops.values() if path != TRACK)
