"""The System page, its fragments and the dashboard widget."""

import pytest

from console import telemetry
from tests.hardening_helpers import add_failing_routes

FRAGMENTS = ["/system/health", "/system/audit", "/system/checklist", "/system/errors", "/system/performance",
             "/system/slow-queries", "/system/widgets/health"]


@pytest.mark.parametrize("path", ["/system", *FRAGMENTS])
def test_pages_need_hardening_view(login, path):
    assert login("analyst").get(path).status_code == 403
    assert login("admin").get(path).status_code == 200


def test_system_page_shows_every_section(login):
    html = login("super_admin").get("/system").get_data(as_text=True)
    for fragment in FRAGMENTS[:-1]:
        assert f'hx-get="{fragment}"' in html
    assert 'hx-trigger="load, every 5s"' in html
    assert 'data-task="ensure_indexes"' in html and 'hx-confirm=' in html
    assert "System" in html and "hardening.css" in html


def test_admin_sees_no_optimize_buttons_and_cannot_post(login):
    browser = login("admin")
    assert 'data-task="ensure_indexes"' not in browser.get("/system").get_data(as_text=True)
    assert browser.post("/system/optimize", data={"task": "ensure_indexes"}).status_code == 403


def test_fragments_render_health_errors_and_chart(app, login):
    add_failing_routes(app)
    browser = login("super_admin")
    browser.get("/probe/fail/1")
    browser.get("/probe/ok")
    telemetry.flush(app)
    health = browser.get("/system/health").get_data(as_text=True)
    for dependency in ("mongodb", "redis", "workers", "queues", "smtp", "disk"):
        assert f'data-dependency="{dependency}"' in health
    assert "ValueError" in browser.get("/system/errors").get_data(as_text=True)
    performance = browser.get("/system/performance").get_data(as_text=True)
    assert "data-plotly" in performance and "/probe/ok" in performance
    audit = browser.get("/system/audit").get_data(as_text=True)
    assert "Fix:" in audit and "/100" in audit
    assert "Production checklist" not in browser.get("/system/checklist").get_data(as_text=True)  # a fragment
    widget = login("admin", email="a2@example.com").get("/").get_data(as_text=True)
    assert "/system/widgets/health" in widget


def test_optimize_from_the_page_polls_the_job_until_done(app, login, run_jobs):
    browser = login("super_admin")
    assert browser.post("/system/optimize", data={"task": "purge_expired"}).status_code == 422  # not confirmed
    html = browser.post("/system/optimize", data={"task": "ensure_indexes"}).get_data(as_text=True)
    assert 'data-status="queued"' in html and "hx-get=" in html
    job_url = html.split('hx-get="')[1].split('"')[0]
    run_jobs()
    done = browser.get(job_url).get_data(as_text=True)
    assert 'data-status="finished"' in done and "hx-get=" not in done and "100%" in done
    assert browser.get("/system/optimize/unknown").status_code == 404
