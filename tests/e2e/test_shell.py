"""A person signs in and sees a finished dashboard."""

from console.blueprints.platform.demo import seed_members


def test_login_and_dashboard(live, page, sign_in, output_dir):
    import random

    seed_members(random.Random(1))
    page.goto(f"{live.live_url}/login")
    page.screenshot(path=str(output_dir / "login.png"))
    sign_in("super_admin")
    members = page.locator(".widget[aria-label=Members] .stat-value").first
    members.wait_for()
    assert members.inner_text() == "500"
    assert page.locator("h1").inner_text() == "Dashboard"
    assert page.locator(".sidebar").get_by_text("Dashboard").is_visible()
    page.screenshot(path=str(output_dir / "dashboard-first-sign-in.png"), full_page=True)
    assert not page.js_errors, page.js_errors


def test_wrong_password_shows_a_readable_message(live, page):
    page.goto(f"{live.live_url}/login")
    page.fill("input[name=email]", "nobody@example.com")
    page.fill("input[name=password]", "wrong-password")
    page.click("button[type=submit]")
    assert "do not match" in page.locator(".flash-error").inner_text()
