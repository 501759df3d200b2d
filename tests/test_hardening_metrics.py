"""GET /metrics: Prometheus text format, guarded, parsed with prometheus_client's own parser."""

from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import INGEST_KEY
from tests.hardening_helpers import add_failing_routes, live_worker


def _families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _value(families: dict, family: str, sample: str | None = None, **labels) -> float | None:
    for item in families[family].samples:
        if item.name == (sample or family) and all(item.labels.get(k) == v for k, v in labels.items()):
            return item.value
    return None


def test_metrics_is_off_without_a_token_or_allow_list(app):
    client = app.test_client()
    assert client.get("/metrics").status_code == 404


def test_metrics_needs_the_bearer_token(make_app, app):
    guarded = make_app(METRICS_TOKEN="scrape-token-0123456789")
    client = guarded.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"})
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "console_http_requests_total" in response.get_data(as_text=True)


def test_metrics_allow_list_admits_listed_addresses_only(make_app, app):
    listed = make_app(METRICS_ALLOW="10.0.0.0/8, 192.168.1.7")
    client = listed.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.168.1.7"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 401


def test_scrape_parses_and_counts_requests_ingest_mail_jobs_and_workers(make_app, app, api, run_jobs):
    guarded = make_app(METRICS_TOKEN="t0k3n-for-the-scraper", METRICS_CACHE_SECONDS=0)
    add_failing_routes(guarded)
    scraper = guarded.test_client()
    headers = {"Authorization": "Bearer t0k3n-for-the-scraper"}
    before = _families(scraper.get("/metrics", headers=headers).get_data(as_text=True))
    ok_before = _value(before, "console_http_requests", "console_http_requests_total",
                       endpoint="/probe/ok", status="200") or 0
    ingested_before = _value(before, "console_events_ingested", "console_events_ingested_total") or 0
    rejected_before = _value(before, "console_events_rejected", "console_events_rejected_total") or 0

    admin = api("admin")
    from console.security import issue_token

    guarded_client = guarded.test_client()
    guarded_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {issue_token(admin.admin)[0]}"
    for _ in range(3):
        assert guarded_client.get("/probe/ok").status_code == 200
    guarded_client.get("/probe/fail/1")
    response = guarded.test_client().post(
        "/api/phase14/engagement/track-activity", headers={"X-Ingest-Key": INGEST_KEY},
        json={"events": [{"user_id": "m1", "event": "login"}, {"user_id": "m2", "event": "view"}, {"event": "x"}]})
    assert response.status_code == 202, response.json
    from console.db import get_db

    get_db()["email_queue"].insert_many([
        {"to_email": "a@example.com", "status": "queued", "priority": "high", "created_at": _ago(120)},
        {"to_email": "b@example.com", "status": "queued", "priority": "high", "created_at": _ago(30)},
        {"to_email": "c@example.com", "status": "bounced", "priority": "normal", "created_at": _ago(5)},
        {"to_email": "d@example.com", "status": "sent", "priority": "normal", "created_at": _ago(5)},
    ])
    guarded.extensions["queues"]["low"].enqueue("console.blueprints.hardening.alerts.current_states")

    with live_worker(guarded, "metrics-test-worker"):
        text = scraper.get("/metrics", headers=headers).get_data(as_text=True)
    after = _families(text)
    assert _value(after, "console_http_requests", "console_http_requests_total",
                  endpoint="/probe/ok", method="GET", status="200") == ok_before + 3
    assert _value(after, "console_http_requests", "console_http_requests_total",
                  endpoint="/probe/fail/<int:n>", status="500") >= 1
    assert _value(after, "console_http_request_duration_seconds", "console_http_request_duration_seconds_count",
                  endpoint="/probe/ok", status="200") == ok_before + 3
    assert _value(after, "console_events_ingested", "console_events_ingested_total") == ingested_before + 2
    assert _value(after, "console_events_rejected", "console_events_rejected_total") == rejected_before + 1
    assert _value(after, "console_errors", "console_errors_total", source="request") >= 1
    assert _value(after, "console_mail_queue_emails", status="queued", priority="high") == 2
    assert _value(after, "console_mail_queue_emails", status="deferred", priority="low") == 0
    assert 110 <= _value(after, "console_mail_queue_oldest_age_seconds", status="queued", priority="high") < 200
    assert _value(after, "console_mail_bounced", "console_mail_bounced_total") == 1
    assert _value(after, "console_mail_sent", "console_mail_sent_total") == 2  # sent + bounced left the server
    assert _value(after, "console_rq_queue_jobs", queue="low", state="queued") == 1
    assert _value(after, "console_rq_worker_heartbeat_age_seconds", worker="metrics-test-worker") < 60
    assert _value(after, "console_dependency_up", dependency="mongodb") == 1
    assert _value(after, "console_dependency_round_trip_seconds", dependency="redis") > 0
    assert "console_mongodb_command_duration_seconds" in after

    run_jobs()
    jobs = _families(scraper.get("/metrics", headers=headers).get_data(as_text=True))
    assert _value(jobs, "console_rq_jobs", "console_rq_jobs_total", queue="low",
                  job="hardening.current_states", outcome="finished") >= 1
    assert _value(jobs, "console_rq_queue_jobs", queue="low", state="queued") == 0


