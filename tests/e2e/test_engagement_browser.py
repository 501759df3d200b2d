"""An admin explores engagement in the browser: controls swap charts and tables without a reload, a member's
page loads its activity, and a campaign goes from a dry-run preview to sending to results."""

from __future__ import annotations

import random

import pytest

from console.timeutil import utcnow


@pytest.fixture
def demo(live):
    from console.blueprints.communication.models import EmailTemplate
    from console.blueprints.engagement.churn import rescore
    from console.blueprints.engagement.demo import demo_events
    from console.blueprints.engagement.ingest import backfill
    from console.members import Member

    with live.app_context():
        ids = [f"m{n:04d}" for n in range(1, 61)]
        Member._get_collection().insert_many([{"user_id": uid, "email": f"{uid}@example.org", "name": f"Demo {uid}",
                                               "created_at": utcnow()} for uid in ids])
        backfill(demo_events(random.Random(5), utcnow(), ids))
        rescore()  # the At-risk list shows stored scores
        EmailTemplate(name="Win back", subject="We miss you, {{ name }}", html_body="<p>Hi {{ name }}</p>",
                      category="marketing").save()
    return ids


def _mark(page):
    page.evaluate("window.__noReload = true")


def _not_reloaded(page):
    assert page.evaluate("window.__noReload === true"), "the page reloaded instead of swapping a fragment"


def test_overview_retention_lifecycle_controls(live, page, sign_in, demo, output_dir):
    sign_in("analyst")
    page.goto(f"{live.live_url}/engagement")
    page.wait_for_selector("#chart-activity[data-rendered=true]")
    page.wait_for_selector("#chart-features[data-rendered=true]")
    page.wait_for_selector("#chart-stickiness[data-rendered=true]")  # members by days active, 1..30
    page.wait_for_selector("#chart-adoption[data-rendered=true]")  # members per feature per day
    sticky = "JSON.parse(document.querySelector('#chart-stickiness').getAttribute('data-plotly')).data[0].x.length"
    assert page.evaluate(sticky) == 30
    assert "Days, weeks and months in UTC" in page.locator(".subtitle").inner_text()
    assert int(page.locator(".eng-stats .stat-value").first.inner_text().replace(",", "")) >= 0
    _mark(page)
    points = "JSON.parse(document.querySelector('#chart-activity').getAttribute('data-plotly')).data[0].x.length"
    days_before = page.evaluate(points)
    page.select_option("#interval", "week")
    page.wait_for_selector(".eng-stats[data-interval=week]")
    page.wait_for_selector("#chart-activity[data-rendered=true]")
    _not_reloaded(page)
    assert page.evaluate(points) < days_before == 30
    # `to` (today) cuts the current week unless today is Sunday: that week is drawn lighter and named
    opacity = "JSON.parse(document.querySelector('#chart-activity').getAttribute('data-plotly')).data[0].marker.opacity"
    note = page.locator(".eng-zone").inner_text()
    if utcnow().weekday() != 6:
        assert page.evaluate(opacity)[-1] == 0.4 and "cut by the date range" in note
    page.screenshot(path=str(output_dir / "engagement-overview.png"), full_page=True)

    page.goto(f"{live.live_url}/engagement/retention")
    page.wait_for_selector("#retention-table td.cell")
    first_time = page.locator("#retention-table tbody").inner_text()
    _mark(page)
    page.select_option("#mode", "recurring")
    page.wait_for_selector("#retention-card[data-mode=recurring]")
    _not_reloaded(page)
    assert page.locator("#retention-table tbody").inner_text() != first_time
    assert "members" in page.locator("#retention-table td.cell").first.get_attribute("title")
    page.select_option("#period", "month")
    page.wait_for_selector("#retention-card[data-period=month]")
    page.screenshot(path=str(output_dir / "engagement-retention.png"), full_page=True)

    page.goto(f"{live.live_url}/engagement/lifecycle")
    page.wait_for_selector("#chart-lifecycle[data-rendered=true]")
    _mark(page)
    page.select_option("#interval", "month")
    page.wait_for_selector("#lifecycle-card[data-interval=month]")
    page.wait_for_selector("#chart-lifecycle[data-rendered=true]")
    _not_reloaded(page)
    page.screenshot(path=str(output_dir / "engagement-lifecycle.png"), full_page=True)
    assert not page.js_errors, page.js_errors


def test_members_and_member_detail(live, page, sign_in, demo, output_dir):
    sign_in("analyst")
    page.goto(f"{live.live_url}/engagement/members")
    page.wait_for_selector("#members-table")
    page.fill("#member-q", "m0007")
    page.wait_for_function("() => document.querySelectorAll('#members-table tbody tr').length === 1")
    page.click("#members-table a")
    page.wait_for_selector("#activity-table")
    assert page.locator("#activity-table tbody tr").count() >= 1
    if page.locator("#activity-next").count():
        first = page.locator("#activity-table tbody tr").first.inner_text()
        page.click("#activity-next")
        page.wait_for_function("(first) => document.querySelector('#activity-table tbody tr').innerText !== first",
                               arg=first)
    page.screenshot(path=str(output_dir / "engagement-member.png"), full_page=True)
    assert not page.js_errors, page.js_errors


def test_inactive_list_to_campaign_results(live, page, sign_in, demo, output_dir):
    from tests.conftest import work_queued_jobs

    sign_in("admin")
    page.goto(f"{live.live_url}/engagement/at-risk?tier=all")
    page.wait_for_selector("#risk-table")
    page.screenshot(path=str(output_dir / "engagement-at-risk.png"), full_page=True)
    page.goto(f"{live.live_url}/")
    page.wait_for_selector(".eng-widget")
    page.screenshot(path=str(output_dir / "engagement-dashboard.png"))
    page.goto(f"{live.live_url}/engagement/inactive?days=30")
    page.wait_for_selector("#inactive-table")
    total_30 = page.locator("#inactive-total").inner_text()
    page.fill("#days", "5")
    page.press("#days", "Tab")  # leaving the field fires its change event: htmx swaps the list
    page.wait_for_function("(t) => document.querySelector('#inactive-total').innerText !== t", arg=total_30)

    boxes = page.locator("#inactive-table input[name=user_ids]")
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.fill("#campaign-form input[name=holdout_percent]", "0")
    page.click("#campaign-preview-btn")
    page.wait_for_selector("#preview-result")
    assert "Send to 2 members" in page.locator("#campaign-send").inner_text()
    page.click("#campaign-send")
    page.wait_for_url("**/engagement/campaigns/*")
    page.wait_for_selector("#campaign-status[data-status=sending] .progress")
    work_queued_jobs(live)
    page.wait_for_selector("#campaign-status[data-status=complete]", timeout=10000)
    page.wait_for_selector("#campaign-results")
    assert "Reactivated" in page.locator("#campaign-results").inner_text()
    page.screenshot(path=str(output_dir / "engagement-campaign.png"), full_page=True)
    assert not page.js_errors, page.js_errors
