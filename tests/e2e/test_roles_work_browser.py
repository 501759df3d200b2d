"""Each role does its job in the browser: a moderator approves a submission and the member is emailed, a content
manager publishes an event, an analyst reads campaign results but cannot start one, an invited admin sets a
password and signs in, and deactivation ends a live session in another browser."""

from __future__ import annotations

import random
import re

import pytest

from console.timeutil import utcnow
from tests.conftest import TEST_PASSWORD, work_queued_jobs

NEW_PASSWORD = "an-invited-admins-passphrase-9"


def _sign_in_form(page, live, email: str, password: str = TEST_PASSWORD) -> None:
    page.goto(f"{live.live_url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.live_url}/")


def test_moderator_approves_a_submission_and_the_member_is_emailed(live, page, sign_in, servers, output_dir):
    from console.db import get_db
    from console.members import Member

    with live.app_context():
        Member._get_collection().insert_one({"user_id": "m1", "email": "gardener@members.example.com",
                                             "name": "Gus Gardener"})
        get_db().submissions.insert_many([
            {"title": "Garden photos", "kind": "photo", "user_id": "m1", "status": "pending",
             "submitted_at": utcnow(), "platform_likes": 4},
            {"title": "Repair café idea", "kind": "proposal", "user_id": "m1", "status": "pending",
             "submitted_at": utcnow()},
        ])
    sign_in("moderator")
    page.wait_for_selector("[data-widget=submissions] #queue-by-type")
    assert page.locator(".widget .card-title").first.inner_text().strip().lower() == "moderation queue"
    page.locator("#queue-by-type a", has_text="Photo").click()  # the queue, filtered to what waits of that type
    page.wait_for_url("**/moderation/submissions?*type=photo*")
    rows = page.locator("table tbody tr")
    assert rows.count() == 1 and "Garden photos" in rows.first.inner_text()
    rows.first.locator("input[name=reason]").fill("Lovely light")
    rows.first.locator("button[value=approve]").click()
    assert "Approved." in page.locator(".flash-success").inner_text()
    page.screenshot(path=str(output_dir / "moderation-approved.png"), full_page=True)
    with live.app_context():
        stored = get_db().submissions.find_one({"title": "Garden photos"})
        assert stored["status"] == "approved" and stored["reviewed_by"] == "moderator@browser.example.com"
        assert stored["platform_likes"] == 4
    work_queued_jobs(live)
    mail = [m for m in servers.messages() if m["To"] == "gardener@members.example.com"]
    assert len(mail) == 1 and "Garden photos" in mail[0]["Subject"], [m["Subject"] for m in mail]
    page.goto(f"{live.live_url}/")
    page.wait_for_selector("[data-widget=submissions] #queue-counts")
    assert page.locator("#queue-counts .stat-value").first.inner_text() == "1"  # one still waits
    assert not page.js_errors, page.js_errors


def test_content_manager_publishes_an_event(live, page, sign_in, output_dir):
    from console.db import get_db

    sign_in("content_manager")
    page.wait_for_selector("[data-widget=content]")
    page.locator(".sidebar").get_by_text("Events").click()
    page.wait_for_url("**/content/events")
    page.fill("#create-form input[name=title]", "Harvest festival")
    page.fill("#create-form input[name=starts_at]", "2027-09-12T14:00")
    page.fill("#create-form input[name=location]", "Town square")
    page.fill("#create-form input[name=capacity]", "150")
    page.click("#create-form button[type=submit]")
    page.wait_for_url("**/content/events/*")
    assert "Draft created." in page.locator(".flash-success").inner_text()
    page.click("button[value=publish]")
    assert "“Harvest festival” is published." in page.locator(".flash-success").inner_text()
    assert page.locator("button[value=unpublish]").is_visible()
    page.screenshot(path=str(output_dir / "content-event-published.png"), full_page=True)
    with live.app_context():
        stored = get_db().events.find_one({"title": "Harvest festival"})
        assert stored["status"] == "published" and stored["capacity"] == 150 and stored["location"] == "Town square"
    page.goto(f"{live.live_url}/")
    page.wait_for_selector("#pipeline-published")
    assert "Harvest festival" in page.locator("#pipeline-published").inner_text()
    page.goto(f"{live.live_url}/content/events?status=published")
    assert "Harvest festival" in page.locator("#content-table").inner_text()
    assert not page.js_errors, page.js_errors


@pytest.fixture
def campaign(live):
    """Members with activity, a marketing template and one sent campaign."""
    from console.blueprints.communication.models import EmailTemplate
    from console.blueprints.engagement import campaigns
    from console.blueprints.engagement.demo import demo_events
    from console.blueprints.engagement.ingest import backfill
    from console.members import Member

    with live.app_context():
        ids = [f"m{n:04d}" for n in range(1, 31)]
        Member._get_collection().insert_many([{"user_id": uid, "email": f"{uid}@example.org", "name": f"Demo {uid}",
                                               "created_at": utcnow()} for uid in ids])
        backfill(demo_events(random.Random(5), utcnow(), ids))
        template = EmailTemplate(name="Win back", subject="We miss you", html_body="<p>Hi</p>",
                                 category="marketing").save()
        started = campaigns.trigger({"name": "Spring win-back", "template_id": str(template.id),
                                     "holdout_percent": 50, "segment": {"user_ids": ids[:12]}}, actor="seed")
    return started["campaign_id"]


