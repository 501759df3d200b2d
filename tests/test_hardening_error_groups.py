"""Failed RQ jobs as error groups (retry, discard), and the life of a group: resolve, ignore, regression."""

from __future__ import annotations

from console.audit import AuditLog
from console.telemetry.models import ErrorEvent
from tests.hardening_helpers import API, add_failing_routes

JOB = "tests.hardening_helpers.failing_job"


def _enqueue_failures(app, n: int = 2):
    queue = app.extensions["queues"]["default"]
    return [queue.enqueue(JOB, 1000 + i, f"member{i}@example.com") for i in range(n)]


def test_a_failing_job_is_an_error_group_beside_request_errors(app, api, run_jobs):
    add_failing_routes(app)
    client = api("super_admin")
    client.get("/probe/fail/1")
    jobs = _enqueue_failures(app, 2)
    run_jobs()

    body = client.get(f"{API}/error-analysis?hours=1").json
    assert body["job_failures"] == 2 and body["total"] == 1
    [job_group] = [g for g in body["groups"] if g["source"] == "job"]
    [request_group] = [g for g in body["groups"] if g["source"] == "request"]
    assert request_group["endpoint"] == "/probe/fail/<int:n>"
    assert job_group["count"] == 2
    assert job_group["exception"] == "RuntimeError"
    job = job_group["job"]
    assert job["name"] == JOB and job["queue"] == "default" and job["attempts"] == 1
    assert job["failed_jobs"] == 2 and job["job_id"] == jobs[-1].id
    assert "failing_job" in job["traceback"] and "RuntimeError" in job["traceback"]
    stored = str(ErrorEvent.objects.as_pymongo().get(source="job"))
    for secret in ("member0@example.com", "member1@example.com", "abcdefabcdefabcdefabcdefabcdef0123"):
        assert secret not in stored
    assert client.get(f"{API}/error-analysis?hours=1&source=request").json["groups"] == [request_group]

    page = api("admin")  # hardening.view only: sees the group, cannot act on it
    assert page.post(f"{API}/error-groups/{job_group['fingerprint']}/retry", json={}).status_code == 403


def test_retry_requeues_and_discard_deletes_the_groups_failed_jobs(app, api, run_jobs):
    from rq.job import Job
    from rq.registry import FailedJobRegistry

    client = api("super_admin")
    jobs = _enqueue_failures(app, 2)
    run_jobs()
    registry = FailedJobRegistry(name="default", connection=app.extensions["redis"])
    assert registry.count == 2
    fingerprint = ErrorEvent.objects.get(source="job").fingerprint

    retried = client.post(f"{API}/error-groups/{fingerprint}/retry", json={})
    assert retried.status_code == 200, retried.json
    assert sorted(retried.json["jobs"]) == sorted(j.id for j in jobs)
    assert registry.count == 0 and app.extensions["queues"]["default"].count == 2
    run_jobs()  # they fail again: the same group counts them
    assert ErrorEvent.objects.get(fingerprint=fingerprint).count == 4
    assert registry.count == 2

    discarded = client.post(f"{API}/error-groups/{fingerprint}/discard", json={})
    assert discarded.status_code == 200
    assert registry.count == 0
    assert not Job.exists(jobs[0].id, connection=app.extensions["redis"])
    group = client.get(f"{API}/error-analysis?hours=1&state=resolved").json["groups"][0]
    assert group["state"] == "resolved" and group["job"]["failed_jobs"] == 0
    assert AuditLog.objects(action="hardening.failed_jobs.discard", target=fingerprint).count() == 1
    assert client.post(f"{API}/error-groups/{'f' * 20}/retry", json={}).status_code == 404
    assert client.post(f"{API}/error-groups/not-hex!/retry", json={}).status_code == 404


def test_resolved_group_that_recurs_reopens_as_a_regression(app, api):
    add_failing_routes(app)
    client = api("super_admin")
    client.get("/probe/fail/1")
    fingerprint = ErrorEvent.objects.get().fingerprint
    resolved = client.post(f"{API}/error-groups/{fingerprint}/resolve", json={})
    assert resolved.status_code == 200 and resolved.json["state"] == "resolved"
    assert client.get(f"{API}/error-analysis?hours=1").json["groups"] == []  # active: nothing open
    assert client.get(f"{API}/error-analysis?hours=1&state=resolved").json["groups"][0]["fingerprint"] == fingerprint

    client.get("/probe/fail/2")
    [group] = client.get(f"{API}/error-analysis?hours=1").json["groups"]
    assert group["state"] == "open" and group["regressed"] is True and group["regressed_at"]
    assert client.get(f"{API}/error-analysis?hours=1&state=regressed").json["groups"][0]["count"] == 2


