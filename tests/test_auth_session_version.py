"""Issue 15, item 5: logout, password change, deactivation and role removal end every session and token."""

from __future__ import annotations

from tests.conftest import TEST_PASSWORD, csrf_token_from


def _copy_cookies(app, browser):
    """A second client holding the same session cookie, as if someone copied it."""
    thief = app.test_client()
    cookie = browser.get_cookie("session")
    thief.set_cookie("session", cookie.value)
    return thief


def _token(client, email):
    response = client.post("/api/auth/token", json={"email": email, "password": TEST_PASSWORD})
    assert response.status_code == 200, response.data
    return {"Authorization": f"Bearer {response.get_json()['token']}"}


def test_a_copied_cookie_stops_working_after_logout(app, login):
    browser = login("admin")
    thief = _copy_cookies(app, browser)
    assert thief.get("/").status_code == 200
    bearer = _token(app.test_client(), browser.admin.email)
    assert app.test_client().get("/api/auth/me", headers=bearer).status_code == 200

    token = csrf_token_from(browser.get("/").data)
    assert browser.post("/logout", data={"csrf_token": token}).status_code == 302

    response = thief.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert thief.get("/api/auth/me").status_code == 401
    assert app.test_client().get("/api/auth/me", headers=bearer).status_code == 401


def test_a_password_change_ends_sessions_and_tokens(app, login):
    from console.blueprints.roles.admins import upsert_admin

    browser = login("analyst")
    bearer = _token(app.test_client(), browser.admin.email)
    upsert_admin(browser.admin.email, ["analyst"], "a-new-long-passphrase-42")
    assert browser.get("/api/auth/me").status_code == 401
    assert app.test_client().get("/api/auth/me", headers=bearer).status_code == 401
    fresh = app.test_client()
    assert fresh.post("/api/auth/token", json={"email": browser.admin.email,
                                               "password": "a-new-long-passphrase-42"}).status_code == 200


def test_removing_a_role_ends_sessions_but_adding_one_does_not(app, login, api):
    browser = login("analyst", email="worker@test.example.com")
    boss = api("super_admin")
    added = boss.post(f"/api/phase14/admin/{browser.admin.id}/assign-role", json={"role": "moderator"})
    assert added.status_code == 200
    assert browser.get("/api/auth/me").status_code == 200
    removed = boss.post(f"/api/phase14/admin/{browser.admin.id}/assign-role", json={"roles": ["moderator"]})
    assert removed.status_code == 200
    assert browser.get("/api/auth/me").status_code == 401


def test_signing_in_again_after_logout_works(app, login):
    browser = login("admin")
    token = csrf_token_from(browser.get("/").data)
    browser.post("/logout", data={"csrf_token": token})
    again = csrf_token_from(browser.get("/login").data)
    response = browser.post("/login", data={"email": browser.admin.email, "password": TEST_PASSWORD,
                                            "csrf_token": again})
    assert response.status_code == 302
    assert browser.get("/api/auth/me").get_json()["email"] == browser.admin.email
