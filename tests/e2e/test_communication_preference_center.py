"""A member follows the preference link in an email (no login), turns categories and SMS off, sets quiet hours,
unsubscribes from everything and resubscribes."""

from __future__ import annotations

import re

from tests.communication_helpers import add_members, bodies
from tests.conftest import work_queued_jobs as _work


def test_member_manages_preferences_from_the_link_in_an_email(live, page, servers, output_dir):
    from console.blueprints.communication import notify
    from console.blueprints.communication.prefs import get_preferences

    add_members(1)
    assert notify("volunteer.approved", user_id="u0", data={"opportunity": "Spring fair"})["status"] == "queued"
    _work(live)
    [message] = servers.messages()
    text, html = bodies(message)
    link = re.search(r'href="(http://127\.0\.0\.1:\d+/p/[^"]+)"', html).group(1)
    assert link in text  # the text part carries it too

    page.goto(link)
    assert page.locator("h2").inner_text() == "Your email preferences"
    assert "For u0@members.example.com" in page.content()
    security = page.get_by_label("Security notices")
    assert security.is_checked() and security.is_disabled()
    assert page.get_by_label("News and invitations").is_checked()
    page.screenshot(path=str(output_dir / "preference-center.png"), full_page=True)

    page.get_by_label("News and invitations").uncheck()
    page.get_by_label("Weekly digest").uncheck()
    page.get_by_label("Text messages (SMS)").uncheck()
    page.fill("input[name=quiet_start]", "22:00")
    page.fill("input[name=quiet_end]", "07:30")
    page.fill("input[name=quiet_timezone]", "Europe/Lisbon")
    page.get_by_role("button", name="Save preferences").click()
    page.wait_for_selector("#pref-message")
    assert page.locator("#pref-message").inner_text() == "Your preferences are saved."
    with live.app_context():
        prefs = get_preferences("u0")
    assert prefs["categories"]["marketing"] is False and prefs["categories"]["digest"] is False
    assert prefs["categories"]["volunteering"] is True and prefs["categories"]["security"] is True
    assert prefs["channels"] == {"email": True, "sms": False}
    assert prefs["quiet_hours"] == {"start": "22:00", "end": "07:30", "timezone": "Europe/Lisbon"}
    # what the member sees after saving is what is stored
    assert not page.get_by_label("News and invitations").is_checked()
    assert page.locator("input[name=quiet_end]").input_value() == "07:30"

    page.get_by_role("button", name="Unsubscribe from everything").click()
    page.wait_for_selector("#pref-message")
    assert "except security notices" in page.locator("#pref-message").inner_text()
    assert not page.get_by_label("Events").is_checked() and page.get_by_label("Security notices").is_checked()
    page.screenshot(path=str(output_dir / "preference-center-unsubscribed.png"), full_page=True)

    page.get_by_role("button", name="Turn everything back on").click()
    page.wait_for_selector("#pref-message")
    assert page.locator("#pref-message").inner_text() == "Welcome back: you will get our emails again."
    assert page.get_by_label("Events").is_checked() and page.get_by_label("News and invitations").is_checked()
    with live.app_context():
        assert all(get_preferences("u0")["categories"].values())

    assert not page.js_errors, page.js_errors

    forged = page.goto(link[:-4] + "abcd")
    assert forged.status == 404 and "Your email preferences" not in page.content()
