"""An operator opens the System page: live health, checklist, audit, latency chart, errors, optimize."""

import re

from console import telemetry


def test_system_page_end_to_end(live, page, sign_in, output_dir):
    from tests.conftest import work_queued_jobs

    sign_in("super_admin")
    for path in ("/", "/api/phase14/hardening/security-audit", "/nope-404"):
        page.goto(f"{live.live_url}{path}")
    telemetry.flush(live)
    page.js_errors.clear()  # the deliberate 404 above
    _seed_error_and_slow_query()

    page.goto(f"{live.live_url}/system")
    page.wait_for_selector("#health .sys-dep[data-dependency=smtp]")
    assert page.locator("#health .sys-dep").count() == 7
    folding = page.locator("#health .sys-dep[data-dependency=activity_folding]")
    assert "Activity folding" in folding.inner_text() and "nothing waiting" in folding.inner_text()
    assert page.locator("#health .sys-dep[data-dependency=mongodb]").get_attribute("data-status") == "UP"
    page.wait_for_selector("#checklist .sys-item")
    page.wait_for_selector("#audit .sys-score")
    assert re.fullmatch(r"\d+/100", page.locator("#audit .sys-score").inner_text().strip())
    assert page.locator("#audit .sys-fix").count() >= 1
    page.wait_for_selector("#p95-chart[data-rendered=true]")
    page.wait_for_selector("#slow-queries .sys-query")
    assert "COLLSCAN" in page.locator("#slow-queries .sys-query").first.inner_text()
    assert 'createIndex({"name": 1, "created_at": -1})' in page.locator("#slow-queries .sys-fix").first.inner_text()
    page.wait_for_selector("#errors tr[data-fingerprint]")
    assert "RuntimeError" in page.locator("#errors").inner_text()

    # health refreshes itself: the timestamp changes without a reload
    first = page.locator("#health .sys-overall").inner_text()
    page.wait_for_function("(first) => document.querySelector('#health .sys-overall').innerText !== first",
                           arg=first, timeout=12000)

    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button[data-task=purge_expired]")
    page.wait_for_selector("#optimize-jobs .sys-job[data-status=queued]")
    work_queued_jobs(live)
    page.wait_for_selector("#optimize-jobs .sys-job[data-status=finished]", timeout=10000)
    assert "purge_expired" in page.locator("#optimize-jobs .sys-results").inner_text()
    page.screenshot(path=str(output_dir / "hardening-system.png"), full_page=True)
    assert not page.js_errors, page.js_errors


def _seed_error_and_slow_query():
    from console.telemetry import command_shape, hour_key, shape_id
    from console.telemetry.models import ErrorEvent, SlowQuery
    from console.timeutil import utcnow

    now = utcnow()
    ErrorEvent(fingerprint="e2e-fp", exception="RuntimeError", message="template cache is <n> entries too small",
               endpoint="/api/phase14/engagement/metrics", count=4, hours={hour_key(now): 4}, first_seen=now,
               last_seen=now, sample={"method": "GET", "path": "/api/phase14/engagement/metrics"}).save()
    shape = command_shape("find", {"find": "users", "filter": {"name": "someone"}, "sort": {"created_at": -1}})
    SlowQuery(at=now, database=SlowQuery._get_db().name, collection="users", command_name="find", shape=shape,
              shape_id=shape_id("users", shape), duration_ms=240.5).save()


def test_dashboard_shows_system_health_widget(live, page, sign_in, output_dir):
    sign_in("admin")
    page.wait_for_selector(".widget .sys-overall")
    assert page.locator(".widget .sys-overall").get_attribute("data-status") in {"UP", "DEGRADED", "DOWN"}
    page.screenshot(path=str(output_dir / "hardening-dashboard-widget.png"), full_page=True)
    assert not page.js_errors, page.js_errors
