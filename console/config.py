"""Configuration: defaults, then the environment (a .env file is read when present), then a test dict."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import load_dotenv

DEV_INGEST_KEY = "dev-ingest-key"

DEFAULTS = {
    "CONSOLE_ENV": "development",
    "SECRET_KEY": None,
    "MONGODB_URI": "mongodb://127.0.0.1:27017/console",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "MAIL_SERVER": "127.0.0.1",
    "MAIL_PORT": 1025,
    "MAIL_USERNAME": None,
    "MAIL_PASSWORD": None,
    "MAIL_USE_TLS": False,
    "MAIL_USE_SSL": False,
    "MAIL_DEFAULT_SENDER": "Community Console <no-reply@example.com>",
    "MAIL_TIMEOUT": 10,
    "MAIL_SUPPRESS_SEND": False,  # Flask-Mail would suppress under TESTING; tests talk to a real SMTP sink
    "MAIL_CLAIM_LEASE": 60,
    "MAIL_RECONCILE_INTERVAL": 60,
    "MAIL_RECONCILE_GRACE": 30,
    "MAIL_CHUNK_SIZE": 500,  # emails per delivery job (and SMTP connection); each job has fixed costs
    "MAIL_SLICE_SIZE": 50,
    "INGEST_KEYS": DEV_INGEST_KEY,
    "PUBLIC_BASE_URL": "http://127.0.0.1:5000",
    "TRUST_PROXY": 0,
    "MAILBOX_DIR": None,  # the dev SMTP sink's Maildir; enables the Mailbox page
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "INGEST_MAX_CONTENT_LENGTH": 8 * 1024 * 1024,
    "API_TOKEN_TTL_HOURS": 12,
    "LOGIN_RATE_LIMIT": "5 per minute",
    "TOKEN_RATE_LIMIT": "10 per minute",
    "INGEST_RATE_LIMIT": "600 per minute",
    "RATELIMIT_ENABLED": True,
    "SLOW_QUERY_MS": 100,
    "TELEMETRY_TTL_DAYS": 7,
    "TELEMETRY_SAMPLE_RATE": 1.0,
    "TELEMETRY_ENABLED": True,
    "TELEMETRY_FLUSH_SECONDS": 5,
    "TELEMETRY_FLUSH_EVERY": 500,
    "TELEMETRY_RESERVOIR": 1000,
    "CHURN_AFTER_DAYS": 30,
    "ANALYTICS_TIMEZONE": "UTC",  # IANA name: the day, week and month boundaries of every analytics answer
    "REACTIVATION_WINDOW_DAYS": 14,
    "CAMPAIGN_FREQUENCY_CAP_DAYS": 7,
    "MAIL_MAX_ATTEMPTS": 5,
    "MAIL_RETRY_INTERVALS": "10,30,120,600",
    "JOB_TIMEOUT": 600,
    "SEED_DEMO": 1,
    "WTF_CSRF_TIME_LIMIT": None,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    "REQUIRE_BROWSER": 0,
}

_BOOLS = {"MAIL_USE_TLS", "MAIL_USE_SSL", "RATELIMIT_ENABLED", "TELEMETRY_ENABLED", "MAIL_SUPPRESS_SEND"}
_INTS = {"MAIL_PORT", "MAX_CONTENT_LENGTH", "INGEST_MAX_CONTENT_LENGTH", "API_TOKEN_TTL_HOURS", "TRUST_PROXY",
         "SLOW_QUERY_MS", "TELEMETRY_TTL_DAYS", "CHURN_AFTER_DAYS", "REACTIVATION_WINDOW_DAYS",
         "CAMPAIGN_FREQUENCY_CAP_DAYS",
         "MAIL_MAX_ATTEMPTS", "JOB_TIMEOUT", "SEED_DEMO", "MAIL_TIMEOUT", "TELEMETRY_FLUSH_EVERY",
         "TELEMETRY_RESERVOIR", "MAIL_CLAIM_LEASE", "MAIL_RECONCILE_INTERVAL", "MAIL_RECONCILE_GRACE",
         "MAIL_CHUNK_SIZE", "MAIL_SLICE_SIZE"}
_FLOATS = {"TELEMETRY_SAMPLE_RATE", "TELEMETRY_FLUSH_SECONDS"}


class ConfigError(RuntimeError):
    """The configuration cannot run safely."""


def _coerce(key: str, value: str):
    if key in _BOOLS:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    if key in _INTS:
        return int(value)
    if key in _FLOATS:
        return float(value)
    return value


def load_config(app, test_config: dict | None = None) -> None:
    """Fill app.config from defaults, environment and the test dict, then check it can run."""
    env_file = Path(app.root_path).parent / ".env"
    if env_file.exists() and not (test_config or {}).get("TESTING"):
        load_dotenv(env_file, override=False)

    app.config.from_mapping(DEFAULTS)
    sources = {"SECRET_KEY": "default"}
    for key in DEFAULTS:
        if key in os.environ:
            app.config[key] = _coerce(key, os.environ[key])
            sources[key] = "environment"
    if test_config:
        app.config.update(test_config)
        sources.update({key: "test" for key in test_config})
    app.config["CONFIG_SOURCES"] = sources

    production = app.config["CONSOLE_ENV"] == "production"
    if production:
        missing = [key for key in ("SECRET_KEY", "INGEST_KEYS")
                   if sources.get(key) not in {"environment", "test"} or not app.config.get(key)]
        if missing:
            raise ConfigError(f"production needs explicit {', '.join(missing)} in the environment")
        app.config["SESSION_COOKIE_SECURE"] = True
        app.config["REMEMBER_COOKIE_SECURE"] = True
        app.config["PREFERRED_URL_SCHEME"] = "https"
    if not app.config.get("SECRET_KEY"):
        # Development only: a per-process key, so a stale cookie can never be forged with a known default.
        app.config["SECRET_KEY"] = _dev_secret(app)
        sources["SECRET_KEY"] = "generated"
    app.config["INGEST_KEY_SET"] = frozenset(
        key.strip() for key in str(app.config["INGEST_KEYS"] or "").split(",") if key.strip()
    )
    app.config["IS_PRODUCTION"] = production
    try:
        ZoneInfo(str(app.config["ANALYTICS_TIMEZONE"] or "UTC"))
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ConfigError(f"ANALYTICS_TIMEZONE {app.config['ANALYTICS_TIMEZONE']!r} is not an IANA time zone") \
            from error


def _dev_secret(app) -> str:
    """Keep a generated development key under var/ so sessions survive a restart of `make run`."""
    var = Path(app.root_path).parent / "var"
    key_file = var / "secret_key"
    if app.config.get("TESTING"):
        return secrets.token_urlsafe(32)
    try:
        if key_file.exists():
            return key_file.read_text().strip()
        var.mkdir(exist_ok=True)
        key = secrets.token_urlsafe(48)
        key_file.write_text(key)
        key_file.chmod(0o600)
        return key
    except OSError:
        return secrets.token_urlsafe(48)
