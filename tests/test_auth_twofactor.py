"""Two-factor sign-in against the real app and servers: enrolment, the code step, bearer tokens, recovery codes,
replay, throttling, auditing, REQUIRE_2FA_ROLES and a reset by a super admin."""

from __future__ import annotations

import re
import time

import pyotp
import pytest

from tests.conftest import TEST_PASSWORD, clean_state, csrf_token_from


def _admin(email):
    from console.accounts import Admin

    return Admin.objects(email=email).first()


def code_after_last(email: str) -> str:
    """A valid code for a step not used yet (each step's code works once)."""
    admin = _admin(email)
    now = int(time.time()) // 30
    step = max(now, (admin.totp_last_step or 0) + 1)
    while step > int(time.time()) // 30 + 1:
        time.sleep(1)
    return pyotp.TOTP(admin.totp_secret).generate_otp(step)


def enrol(browser, email: str) -> list[str]:
    """Enrol through the account page as a person would; answers the recovery codes the page shows once."""
    page = browser.get("/account/2fa")
    assert page.status_code == 200
    assert browser.post("/account/2fa/enrol").status_code == 302
    page = browser.get("/account/2fa").get_data(as_text=True)
    assert 'src="data:image/svg+xml' in page  # the QR code, inline
    secret = _admin(email).totp_secret
    assert " ".join(secret[i:i + 4] for i in range(0, len(secret), 4)) in page
    response = browser.post("/account/2fa/confirm", data={"code": code_after_last(email)})
    assert response.status_code == 200
    codes = re.findall(r"<code>([a-z2-9]{5}-[a-z2-9]{5})</code>", response.get_data(as_text=True))
    assert len(codes) == 10 and len(set(codes)) == 10
    return codes


def token(client, email, **extra):
    return client.post("/api/auth/token", json={"email": email, "password": TEST_PASSWORD, **extra})


def password_step(browser, email):
    form = csrf_token_from(browser.get("/login").data)
    return browser.post("/login", data={"email": email, "password": TEST_PASSWORD, "csrf_token": form})


def audit_actions(email):
    from console.audit import AuditLog

    return [entry.action for entry in AuditLog.objects(target=email).order_by("at")]


def test_enrolment_stores_hashes_and_token_needs_the_second_factor(login, client):
    browser = login("admin", email="ada@test.example.com")
    codes = enrol(browser, "ada@test.example.com")
    stored = _admin("ada@test.example.com")
    assert stored.totp_enabled_at is not None and len(stored.recovery_codes) == 10
    assert all(h.startswith("$argon2") for h in stored.recovery_codes)
    assert not any(code.replace("-", "") in h for code in codes for h in stored.recovery_codes)
    assert "auth.2fa_enrolled" in audit_actions("ada@test.example.com")

    refused = token(client, "ada@test.example.com")
    assert refused.status_code == 401 and refused.mimetype == "application/problem+json"
    assert "second factor" in refused.json["detail"] and refused.json["errors"][0]["field"] == "otp"

    code = code_after_last("ada@test.example.com")
    issued = token(client, "ada@test.example.com", otp=code)
    assert issued.status_code == 200, issued.json
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {issued.json['token']}"})
    assert me.status_code == 200 and me.json["email"] == "ada@test.example.com"

    replayed = token(client, "ada@test.example.com", otp=code)
    assert replayed.status_code == 401 and "already used" in replayed.json["detail"]

    first = token(client, "ada@test.example.com", otp=codes[3].upper())  # case and hyphen do not matter
    assert first.status_code == 200
    again = token(client, "ada@test.example.com", otp=codes[3])
    assert again.status_code == 401
    assert len(_admin("ada@test.example.com").recovery_codes) == 9
    actions = audit_actions("ada@test.example.com")
    assert actions.count("auth.2fa_recovery_used") == 1 and actions.count("auth.2fa_failed") == 2


def test_admin_without_2fa_gets_a_token_as_before(create_admin, client):
    create_admin("admin", email="plain@test.example.com")
    assert token(client, "plain@test.example.com").status_code == 200