def test_analyst_reads_campaign_results_but_cannot_trigger_one(live, page, sign_in, campaign, output_dir):
    sign_in("analyst")
    page.wait_for_selector("#report-campaigns")
    page.locator("#report-campaigns a", has_text="Spring win-back").click()
    page.wait_for_url(f"**/engagement/campaigns/{campaign}")
    page.wait_for_selector("#campaign-results")
    assert "Reactivated" in page.locator("#campaign-results").inner_text()
    page.screenshot(path=str(output_dir / "analyst-campaign-results.png"), full_page=True)
    for path in ("/engagement/campaigns", f"/engagement/campaigns/{campaign}", "/engagement/at-risk",
                 "/engagement/inactive"):
        page.goto(f"{live.live_url}{path}")
        assert page.locator("#campaign-form, #campaign-send, #campaign-preview-btn").count() == 0, path
        assert page.get_by_text(re.compile("Start from|Send to|Trigger", re.I)).count() == 0, path
    token = page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken']")
    refused = page.request.post(f"{live.live_url}/engagement/campaigns/start", headers={"X-CSRFToken": token},
                                form={"name": "Sneaky", "template_id": "x", "holdout_percent": "0"})
    assert refused.status == 403
    api = page.request.post(f"{live.live_url}/api/phase14/engagement/campaigns/trigger",
                            headers={"X-CSRFToken": token}, data={"name": "Sneaky", "template_id": "x"})
    assert api.status == 403 and api.headers["content-type"].startswith("application/problem+json")
    with live.app_context():
        from console.blueprints.engagement.models import Campaign
        assert Campaign.objects.count() == 1
    assert not page.js_errors, page.js_errors


def test_invite_set_password_and_sign_in(live, page, sign_in, servers, output_dir):
    sign_in("admin")
    page.goto(f"{live.live_url}/admins")
    page.fill("#invite-admin input[name=email]", "newcomer@browser.example.com")
    page.fill("#invite-admin input[name=name]", "Nia Newcomer")
    page.select_option("#invite-admin select[name=roles]", "moderator")
    page.click("#invite-admin button[type=submit]")
    assert "Invitation sent to newcomer@browser.example.com" in page.locator(".flash-success").inner_text()
    mail = [m for m in servers.messages() if m["To"] == "newcomer@browser.example.com"]
    assert len(mail) == 1
    body = "".join(part.get_payload(decode=True).decode() for part in mail[0].walk() if not part.is_multipart())
    link = re.search(r"https?://[^\s\"'<>]+/invite/[^\s\"'<>]+", body).group(0)
    assert link.startswith(live.live_url)
    page.click("text=Sign out")
    page.wait_for_url("**/login")

    page.goto(link)
    page.fill("input[name=password]", NEW_PASSWORD)
    page.fill("input[name=confirm]", NEW_PASSWORD)
    page.screenshot(path=str(output_dir / "invite-set-password.png"), full_page=True)
    page.click("button[type=submit]")
    page.wait_for_url("**/login")
    assert "Your password is set" in page.locator(".flash-success").inner_text()
    _sign_in_form(page, live, "newcomer@browser.example.com", NEW_PASSWORD)
    page.wait_for_selector("[data-widget=submissions]")
    assert page.locator(".me-name").inner_text().strip() == "Nia Newcomer"
    assert page.locator(".widget .card-title").first.inner_text().strip().lower() == "moderation queue"
    assert not page.js_errors, page.js_errors
    again = page.goto(link)
    assert again.status == 404 and page.locator("input[name=password]").count() == 0  # the link worked once


def test_deactivation_ends_a_live_session_in_another_browser(live, page, sign_in, chromium, output_dir):
    from console.accounts import Admin
    from console.authz import bump_authz_version
    from console.security import hash_password

    with live.app_context():
        target = Admin(email="leaving@browser.example.com", name="Lee Leaving", roles=["analyst"],
                       password_hash=hash_password(TEST_PASSWORD)).save()
        bump_authz_version()
    other = chromium.new_context(viewport={"width": 1366, "height": 900})
    try:
        theirs = other.new_page()
        _sign_in_form(theirs, live, "leaving@browser.example.com")
        theirs.goto(f"{live.live_url}/engagement")
        assert theirs.url.endswith("/engagement")

        sign_in("admin")
        page.goto(f"{live.live_url}/admins/{target.id}")
        page.click("#lifecycle-actions button[value=deactivate]")
        assert "sessions and tokens ended" in page.locator(".flash-success").inner_text()
        page.screenshot(path=str(output_dir / "admin-deactivated.png"), full_page=True)

        theirs.goto(f"{live.live_url}/engagement/members")  # their next navigation
        theirs.wait_for_url("**/login**")
        assert theirs.locator("input[name=password]").is_visible()
        theirs.fill("input[name=email]", "leaving@browser.example.com")
        theirs.fill("input[name=password]", TEST_PASSWORD)
        theirs.click("button[type=submit]")
        assert "/login" in theirs.url  # and they cannot sign in again
    finally:
        other.close()
