"""Two-factor sign-in in the browser: enrolment from the account page, then signing in with a code; and an
admin whose role requires it, held on the enrolment page right after the password."""

import time

import pyotp

from console.accounts import Admin
from console.audit import AuditLog
from console.authz import bump_authz_version
from console.security import hash_password
from tests.conftest import TEST_PASSWORD


def _fresh_code(secret: str, email: str, live) -> str:
    """The code for the first step after the one last used (a code works once)."""
    with live.app_context():
        last = Admin.objects.get(email=email).totp_last_step or 0
    step = max(int(time.time()) // 30, last + 1)
    while step > int(time.time()) // 30 + 1:
        time.sleep(1)
    return pyotp.TOTP(secret).generate_otp(step)


def _password_step(page, live, email):
    page.goto(f"{live.live_url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", TEST_PASSWORD)
    page.click("button[type=submit]")


def test_enrol_from_the_account_page_then_sign_in_with_a_code(live, page, sign_in, output_dir):
    email = "analyst@browser.example.com"
    sign_in("analyst", email=email)
    page.click(".me-name a")
    page.wait_for_url(f"{live.live_url}/account/2fa")
    page.click("text=Set up two-factor sign-in")
    qr = page.locator("img.twofa-qr")
    qr.wait_for()
    assert qr.get_attribute("src").startswith("data:image/svg+xml")
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")  # the CSP lets the inline QR render
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.screenshot(path=str(output_dir / "twofactor-enrol.png"), full_page=True)
    page.fill("input[name=code]", _fresh_code(secret, email, live))
    page.click("text=Turn on two-factor sign-in")
    page.locator("#recovery-codes").wait_for()
    codes = page.locator(".twofa-codes code").all_inner_texts()
    assert len(codes) == 10
    page.click("text=I saved them")
    page.wait_for_url(f"{live.live_url}/account/2fa")
    assert page.locator("#recovery-left").inner_text() == "10"
    page.click("text=Sign out")
    page.wait_for_url(f"{live.live_url}/login")

    _password_step(page, live, email)
    page.wait_for_url(f"{live.live_url}/login/2fa")
    page.fill("input[name=code]", "000000")
    page.click("button[type=submit]")
    assert "not valid" in page.locator(".flash, .flashes, [role=alert]").first.inner_text()
    page.fill("input[name=code]", _fresh_code(secret, email, live))
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.live_url}/")
    assert page.locator(".me-name").inner_text().strip() == "Analyst"
    with live.app_context():
        assert AuditLog.objects(action="auth.2fa_failed", target=email).count() == 1
        assert AuditLog.objects(action="auth.login", target=email, details__second_factor="totp").count() == 1
    # the wrong code's page answers 401 on purpose; nothing else may fail
    assert [e for e in page.js_errors if "status of 401" not in e] == [], page.js_errors


def test_required_role_enrols_right_after_the_password(live, page, output_dir):
    email = "must@browser.example.com"
    with live.app_context():
        Admin(email=email, name="Must", roles=["admin"], password_hash=hash_password(TEST_PASSWORD)).save()
        bump_authz_version()
    live.config["REQUIRE_2FA_ROLES"] = "admin"
    try:
        _password_step(page, live, email)
        page.wait_for_url(f"{live.live_url}/login/2fa/enrol")
        page.goto(f"{live.live_url}/")  # not signed in yet
        assert page.url.startswith(f"{live.live_url}/login"), page.url
        page.goto(f"{live.live_url}/login/2fa/enrol")
        secret = page.locator("#totp-secret").inner_text().replace(" ", "")
        with live.app_context():
            assert Admin.objects.get(email=email).totp_secret == secret
        page.screenshot(path=str(output_dir / "twofactor-required-enrol.png"), full_page=True)
        page.fill("input[name=code]", _fresh_code(secret, email, live))
        page.click("text=Turn on two-factor sign-in")
        page.locator("#recovery-codes").wait_for()
        page.click("text=I saved them")
        page.wait_for_url(f"{live.live_url}/")
        assert page.locator(".me-name").inner_text().strip() == "Must"
    finally:
        live.config["REQUIRE_2FA_ROLES"] = None
    assert not page.js_errors, page.js_errors
