"""When a backing service goes away, clients get a retryable 503, never a 500, and service resumes."""

import pytest

from tests.conftest import INGEST_KEY, TEST_PASSWORD, clean_state


@pytest.fixture
def stopped(servers, make_app):
    """Stop one embedded service for the test, restart it afterwards (only services the tests started)."""
    stopped_services = []

    def stop(name: str):
        service = servers.handles.get(name)
        if service is None:
            pytest.skip(f"{name} was not started by the tests (its URL came from the environment)")
        service.stop()
        stopped_services.append(service)
        return service

    yield stop
    for service in stopped_services:
        service.start(timeout=120)
    clean_state(servers)


def test_mongodb_down_is_503_problem_then_recovers(app, create_admin, servers, make_app, stopped):
    from console.cli import prepare_database

    create_admin("analyst")
    fast = make_app(MONGO_TIMEOUT_MS=300)
    client = fast.test_client()
    stopped("mongodb")
    for request in (
        lambda: client.post("/api/auth/token", json={"email": "analyst@test.example.com", "password": TEST_PASSWORD}),
        lambda: client.get("/api/auth/me", headers={"Authorization": "Bearer ct_whatever"}),
        lambda: client.post("/api/phase14/engagement/track-activity", json={"user_id": "u1", "event": "x"},
                            headers={"X-Ingest-Key": INGEST_KEY}),
    ):
        response = request()
        assert response.status_code == 503
        assert response.mimetype == "application/problem+json"
        assert int(response.headers["Retry-After"]) > 0
        assert "Traceback" not in response.get_data(as_text=True)
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200

    servers.handles["mongodb"].start(timeout=120)
    with fast.app_context():
        prepare_database()
    assert client.get("/readyz").status_code == 200
    assert client.post("/api/auth/token", json={"email": "nobody@x.example", "password": "x"}).status_code == 401


def test_login_page_with_redis_down_still_works(app, create_admin, stopped, make_app):
    """Rate-limit storage failing open keeps admins able to sign in; readiness reports Redis down."""
    from tests.conftest import csrf_token_from

    admin = create_admin("admin")
    stopped("redis")
    client = app.test_client()
    token = csrf_token_from(client.get("/login").data)
    response = client.post("/login", data={"email": admin.email, "password": TEST_PASSWORD, "csrf_token": token})
    assert response.status_code == 302
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["redis"] == "down"


@pytest.fixture
def disk_store(servers, tmp_path):
    """A SecantusDB of its own with a data directory (not :memory:), and an app on it that gives up on MongoDB
    after 300 ms; yields (service, app)."""
    from console import create_app
    from console.cli import prepare_database
    from devtools import services
    from tests.conftest import base_config

    port = services.free_port()
    store = services.mongo(port, tmp_path / "data", tmp_path / "mongo.log").start(timeout=120)
    try:
        app = create_app(base_config(servers, MONGODB_URI=f"mongodb://127.0.0.1:{port}/restart", MONGO_TIMEOUT_MS=300,
                                     TOKEN_RATE_LIMIT="10000 per minute", INGEST_RATE_LIMIT="100000 per minute"))
        with app.app_context():
            prepare_database()
            app.test_cli_runner().invoke(args=["create-admin", "ops@example.com", "--role", "super_admin",
                                               "--password", TEST_PASSWORD])
        yield store, app
    finally:
        store.stop()


def _in_background(*steps):
    """Run the steps one after another in a thread; returns the started thread."""
    import threading

    def run():
        for step in steps:
            step()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _retryable_or_ok(response, elapsed: float, ok: int) -> bool:
    """True for a success; asserts that anything else is a quick 503 problem with Retry-After."""
    assert elapsed < CLIENT_TIMEOUT, f"{response.status_code} after {elapsed:.1f}s"
    if response.status_code == ok:
        return True
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/problem+json" and int(response.headers["Retry-After"]) > 0
    assert "Traceback" not in response.get_data(as_text=True)
    return False


CLIENT_TIMEOUT = 10.0  # seconds: what a client of this API waits before it gives up


def test_requests_during_a_restart_of_the_disk_backed_store_get_a_retryable_error(disk_store):
    """Sign-in, reads and writes while the same data directory is stopped and started again: each answers
    at once, either as usual or 503 + Retry-After, never a 500; afterwards the data is all there."""
    import time

    store, app = disk_store
    client = app.test_client()
    login = {"email": "ops@example.com", "password": TEST_PASSWORD}
    token = client.post("/api/auth/token", json=login).json["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    template = {"name": "before", "subject": "s", "html_body": "<p>x</p>", "category": "news"}
    assert client.post("/api/phase14/communication/templates", json=template, headers=bearer).status_code == 201
    requests = [
        (lambda: client.post("/api/auth/token", json=login), 200),
        (lambda: client.get("/api/phase14/communication/templates", headers=bearer), 200),
        (lambda: client.post("/api/phase14/engagement/track-activity", headers={"X-Ingest-Key": INGEST_KEY},
                             json={"user_id": "u1", "event": "restart"}), 202),
    ]
    restart = _in_background(store.stop, lambda: time.sleep(2), lambda: store.start(timeout=120))
    outcomes = []
    while restart.is_alive():
        for request, ok in requests:
            started = time.monotonic()
            response = request()
            outcomes.append(_retryable_or_ok(response, time.monotonic() - started, ok))
    restart.join()
    assert False in outcomes, "no request reached the store while it was down"

    assert client.post("/api/auth/token", json=login).status_code == 200
    items = client.get("/api/phase14/communication/templates?limit=100", headers=bearer).json["items"]
    assert [item["name"] for item in items if not item["builtin"]] == ["before"]  # written before the restart


def _stream_through_an_outage(store, app) -> tuple[int, list[int]]:
    """Stream batches of 50 events, retrying each 503 with the same event ids, while MongoDB is stopped and
    started again; returns how many batches went in and every status seen."""
    import time

    client = app.test_client()
    headers = {"X-Ingest-Key": INGEST_KEY}
    sent, answers, outage = 0, [], None

    def send(number: int):
        batch = [{"user_id": f"u{i % 7}", "event": "stream", "event_id": f"b{number}-{i}"} for i in range(50)]
        while True:
            started = time.monotonic()
            response = client.post("/api/phase14/engagement/track-activity", json={"events": batch},
                                   headers=headers)
            answers.append(response.status_code)
            if _retryable_or_ok(response, time.monotonic() - started, 202):
                return
            time.sleep(0.2)

    while outage is None or outage.is_alive() or answers[-5:] != [202] * 5:
        if sent == 5:  # the stream is flowing: pull the store out from under it
            outage = _in_background(store.stop, lambda: time.sleep(2), lambda: store.start(timeout=120))
        send(sent)
        sent += 1
    outage.join()
    return sent, answers


def test_stopping_mongodb_during_an_ingestion_stream_is_503_then_recovers(disk_store):
    """While MongoDB is stopped every answer is a quick 503 problem, once it is back the stream goes on, every
    event is stored exactly once, and the rollups hold them all (a batch cut off between its events and its
    rollup is rolled up by its retry; tests/test_engagement_ingest.py pins that case down)."""
    from console import db
    from console.blueprints.engagement.models import UserActivity
    from tests.fuzz_helpers import store_problems

    store, app = disk_store
    sent, answers = _stream_through_an_outage(store, app)
    assert 503 in answers and set(answers) == {202, 503}
    with app.app_context():
        assert UserActivity.objects.count() == sent * 50
        assert len(UserActivity.objects.distinct("event_id")) == sent * 50
        assert store_problems(db.get_db()) == []
