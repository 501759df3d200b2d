"""An operator works the System page (a failed job retried, an error group resolved, an alert rule changed)
and an admin erases a member from the member page."""

from console.timeutil import utcnow


def test_operator_retries_a_failed_job_resolves_an_error_and_edits_an_alert_rule(live, page, sign_in, output_dir):
    from console.blueprints.hardening import alerts
    from console.blueprints.hardening.models import AlertRule
    from console.telemetry.models import ErrorEvent
    from tests.conftest import work_queued_jobs

    live.extensions["queues"]["default"].enqueue("tests.hardening_helpers.failing_job", 7, "x@example.com")
    work_queued_jobs(live)
    with live.app_context():
        alerts.update_rule("no_worker", {"window_minutes": 0}, "e2e")
        alerts.evaluate(utcnow())
    sign_in("super_admin")
    page.goto(f"{live.live_url}/system")
    page.wait_for_selector("#alerts-firing .sys-alert[data-rule=no_worker]")
    page.wait_for_selector("#errors tr[data-source=job]")
    page.wait_for_selector("#error-trend-chart[data-rendered=true]")
    row = page.locator("#errors tr[data-source=job]")
    assert "Retry 1" in row.inner_text()
    row.get_by_role("button", name="Retry 1").click()
    page.wait_for_selector("#errors tr[data-source=job]:not(:has-text('Retry 1'))")
    assert live.extensions["queues"]["default"].count == 1
    page.locator("#errors tr[data-source=job]").get_by_role("button", name="Resolve").click()
    page.wait_for_selector("#errors tr[data-source=job]", state="detached")
    with live.app_context():
        assert ErrorEvent.objects.get(source="job").state == "resolved"

    page.fill("input[aria-label='Slow queries per minute threshold']", "42")
    page.locator("tr[data-rule=slow_queries]").get_by_role("button", name="Save").click()
    page.wait_for_selector("#alerts :text('Saved slow_queries')")
    with live.app_context():
        assert AlertRule.objects.get(rule="slow_queries").threshold == 42
    page.goto(f"{live.live_url}/")
    page.wait_for_selector(".sys-alert[data-rule=no_worker]")
    page.screenshot(path=str(output_dir / "operations-system.png"), full_page=True)
    assert not page.js_errors, page.js_errors


def test_admin_downloads_then_erases_a_member(live, page, sign_in, output_dir):
    from console.members import Member
    from tests.conftest import INGEST_KEY

    client = live.test_client()
    response = client.post("/api/phase14/engagement/track-activity", headers={"X-Ingest-Key": INGEST_KEY},
                           json={"user_id": "zoe", "event": "login", "traits": {"email": "zoe@example.com"}})
    assert response.status_code == 202
    sign_in("admin")
    page.goto(f"{live.live_url}/engagement/members/zoe")
    page.wait_for_selector("[data-action=erase]")
    with page.expect_download() as download:
        page.click("[data-action=export]")
    assert download.value.suggested_filename.startswith("member-")
    page.fill("input[name=confirm_user_id]", "zoe")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("[data-action=erase]")
    page.wait_for_url("**/engagement/members")
    assert "was erased" in page.content()
    with live.app_context():
        assert Member.objects(user_id="zoe").count() == 0
    assert not page.js_errors, page.js_errors
