"""The app factory, configuration and the probes."""

import pytest

from console import create_app
from console.config import ConfigError
from tests.conftest import base_config


def test_healthz_is_process_only(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_reports_dependencies_without_internals(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ready", "checks": {"mongodb": "up", "redis": "up"}}
    assert "mongodb://" not in response.get_data(as_text=True)


def test_readyz_is_503_when_redis_is_unreachable(make_app, servers):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["redis"] == "down"


@pytest.mark.parametrize("missing", ["SECRET_KEY", "INGEST_KEYS"])
def test_production_refuses_to_start_without_explicit_secrets(servers, monkeypatch, missing):
    monkeypatch.setenv("CONSOLE_ENV", "production")
    config = base_config(servers)
    config.pop(missing)
    config.pop("CONSOLE_ENV", None)
    for key in ("SECRET_KEY", "INGEST_KEYS"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match=missing):
        create_app(config)


def test_production_with_explicit_secrets_sets_secure_cookies(servers, monkeypatch):
    monkeypatch.setenv("CONSOLE_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "x" * 64)
    monkeypatch.setenv("INGEST_KEYS", "prod-key-1")
    config = base_config(servers)
    for key in ("SECRET_KEY", "INGEST_KEYS"):
        config.pop(key)
    app = create_app(config)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["INGEST_KEY_SET"] == frozenset({"prod-key-1"})


def test_environment_overrides_defaults_and_test_dict_overrides_environment(servers, monkeypatch):
    monkeypatch.setenv("SLOW_QUERY_MS", "250")
    monkeypatch.setenv("MAIL_USE_TLS", "true")
    app = create_app(base_config(servers))
    assert app.config["SLOW_QUERY_MS"] == 250
    assert app.config["MAIL_USE_TLS"] is True
    app = create_app(base_config(servers, SLOW_QUERY_MS=5))
    assert app.config["SLOW_QUERY_MS"] == 5


def test_security_headers_on_pages_and_api(client):
    for path in ("/login", "/api/openapi.json", "/healthz"):
        headers = client.get(path).headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert "X-Powered-By" not in headers


def test_assets_are_served_locally(client):
    assert client.get("/static/vendor/htmx.min.js").status_code == 200
    plotly = client.get("/vendor/plotly.min.js")
    assert plotly.status_code == 200
    assert plotly.mimetype == "text/javascript"
    page = client.get("/login").get_data(as_text=True)
    assert "cdn" not in page.lower() and "https://" not in page