def test_counts_from_other_processes_are_merged_through_the_multiprocess_directory(make_app, app, scratch_dir):
    """A worker process writes its counters into PROMETHEUS_MULTIPROC_DIR; the web process's scrape adds them."""
    script = ("from console.telemetry import prom\n"
              "assert prom.MULTIPROCESS\n"
              "prom.RQ_JOBS.labels('default', 'communication.deliver', 'failed').inc(7)\n"
              "prom.count_ingest(5, 0, 0)\n")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(scratch_dir)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, cwd=os.getcwd(), timeout=60)
    from console.telemetry import prom
    in_this_process = prom.RQ_JOBS.labels("default", "communication.deliver", "failed")._value.get()  # other tests
    guarded = make_app(METRICS_TOKEN="multi-process-token", PROMETHEUS_MULTIPROC_DIR=str(scratch_dir))
    text = guarded.test_client().get("/metrics", headers={"Authorization": "Bearer multi-process-token"})
    families = _families(text.get_data(as_text=True))
    assert _value(families, "console_rq_jobs", "console_rq_jobs_total", queue="default",
                  job="communication.deliver", outcome="failed") == 7 + in_this_process
    assert _value(families, "console_events_ingested", "console_events_ingested_total") >= 5

    # a web process in multiprocess mode (as under gunicorn) answers with everyone's counts, its own included
    web = ("import sys\n"
           "from console import create_app\n"
           "from console.telemetry import prom\n"
           "assert prom.MULTIPROCESS\n"
           "app = create_app({'TESTING': True, 'SECRET_KEY': 'k' * 40, 'MONGODB_URI': sys.argv[1],"
           " 'REDIS_URL': sys.argv[2], 'METRICS_TOKEN': 'mp-token'})\n"
           "client = app.test_client()\n"
           "headers = {'Authorization': 'Bearer mp-token'}\n"
           "assert client.get('/metrics', headers=headers).status_code == 200\n"
           "print(client.get('/metrics', headers=headers).get_data(as_text=True))\n")
    out = subprocess.run([sys.executable, "-c", web, guarded.config["MONGODB_URI"], guarded.config["REDIS_URL"]],
                         env=env, check=True, cwd=os.getcwd(), timeout=120, capture_output=True, text=True)
    families = _families(out.stdout)
    assert _value(families, "console_rq_jobs", "console_rq_jobs_total", job="communication.deliver") == 7
    assert _value(families, "console_http_requests", "console_http_requests_total", endpoint="/metrics",
                  status="200") >= 1
    assert _value(families, "console_mail_queue_emails", status="queued", priority="normal") == 0


def _ago(seconds: int):
    from datetime import timedelta

    from console.timeutil import utcnow

    return utcnow() - timedelta(seconds=seconds)


def test_security_audit_judges_the_metrics_guard(make_app, app):
    from console.blueprints.hardening.security_audit import run_checks

    def guard(**config):
        built = make_app(**config)
        with built.app_context():
            return next(c for c in run_checks(built) if c["id"] == "metrics_guard")

    assert guard()["status"] == "pass"
    assert guard(METRICS_TOKEN="short")["status"] == "warn"
    assert guard(METRICS_ALLOW="0.0.0.0/0")["status"] == "fail"
    assert "10.0.0.0/8" in guard(METRICS_ALLOW="10.0.0.0/8", METRICS_TOKEN="t" * 32)["detail"]
