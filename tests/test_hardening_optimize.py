"""Optimize tasks: validation, permissions, and the RQ job with its progress and result."""

from datetime import timedelta

import pytest

from console.db import get_db
from console.telemetry.models import ErrorEvent, RequestMetric
from console.timeutil import utcnow
from tests.hardening_helpers import API


@pytest.mark.parametrize(("body", "field"), [
    ({"tasks": ["defragment"]}, "tasks.0"),
    ({"tasks": []}, "tasks"),
    ({"tasks": ["purge_expired"]}, "confirm"),
    ({"tasks": ["ensure_indexes", "compact_caches"], "confirm": False}, "confirm"),
    ({"tasks": ["ensure_indexes"], "force": True}, "force"),
    ({"tasks": ["rebuild_rollups"], "confirm": True, "start": "2026-05-02", "end": "2026-05-01"}, "start"),
    ({"tasks": {"$gt": ""}}, "tasks.$gt"),
])
def test_bad_requests_are_422(api, body, field):
    response = api("super_admin").post(f"{API}/optimize", json=body)
    assert response.status_code == 422
    assert field in {e["field"] for e in response.json["errors"]}


def test_destructive_message_is_clear(api):
    response = api("super_admin").post(f"{API}/optimize", json={"tasks": ["compact_caches"]})
    assert "confirm" in response.json["detail"] and "compact_caches" in response.json["detail"]


@pytest.mark.parametrize(("role", "status"), [("admin", 403), ("analyst", 403), ("super_admin", 202)])
def test_only_optimize_permission_may_run_tasks(api, role, status):
    client = api(role)
    response = client.post(f"{API}/optimize", json={"tasks": ["ensure_indexes"]})
    assert response.status_code == status
    if status == 202:
        status_url = f"{API}/optimize/{response.json['job_id']}"
        assert client.get(status_url).status_code == 200
        assert api("admin", email="viewer@example.com").get(status_url).status_code == 403


def test_unknown_or_foreign_job_is_404(app, api):
    from console.queues import get_queue

    client = api("super_admin")
    assert client.get(f"{API}/optimize/no-such-job").status_code == 404
    assert client.get(f"{API}/optimize/bad$id!").status_code == 404
    other = get_queue("default").enqueue("console.blueprints.core.overview.member_summary")
    assert client.get(f"{API}/optimize/{other.id}").status_code == 404


def test_ensure_indexes_job_reports_progress_and_result(app, api, run_jobs):
    RequestMetric._get_collection().drop_index("at_1")
    client = api("super_admin")
    job_id = client.post(f"{API}/optimize", json={"tasks": ["ensure_indexes"]}).json["job_id"]
    queued = client.get(f"{API}/optimize/{job_id}").json
    assert queued["status"] == "queued" and queued["progress"] == 0 and queued["result"] is None
    run_jobs()
    done = client.get(f"{API}/optimize/{job_id}").json
    assert done["status"] == "finished" and done["progress"] == 100
    assert done["result"]["tasks"]["ensure_indexes"]["indexes_created"] >= 1
    assert "at_1" in RequestMetric._get_collection().index_information()
    from console.audit import AuditLog

    assert AuditLog.objects(action="hardening.optimize", target=job_id).count() == 1


def test_destructive_tasks_run_when_confirmed(app, api, run_jobs):
    now = utcnow()
    old_hour = (now - timedelta(days=30)).strftime("%Y%m%d%H")
    RequestMetric._get_collection().insert_many([
        {"at": now - timedelta(days=9), "endpoint": "/x", "method": "GET", "n": 1, "d": [1.0],
         "expires_at": now - timedelta(days=2)},
        {"at": now, "endpoint": "/x", "method": "GET", "n": 1, "d": [1.0], "expires_at": now + timedelta(days=7)},
    ])
    ErrorEvent._get_collection().insert_one({"fingerprint": "f1", "count": 3, "last_seen": now,
                                             "hours": {old_hour: 2, now.strftime("%Y%m%d%H"): 1}})
    get_db()["engagement_metrics"].insert_one({"key": "cached"})
    client = api("super_admin")
    tasks = ["purge_expired", "compact_caches", "rebuild_rollups"]
    job_id = client.post(f"{API}/optimize", json={"tasks": tasks, "confirm": True}).json["job_id"]
    run_jobs()
    done = client.get(f"{API}/optimize/{job_id}").json
    assert done["status"] == "finished", done
    results = done["result"]["tasks"]
    assert results["purge_expired"]["deleted"]["request_metrics"] == 1
    assert results["purge_expired"]["hourly_counters_trimmed"] == 1
    assert RequestMetric.objects(endpoint="/x").count() == 1  # the flusher may add this test's own requests
    assert list(ErrorEvent.objects.first().hours) == [now.strftime("%Y%m%d%H")]
    assert results["compact_caches"]["cleared"]["engagement_metrics"] == 1
    assert get_db()["engagement_metrics"].count_documents({}) == 0
    assert results["rebuild_rollups"]["status"] == "done"
