"""health-comprehensive against the live stack, including a Redis outage."""

import pytest

from tests.hardening_helpers import API, live_worker

DEPENDENCIES = {"mongodb", "redis", "workers", "queues", "smtp", "disk", "activity_folding"}


def test_all_dependencies_up_without_secrets(app, api):
    client = api("admin")
    with live_worker(app):
        response = client.get(f"{API}/health-comprehensive")
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "UP"
    assert set(body["checks"]) == DEPENDENCIES
    assert all(check["status"] == "UP" for check in body["checks"].values())
    assert body["checks"]["mongodb"]["latency_ms"] >= 0
    assert body["checks"]["workers"]["count"] == 1 and body["checks"]["workers"]["alive"] == 1
    assert set(body["checks"]["queues"]["queues"]) == {"high", "default", "low"}
    assert body["checks"]["smtp"]["noop_code"] == 250
    text = response.get_data(as_text=True)
    for secret in (app.config["MONGODB_URI"], app.config["REDIS_URL"], "mongodb://", "redis://"):
        assert secret not in text


def test_no_worker_is_degraded_and_old_jobs_show_in_queue_depth(app, api):
    from console.queues import get_queue

    get_queue("low").enqueue("console.blueprints.hardening.jobs.optimize", ["ensure_indexes"], {})
    body = api("admin").get(f"{API}/health-comprehensive").json
    assert body["status"] == "DEGRADED"
    assert body["checks"]["workers"]["status"] == "DEGRADED"
    assert body["checks"]["queues"]["queues"]["low"]["depth"] == 1
    assert body["checks"]["queues"]["queues"]["low"]["oldest_job_age_s"] >= 0


def test_smtp_down_is_reported(make_app, app, api):
    from devtools.services import free_port

    broken = make_app(MAIL_PORT=free_port())
    with broken.app_context():
        from console.blueprints.hardening.health import health_comprehensive

        report = health_comprehensive()
    assert report["checks"]["smtp"]["status"] == "DOWN"
    assert report["checks"]["smtp"]["error"] in {"ConnectionRefusedError", "SMTPConnectError", "TimeoutError"}
    assert report["status"] == "DOWN"


@pytest.mark.slow
def test_redis_outage_is_down_with_503_and_up_after_restart(app, api, servers):
    redis_server = servers.handles.get("redis")
    if redis_server is None:
        pytest.skip("Redis was not started by the tests (REDIS_URL given)")
    client = api("admin")
    try:
        redis_server.stop()
        response = client.get(f"{API}/health-comprehensive")
        assert response.status_code == 503
        assert response.json["status"] == "DOWN"
        assert response.json["checks"]["redis"]["status"] == "DOWN"
        assert response.json["checks"]["mongodb"]["status"] == "UP"
    finally:
        redis_server.start()
    with live_worker(app):
        response = client.get(f"{API}/health-comprehensive")
    assert response.status_code == 200
    assert response.json["status"] == "UP"


@pytest.mark.slow
def test_mongodb_outage_is_down_and_up_after_restart(app, api, servers):
    from console.blueprints.hardening.health import health_comprehensive
    from console.cli import prepare_database

    mongo_server = servers.handles.get("mongodb")
    if mongo_server is None:
        pytest.skip("MongoDB was not started by the tests (MONGODB_URI given)")
    client = api("admin")
    try:
        mongo_server.stop()
        report = health_comprehensive()
        assert report["status"] == "DOWN"
        assert report["checks"]["mongodb"]["status"] == "DOWN"
        assert report["checks"]["redis"]["status"] == "UP"
        assert client.get(f"{API}/health-comprehensive").status_code == 503  # even sign-in needs MongoDB
    finally:
        mongo_server.start(timeout=120)
        prepare_database()  # the ':memory:' store comes back empty
    assert health_comprehensive()["checks"]["mongodb"]["status"] == "UP"
    client = api("admin", email="after-restart@example.com")
    with live_worker(app):
        response = client.get(f"{API}/health-comprehensive")
    assert response.status_code == 200 and response.json["status"] == "UP"