def test_ignore_for_a_while_or_for_good(app, api):
    from datetime import timedelta

    from console.timeutil import utcnow

    add_failing_routes(app)
    client = api("super_admin")
    client.get("/probe/fail/1")
    fingerprint = ErrorEvent.objects.get().fingerprint
    bad = client.post(f"{API}/error-groups/{fingerprint}/ignore", json={"minutes": 0})
    assert bad.status_code == 422 and ErrorEvent.objects.get().state == "open"

    ignored = client.post(f"{API}/error-groups/{fingerprint}/ignore", json={"minutes": 60})
    assert ignored.status_code == 200 and ignored.json["state"] == "ignored" and ignored.json["ignored_until"]
    client.get("/probe/fail/2")  # still ignored while the hour runs
    assert client.get(f"{API}/error-analysis?hours=1").json["groups"] == []
    ErrorEvent.objects(fingerprint=fingerprint).update(set__ignored_until=utcnow() - timedelta(minutes=1))
    [group] = client.get(f"{API}/error-analysis?hours=1").json["groups"]  # the ignore ran out
    assert group["state"] == "open" and not group["regressed"]

    forever = client.post(f"{API}/error-groups/{fingerprint}/ignore", json={})
    assert forever.json["state"] == "ignored" and forever.json["ignored_until"] is None
    client.get("/probe/fail/3")
    assert client.get(f"{API}/error-analysis?hours=1").json["groups"] == []
    assert client.get(f"{API}/error-analysis?hours=1&state=ignored").json["groups"][0]["count"] == 3
    reopened = client.post(f"{API}/error-groups/{fingerprint}/reopen", json={})
    assert reopened.json["state"] == "open"
    assert AuditLog.objects(target=fingerprint).count() == 3  # ignore, ignore for good, reopen


def test_error_trend_counts_errors_and_failed_jobs_per_hour(app, api, run_jobs):
    from console import telemetry

    add_failing_routes(app)
    client = api("super_admin")
    for _ in range(3):
        client.get("/probe/ok")
    client.get("/probe/fail/1")
    _enqueue_failures(app, 1)
    run_jobs()
    telemetry.flush(app)
    body = client.get(f"{API}/error-trend?hours=6").json
    assert len(body["series"]) == 7
    last = body["series"][-1]
    assert last["errors"] == 1 and last["job_failures"] == 1 and last["requests"] >= 4
    assert 0 < last["error_rate"] <= 0.25
    assert all(point["errors"] == 0 for point in body["series"][:-2])


def test_system_page_resolves_and_retries_from_the_errors_card(app, login, run_jobs):
    browser = login("super_admin")
    _enqueue_failures(app, 1)
    run_jobs()
    fingerprint = ErrorEvent.objects.get().fingerprint
    html = browser.get("/system/errors").get_data(as_text=True)
    assert f'data-fingerprint="{fingerprint}"' in html and "Retry 1" in html and "error-trend-chart" in html
    html = browser.post(f"/system/errors/{fingerprint}", data={"action": "retry"}).get_data(as_text=True)
    assert app.extensions["queues"]["default"].count == 1
    html = browser.post(f"/system/errors/{fingerprint}", data={"action": "resolve"}).get_data(as_text=True)
    assert fingerprint not in html and ErrorEvent.objects.get().state == "resolved"
    viewer = login("admin", email="viewer@test.example.com")
    assert viewer.post(f"/system/errors/{fingerprint}", data={"action": "reopen"}).status_code == 403


def test_a_retried_job_counts_its_attempts(app, api, run_jobs):
    from rq import Retry

    client = api("super_admin")
    app.extensions["queues"]["default"].enqueue(JOB, 1, "a@example.com", retry=Retry(max=2))
    for _ in range(3):  # the first run and two retries, each failing
        run_jobs()
    [group] = client.get(f"{API}/error-analysis?hours=1&source=job").json["groups"]
    assert group["count"] == 3
    assert group["job"]["attempts"] == 3 and group["job"]["will_retry"] is False
    assert group["job"]["failed_jobs"] == 1  # the same job each time, in the failed registry once


def test_resolving_a_failed_job_group_answers_the_group(app, api, run_jobs):
    client = api("super_admin")
    _enqueue_failures(app, 1)
    run_jobs()
    fingerprint = ErrorEvent.objects.get().fingerprint
    body = client.post(f"{API}/error-groups/{fingerprint}/resolve", json={}).json
    assert body["state"] == "resolved" and body["job"]["failed_jobs"] == 1 and "job_ids" not in body["job"]


def test_errors_card_trend_follows_the_chosen_window(app, login):
    import json
    import re

    browser = login("super_admin")
    html = browser.get("/system/errors?hours=72").get_data(as_text=True)
    assert 'class="chip chip-on" data-hours="72"' in html
    figure = json.loads(re.search(r"id=\"error-trend-chart\"[^>]*data-plotly='([^']+)'", html).group(1))
    assert len(figure["data"][0]["x"]) == 73  # one point per hour of the window, both ends included
