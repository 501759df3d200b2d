"""Signing in (console sessions, bearer tokens, ingest keys), CSRF and rate limits."""

from datetime import timedelta

import pytest

from console.accounts import ApiToken
from console.audit import AuditLog
from console.timeutil import utcnow
from tests.conftest import TEST_PASSWORD, csrf_token_from


def test_login_page_then_dashboard(client, create_admin):
    admin = create_admin("analyst")
    token = csrf_token_from(client.get("/login").data)
    response = client.post("/login", data={"email": admin.email, "password": TEST_PASSWORD, "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/")
    assert page.status_code == 200
    assert "Dashboard" in page.get_data(as_text=True)
    admin.reload()
    assert admin.last_login_at is not None
    assert AuditLog.objects(action="auth.login", actor=admin.email).count() == 1


@pytest.mark.parametrize("email,password", [
    ("analyst@test.example.com", "wrong-password"),
    ("nobody@test.example.com", TEST_PASSWORD),
])
def test_bad_credentials_are_refused_with_a_message(client, create_admin, email, password):
    create_admin("analyst")
    token = csrf_token_from(client.get("/login").data)
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    assert response.status_code == 401
    assert "do not match" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_inactive_admin_cannot_sign_in(client, create_admin):
    admin = create_admin("admin", active=False)
    token = csrf_token_from(client.get("/login").data)
    response = client.post("/login", data={"email": admin.email, "password": TEST_PASSWORD, "csrf_token": token})
    assert response.status_code == 401


def test_login_without_csrf_token_is_refused_and_changes_nothing(client, create_admin):
    admin = create_admin("admin")
    response = client.post("/login", data={"email": admin.email, "password": TEST_PASSWORD})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_open_redirect_after_login_is_refused(client, create_admin):
    admin = create_admin("admin")
    token = csrf_token_from(client.get("/login").data)
    response = client.post("/login", data={"email": admin.email, "password": TEST_PASSWORD, "csrf_token": token,
                                           "next": "//evil.example.com/x"})
    assert response.headers["Location"] == "/"


def test_anonymous_pages_redirect_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_logout_needs_post_with_csrf(login):
    browser = login("analyst")
    assert browser.get("/logout").status_code == 405
    del browser.environ_base["HTTP_X_CSRFTOKEN"]
    assert browser.post("/logout").status_code == 400
    token = csrf_token_from(browser.get("/").data)
    assert browser.post("/logout", data={"csrf_token": token}).status_code == 302
    assert browser.get("/").status_code == 302


def test_failed_logins_are_rate_limited(client, create_admin):
    admin = create_admin("admin")
    token = csrf_token_from(client.get("/login").data)
    codes = [client.post("/login", data={"email": admin.email, "password": "nope-nope-nope",
                                         "csrf_token": token}).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]
    assert "Too many attempts" in client.post("/login", data={"email": admin.email, "password": TEST_PASSWORD,
                                                              "csrf_token": token}).get_data(as_text=True)


def test_token_issue_use_and_revoke(client, create_admin):
    admin = create_admin("analyst")
    response = client.post("/api/auth/token", json={"email": admin.email, "password": TEST_PASSWORD})
    assert response.status_code == 200
    token = response.json["token"]
    assert response.json["expires_at"].endswith("Z")
    stored = ApiToken.objects.get(admin_id=admin.id)
    assert token not in stored.token_hash  # only a hash is stored
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/widgets/members", headers=headers).status_code == 200
    me = client.get("/api/auth/me", headers=headers).json
    assert me["email"] == admin.email and me["roles"] == ["analyst"]
    assert me["permissions"] == ["analytics.view", "communication.view", "reports.view", "templates.view"]
    assert client.delete("/api/auth/token", headers=headers).status_code == 204
    after = client.get("/api/auth/token", headers=headers)
    assert after.status_code == 405
    assert client.get("/widgets/members", headers=headers).status_code == 302  # not signed in any more


def test_expired_token_is_401(client, create_admin, api):
    analyst = api("analyst")
    ApiToken.objects(admin_id=analyst.admin.id).update(set__expires_at=utcnow() - timedelta(seconds=1))
    response = analyst.get("/api/auth/me")
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("body,status", [
    ({"email": "analyst@test.example.com", "password": "wrong"}, 401),
    ({"email": "analyst@test.example.com"}, 422),
    ({"email": {"$gt": ""}, "password": "x"}, 422),
    ({"email": "a@b.c", "password": "x", "admin": True}, 422),
])
def test_token_endpoint_bad_input(client, create_admin, body, status):
    create_admin("analyst")
    response = client.post("/api/auth/token", json=body)
    assert response.status_code == status
    problem = response.json
    assert response.mimetype == "application/problem+json"
    assert set(problem) >= {"type", "title", "status", "detail", "errors"} and problem["status"] == status
    assert ApiToken.objects.count() == 0


def test_token_endpoint_rejects_non_json_and_malformed_json(client):
    assert client.post("/api/auth/token", data="email=x", content_type="application/x-www-form-urlencoded"
                       ).status_code == 415
    malformed = client.post("/api/auth/token", data="{nope", content_type="application/json")
    assert malformed.status_code == 400
    assert "not valid JSON" in malformed.json["detail"]


def test_body_over_the_limit_is_413(make_app, servers):
    app = make_app(MAX_CONTENT_LENGTH=1024)
    response = app.test_client().post("/api/auth/token", data="x" * 4096, content_type="application/json")
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"


def test_repeated_token_failures_are_429(client, create_admin):
    create_admin("analyst")
    codes = [client.post("/api/auth/token", json={"email": "analyst@test.example.com", "password": "bad"}
                         ).status_code for _ in range(11)]
    assert codes[-1] == 429 and codes[:10] == [401] * 10


def test_bearer_call_needs_no_csrf_but_cookie_call_does(login, api):
    bearer = api("admin")
    assert bearer.post("/logout").status_code in (302, 401, 403)  # not a CSRF failure
    browser = login("admin")
    del browser.environ_base["HTTP_X_CSRFTOKEN"]
    assert browser.post("/logout").status_code == 400


def test_an_invalid_bearer_header_never_falls_back_to_the_session(login):
    browser = login("admin")
    response = browser.get("/", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 302


def test_ingest_key_authorizes_nothing_but_ingestion(client):
    from tests.conftest import INGEST_KEY

    assert client.get("/widgets/members", headers={"X-Ingest-Key": INGEST_KEY}).status_code == 302
    assert client.get("/api/openapi.json", headers={"X-Ingest-Key": INGEST_KEY}).status_code == 200
