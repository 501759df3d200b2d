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


def test_requests_during_a_restart_of_the_disk_backed_store_get_a_retryable_error(servers, tmp_path):
    """The same data directory, restarted: clients see 503 + Retry-After meanwhile, never a 500, and the
    data is there when it is back."""
    import threading
    import time

    from console import create_app
    from console.cli import prepare_database
    from devtools import services
    from tests.conftest import base_config

    port = services.free_port()
    store = services.mongo(port, tmp_path / "data", tmp_path / "mongo.log").start(timeout=120)
    try:
        app = create_app(base_config(servers, MONGODB_URI=f"mongodb://127.0.0.1:{port}/restart",
                                     MONGO_TIMEOUT_MS=300, TOKEN_RATE_LIMIT="10000 per minute"))
        with app.app_context():
            prepare_database()
            app.test_cli_runner().invoke(args=["create-admin", "ops@example.com", "--role", "analyst",
                                               "--password", TEST_PASSWORD])
        client = app.test_client()
        login = {"email": "ops@example.com", "password": TEST_PASSWORD}
        assert client.post("/api/auth/token", json=login).status_code == 200

        stopped = threading.Event()

        def restart_store():
            store.stop()
            stopped.set()
            time.sleep(2)  # a restart that takes a while (recovery on a big data directory)
            store.start(timeout=120)

        restart = threading.Thread(target=restart_store)
        restart.start()
        stopped.wait(60)
        statuses = []
        while restart.is_alive():
            response = client.post("/api/auth/token", json=login)
            statuses.append(response.status_code)
            if response.status_code == 503:
                assert response.mimetype == "application/problem+json"
                assert int(response.headers["Retry-After"]) > 0
        restart.join()
        assert 503 in statuses and set(statuses) <= {200, 503}, sorted(set(statuses))
        assert client.post("/api/auth/token", json=login).status_code == 200  # the data survived the restart
    finally:
        store.stop()