def test_sign_in_takes_two_steps_and_recovery_code_works_once(login, app):
    browser = login("analyst", email="two@test.example.com")
    codes = enrol(browser, "two@test.example.com")
    browser.post("/logout")

    fresh = app.test_client()
    step_one = password_step(fresh, "two@test.example.com")
    assert step_one.status_code == 302 and step_one.headers["Location"].endswith("/login/2fa")
    assert fresh.get("/").status_code == 302  # not signed in after the password alone
    assert fresh.get("/api/auth/me").status_code == 401
    page = fresh.get("/login/2fa")
    assert page.status_code == 200 and b"authenticator app" in page.data
    wrong = fresh.post("/login/2fa", data={"code": "000000", "csrf_token": csrf_token_from(page.data)})
    assert wrong.status_code == 401 and fresh.get("/").status_code == 302
    right = fresh.post("/login/2fa", data={"code": codes[0], "csrf_token": csrf_token_from(page.data)})
    assert right.status_code == 302
    assert fresh.get("/api/auth/me").json["email"] == "two@test.example.com"

    other = app.test_client()
    password_step(other, "two@test.example.com")
    form = csrf_token_from(other.get("/login/2fa").data)
    assert other.post("/login/2fa", data={"code": codes[0], "csrf_token": form}).status_code == 401
    actions = audit_actions("two@test.example.com")
    assert "auth.2fa_recovery_used" in actions and actions.count("auth.2fa_failed") == 2


def test_code_step_without_a_password_step_goes_back_to_login(client):
    response = client.get("/login/2fa")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert client.get("/login/2fa/enrol").status_code == 302


def test_failed_codes_are_throttled_per_account_and_audited(login, client):
    browser = login("admin", email="slow@test.example.com")
    enrol(browser, "slow@test.example.com")
    for _ in range(5):  # TWOFA_RATE_LIMIT: 5 per 5 minutes
        assert token(client, "slow@test.example.com", otp="123456").status_code == 401
    throttled = token(client, "slow@test.example.com", otp=code_after_last("slow@test.example.com"))
    assert throttled.status_code == 429 and throttled.mimetype == "application/problem+json"
    assert int(throttled.headers["Retry-After"]) > 0
    assert audit_actions("slow@test.example.com").count("auth.2fa_failed") == 5
    # the page step is throttled the same way for this account
    fresh = client.application.test_client()
    password_step(fresh, "slow@test.example.com")
    form = csrf_token_from(fresh.get("/login/2fa").data)
    assert fresh.post("/login/2fa", data={"code": "123456", "csrf_token": form}).status_code == 429


@pytest.fixture
def tight_ip_app(make_app, servers):
    from console.cli import prepare_database

    clean_state(servers)
    application = make_app(TWOFA_RATE_LIMIT="100 per minute", TWOFA_IP_RATE_LIMIT="3 per minute")
    with application.app_context():
        prepare_database()
        yield application


def test_failed_codes_are_throttled_per_ip_across_accounts(tight_ip_app):
    from console.accounts import Admin
    from console.security import hash_password

    for email in ("one@test.example.com", "two@test.example.com"):
        Admin(email=email, roles=["analyst"], password_hash=hash_password(TEST_PASSWORD),
              totp_secret=pyotp.random_base32(), totp_enabled_at=__import__("datetime").datetime.now()).save()
    client = tight_ip_app.test_client()
    assert token(client, "one@test.example.com", otp="111111").status_code == 401
    assert token(client, "two@test.example.com", otp="111111").status_code == 401
    assert token(client, "one@test.example.com", otp="111111").status_code == 401
    assert token(client, "two@test.example.com", otp=code_after_last("two@test.example.com")).status_code == 429


@pytest.fixture
def required_app(make_app, servers):
    from console.cli import prepare_database

    clean_state(servers)
    application = make_app(REQUIRE_2FA_ROLES="admin")
    with application.app_context():
        prepare_database()
        yield application


def test_require_2fa_roles_forces_enrolment_before_the_console(required_app):
    from console.accounts import Admin
    from console.security import hash_password

    Admin(email="must@test.example.com", roles=["admin"], password_hash=hash_password(TEST_PASSWORD)).save()
    Admin(email="free@test.example.com", roles=["analyst"], password_hash=hash_password(TEST_PASSWORD)).save()
    client = required_app.test_client()
    assert token(client, "free@test.example.com").status_code == 200
    refused = token(client, "must@test.example.com")
    assert refused.status_code == 401 and "set up two-factor" in refused.json["detail"]

    browser = required_app.test_client()
    step = password_step(browser, "must@test.example.com")
    assert step.headers["Location"].endswith("/login/2fa/enrol")
    assert browser.get("/").status_code == 302 and browser.get("/api/auth/me").status_code == 401
    page = browser.get("/login/2fa/enrol")
    assert page.status_code == 200 and b"data:image/svg+xml" in page.data
    secret = _admin("must@test.example.com").totp_secret
    assert browser.get("/login/2fa/enrol").data.count(secret[:4].encode()) >= 1  # same secret on reload
    assert _admin("must@test.example.com").totp_secret == secret
    done = browser.post("/login/2fa/enrol", data={"code": code_after_last("must@test.example.com"),
                                                  "csrf_token": csrf_token_from(page.data)})
    assert done.status_code == 200 and done.data.count(b"<li><code>") == 10
    assert browser.get("/").status_code == 200
    assert token(client, "must@test.example.com", otp=code_after_last("must@test.example.com")).status_code == 200


