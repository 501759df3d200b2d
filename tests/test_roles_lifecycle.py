"""Admin lifecycle (issue 17, item 4): invite → set password → sign in; resend, revoke; deactivate ends a live
session; the last active super_admin stays; password reset by email link. All audited."""

from __future__ import annotations

import re

from tests.conftest import TEST_PASSWORD, csrf_token_from

BASE = "/api/phase14"
NEW_PASSWORD = "a-fresh-long-passphrase-7"


def _link(servers, to: str) -> str:
    messages = [m for m in servers.messages() if m["To"] == to]
    assert messages, f"no email to {to}"
    body = messages[-1].get_payload(decode=True).decode()
    return re.search(r"https?://\S+", body).group(0).split("localhost", 1)[1]


def _set_password(app, path: str, password: str = NEW_PASSWORD):
    browser = app.test_client()
    page = browser.get(path)
    assert page.status_code == 200, page.data[-300:]
    return browser.post(path, data={"csrf_token": csrf_token_from(page.data), "password": password,
                                    "confirm": password})


def _sign_in(app, email: str, password: str = NEW_PASSWORD):
    browser = app.test_client()
    token = csrf_token_from(browser.get("/login").data)
    return browser, browser.post("/login", data={"email": email, "password": password, "csrf_token": token})


def test_invite_set_password_and_sign_in(app, api, servers):
    admin = api("admin")
    response = admin.post(f"{BASE}/admins/invite", json={"email": "New.Person@Example.com", "role": "moderator"})
    assert response.status_code == 201, response.get_json()
    invited = response.get_json()
    assert invited["state"] == "invited" and invited["roles"] == ["moderator"] and invited["invite_expires_at"]
    _, refused = _sign_in(app, "new.person@example.com")
    assert refused.status_code == 401
    path = _link(servers, "new.person@example.com")
    assert _set_password(app, path).status_code == 302
    assert app.test_client().get(path).status_code == 404  # used once
    browser, signed_in = _sign_in(app, "new.person@example.com")
    assert signed_in.status_code == 302
    assert browser.get("/api/auth/me").get_json()["roles"] == ["moderator"]
    from console.audit import AuditLog
    assert {"admin.invited", "admin.invite_accepted"} <= set(AuditLog.objects.distinct("action"))


def test_invites_follow_the_escalation_rules_and_refuse_duplicates(api):
    admin = api("admin")
    assert admin.post(f"{BASE}/admins/invite", json={"email": "x@example.com", "role": "super_admin"}).status_code \
        == 403
    assert admin.post(f"{BASE}/admins/invite", json={"email": "x@example.com", "role": "wizard"}).status_code == 422
    assert api("analyst").post(f"{BASE}/admins/invite", json={"email": "x@example.com"}).status_code == 403
    assert admin.post(f"{BASE}/admins/invite", json={"email": admin.admin.email}).status_code == 409


def test_a_resent_invitation_replaces_the_old_link_and_a_revoked_one_is_gone(app, api, servers):
    admin = api("admin")
    invited = admin.post(f"{BASE}/admins/invite", json={"email": "late@example.com", "role": "analyst"}).get_json()
    first = _link(servers, "late@example.com")
    assert admin.post(f"{BASE}/admin/{invited['id']}/invite/resend").status_code == 200
    second = _link(servers, "late@example.com")
    assert first != second and app.test_client().get(first).status_code == 404
    assert admin.delete(f"{BASE}/admin/{invited['id']}/invite").status_code == 204
    assert app.test_client().get(second).status_code == 404


def test_deactivation_ends_a_live_session_and_reactivation_lets_them_back(app, api, login):
    boss = api("super_admin")
    browser = login("analyst", email="leaving@test.example.com")
    token = app.test_client().post("/api/auth/token", json={"email": "leaving@test.example.com",
                                                            "password": TEST_PASSWORD}).get_json()["token"]
    assert browser.get("/").status_code == 200
    out = boss.post(f"{BASE}/admin/{browser.admin.id}/deactivate")
    assert out.status_code == 200 and out.get_json()["state"] == "deactivated"
    assert browser.get("/").status_code == 302
    assert app.test_client().get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert _sign_in(app, "leaving@test.example.com", TEST_PASSWORD)[1].status_code == 401
    assert boss.post(f"{BASE}/admin/{browser.admin.id}/activate").get_json()["state"] == "active"
    assert _sign_in(app, "leaving@test.example.com", TEST_PASSWORD)[1].status_code == 302
    # the old cookie stays dead after reactivation
    assert browser.get("/").status_code == 302


def test_the_last_active_super_admin_cannot_be_deactivated(api, create_admin):
    only = create_admin("super_admin", email="only@test.example.com")
    admin = api("admin")
    assert admin.post(f"{BASE}/admin/{only.id}/deactivate").status_code == 403  # holds more than the actor
    other = api("super_admin", email="other@test.example.com")
    assert other.post(f"{BASE}/admin/{only.id}/deactivate").status_code == 200
    reply = api("super_admin", email="third@test.example.com")
    other.admin.reload()
    assert reply.post(f"{BASE}/admin/{other.admin.id}/deactivate").status_code == 200
    # now "third" is the only active super_admin; nobody else can act, and self-deactivation is refused
    assert reply.post(f"{BASE}/admin/{reply.admin.id}/deactivate").status_code == 403
    from console.accounts import Admin
    assert Admin.objects(roles="super_admin", active=True).count() == 1


def test_password_reset_by_email_link(app, login, servers):
    browser = login("moderator", email="forgetful@test.example.com")
    anonymous = app.test_client()
    page = anonymous.get("/password/forgot")
    response = anonymous.post("/password/forgot", data={"csrf_token": csrf_token_from(page.data),
                                                        "email": "forgetful@test.example.com"})
    assert response.status_code == 302
    anonymous.post("/password/forgot", data={"csrf_token": csrf_token_from(page.data), "email": "nobody@x.org"})
    path = _link(servers, "forgetful@test.example.com")
    assert len(servers.messages()) == 1
    assert _set_password(app, path).status_code == 302
    assert browser.get("/").status_code == 302  # the reset ended the old session
    assert _sign_in(app, "forgetful@test.example.com")[1].status_code == 302
    assert _sign_in(app, "forgetful@test.example.com", TEST_PASSWORD)[1].status_code == 401


def test_the_admins_page_invites_and_deactivates(app, login, servers, create_admin):
    browser = login("admin")
    page = browser.get("/admins")
    invite_form = re.search(rb'id="invite-admin".*?</section>', page.data, re.S).group(0)
    assert b'value="content_manager"' in invite_form and b'value="super_admin"' not in invite_form
    token = csrf_token_from(page.data)
    response = browser.post("/admins/invite", data={"csrf_token": token, "email": "page@example.com",
                                                    "roles": "content_manager"})
    assert response.status_code == 302 and servers.messages()
    target = create_admin("analyst", email="target@test.example.com")
    browser.post(f"/admins/{target.id}/lifecycle", data={"csrf_token": token, "action": "deactivate"})
    target.reload()
    assert target.active is False