def test_a_session_that_becomes_required_is_held_on_the_enrolment_page(login, app):
    browser = login("admin", email="late@test.example.com")
    app.config["REQUIRE_2FA_ROLES"] = "admin"
    try:
        response = browser.get("/")
        assert response.status_code == 302 and response.headers["Location"].endswith("/account/2fa")
        assert browser.get("/api/auth/me").status_code == 403
        assert browser.get("/account/2fa").status_code == 200
        enrol(browser, "late@test.example.com")
        assert browser.get("/").status_code == 200
        # required: turning it off is refused; setting it up again needs a code
        browser.post("/account/2fa/disable", data={"code": "000000", "action": "disable"})
        assert _admin("late@test.example.com").totp_enabled_at is not None
    finally:
        app.config["REQUIRE_2FA_ROLES"] = None


def test_production_requires_2fa_for_admins_by_default(make_app):
    production = make_app(CONSOLE_ENV="production", INGEST_KEYS="k")
    with production.app_context():
        from console.blueprints.auth.twofactor import required_roles

        assert required_roles() == {"super_admin", "admin"}
    with make_app().app_context():
        from console.blueprints.auth.twofactor import required_roles

        assert required_roles() == set()


def test_own_disable_needs_a_current_code(login):
    browser = login("analyst", email="off@test.example.com")
    enrol(browser, "off@test.example.com")
    browser.post("/account/2fa/disable", data={"code": "000000", "action": "disable"})
    assert _admin("off@test.example.com").totp_enabled_at is not None
    browser.post("/account/2fa/disable", data={"code": code_after_last("off@test.example.com"), "action": "disable"})
    stored = _admin("off@test.example.com")
    assert stored.totp_enabled_at is None and stored.totp_secret is None and stored.recovery_codes == []
    assert "auth.2fa_disabled" in audit_actions("off@test.example.com")


def test_super_admin_resets_another_admins_2fa(login, api, client):
    target = login("content_manager", email="lost@test.example.com")
    enrol(target, "lost@test.example.com")
    target_id = str(_admin("lost@test.example.com").id)
    analyst = api("analyst")
    assert analyst.post(f"/api/phase14/admin/{target_id}/2fa/reset").status_code == 403
    boss = api("super_admin", email="boss@test.example.com")
    assert boss.post(f"/api/phase14/admin/{_admin('boss@test.example.com').id}/2fa/reset").status_code == 409
    reset = boss.post(f"/api/phase14/admin/{target_id}/2fa/reset")
    assert reset.status_code == 200 and reset.json["enrolled"] is False
    assert _admin("lost@test.example.com").totp_secret is None
    assert "auth.2fa_reset" in audit_actions("lost@test.example.com")
    assert token(client, "lost@test.example.com").status_code == 200  # no second factor any more


def test_reset_from_the_admin_page(login, create_admin):
    target = login("moderator", email="phone@test.example.com")
    enrol(target, "phone@test.example.com")
    target_id = str(_admin("phone@test.example.com").id)
    boss = login("super_admin", email="chief@test.example.com")
    page = boss.get(f"/admins/{target_id}")
    assert page.status_code == 200 and b"Reset two-factor sign-in" in page.data
    response = boss.post(f"/admins/{target_id}/2fa/reset")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/admins/{target_id}")
    assert _admin("phone@test.example.com").totp_enabled_at is None
    assert b"Reset two-factor sign-in" not in boss.get(f"/admins/{target_id}").data
    viewer = login("admin", email="viewer@test.example.com")  # holds roles.assign but not every super_admin right
    boss_id = str(_admin("chief@test.example.com").id)
    enrol(boss, "chief@test.example.com")
    viewer.post(f"/admins/{boss_id}/2fa/reset")
    assert _admin("chief@test.example.com").totp_enabled_at is not None
