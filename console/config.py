"""Configuration: defaults, then the environment (a .env file is read when present), then a test dict."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import load_dotenv
from flask import current_app

DEV_INGEST_KEY = "dev-ingest-key"
ENVIRONMENTS = ("development", "production")
MIN_SECRET_KEY_BYTES = 32
# Values that are public (in this repository) and must never be what production runs with.
DEV_PUBLIC_BASE_URL = "http://127.0.0.1:5000"
DEVELOPMENT_DEFAULTS = {"INGEST_KEYS": DEV_INGEST_KEY, "INGEST_TRUSTED_KEYS": DEV_INGEST_KEY,
                        "PUBLIC_BASE_URL": DEV_PUBLIC_BASE_URL}

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
    # delivery reports (communication/hooks.py): an empty setting turns that provider's webhook off (404)
    "MAIL_WEBHOOK_SECRET": "",
    "SENDGRID_WEBHOOK_PUBLIC_KEY": "",  # base64 DER, as SendGrid shows it
    "MAILGUN_WEBHOOK_SIGNING_KEY": "",
    # bounce reports without a provider: VERP return path and the mailbox the reports land in (bounces.py)
    "MAIL_BOUNCE_ADDRESS": "",  # e.g. bounces@example.org → MAIL FROM bounces+<token>@example.org
    "BOUNCE_IMAP_HOST": "",
    "BOUNCE_IMAP_PORT": 993,
    "BOUNCE_IMAP_SSL": True,
    "BOUNCE_IMAP_USER": "",
    "BOUNCE_IMAP_PASSWORD": "",
    "BOUNCE_IMAP_FOLDER": "INBOX",
    "BOUNCE_IMAP_INTERVAL": 300,
    # SMS (communication/sms.py): "log" in development, "twilio" for Twilio's Messages API
    "SMS_PROVIDER": "log",
    "SMS_DEFAULT_REGION": "US",  # how numbers without a country code are read
    "TWILIO_ACCOUNT_SID": "",
    "TWILIO_AUTH_TOKEN": "",
    "TWILIO_FROM": "",
    "TWILIO_API_BASE": "https://api.twilio.com",
    "PREFERENCES_LINK_DAYS": 365,  # how long the preference-center link in an email keeps working
    "INGEST_KEYS": DEV_INGEST_KEY,
    "INGEST_TRUSTED_KEYS": "",  # ingest keys allowed to change a member's email through traits
    "TRACKING_TOKEN_MAX_AGE_DAYS": 180,  # open/click links in older mail stop counting and redirecting
    "TRACKING_DEDUP_SECONDS": 10,  # repeated hits on one tracking link within this window count once
    "TRACKING_RATE_LIMIT": "120 per minute",  # tracking hits per client IP
    "PUBLIC_BASE_URL": DEV_PUBLIC_BASE_URL,
    "CORS_ORIGINS": "",  # exact origins (comma-separated) allowed to call /api cross-origin; none by default
    "INGEST_CORS_ORIGINS": "",  # origins that may additionally send activity (track.js on the platform's pages)
    "CORS_MAX_AGE": 3600,  # seconds a browser may cache a preflight answer
    "TRACKING_INGEST_KEY": "",  # which of INGEST_KEYS the Install tracking page shows (default: the first)
    "TRUST_PROXY": 0,
    "MAILBOX_DIR": None,  # the dev SMTP sink's Maildir; enables the Mailbox page
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "INGEST_MAX_CONTENT_LENGTH": 8 * 1024 * 1024,
    "API_TOKEN_TTL_HOURS": 12,
    "LOGIN_RATE_LIMIT": "5 per minute",  # failed sign-ins per account
    "TOKEN_RATE_LIMIT": "10 per minute",  # failed token requests per account
    "AUTH_IP_RATE_LIMIT": "30 per minute",  # failed sign-ins and token requests per client IP
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
    # who folds stored events into rollups and day aggregates: "worker" (track-activity stores and answers; the
    # worker folds every ENGAGEMENT_FOLD_INTERVAL seconds) or "request" (each request folds its own batch)
    "ENGAGEMENT_FOLD": "worker",
    "ENGAGEMENT_FOLD_INTERVAL": 1.0,
    "ENGAGEMENT_WARM_INTERVAL": 60,  # seconds between the worker's checks that the dashboards' frozen answers exist
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
    "METRICS_TOKEN": None,  # bearer token for GET /metrics
    "METRICS_ALLOW": "",  # comma-separated IPs or CIDRs allowed to scrape /metrics without the token
    "METRICS_CACHE_SECONDS": 5,
    "PROMETHEUS_MULTIPROC_DIR": None,  # read by prometheus_client from the environment at import
    "ALERT_INTERVAL": 60,  # seconds between alert evaluations
    "CONTENT_PUBLISH_INTERVAL": 60,  # seconds between runs publishing scheduled posts and events (0: off)
    "ALERT_WEBHOOK_URL": None,
    "ALERT_WEBHOOK_SECRET": None,
    "BACKUP_MAX_AGE_HOURS": 24,
    "MAIL_DKIM_SELECTOR": None,  # DKIM key at <selector>._domainkey.<sender domain>, checked by the checklist
    "DNS_RESOLVER": None,  # "host[:port]" for the checklist's DNS lookups; the system resolver when unset
    "DNS_TIMEOUT": 2.0,
    "RAW_EVENT_TTL_DAYS": 0,  # 0: raw activity events are kept; aggregates keep history either way
    "REQUIRE_2FA_ROLES": None,  # comma-separated roles; unset: super_admin,admin in production, none otherwise
    "TWOFA_RATE_LIMIT": "5 per 5 minutes",  # failed second-factor codes per account
    "TWOFA_IP_RATE_LIMIT": "20 per 5 minutes",  # failed second-factor codes per client IP
    "TWOFA_PENDING_SECONDS": 300,  # how long the password step stays valid while the code is asked for
}

_BOOLS = {"MAIL_USE_TLS", "MAIL_USE_SSL", "RATELIMIT_ENABLED", "TELEMETRY_ENABLED", "MAIL_SUPPRESS_SEND",
          "BOUNCE_IMAP_SSL"}
_INTS = {"MAIL_PORT", "MAX_CONTENT_LENGTH", "INGEST_MAX_CONTENT_LENGTH", "API_TOKEN_TTL_HOURS", "TRUST_PROXY",
         "SLOW_QUERY_MS", "TELEMETRY_TTL_DAYS", "CHURN_AFTER_DAYS", "REACTIVATION_WINDOW_DAYS",
         "CAMPAIGN_FREQUENCY_CAP_DAYS", "CONTENT_PUBLISH_INTERVAL",
         "MAIL_MAX_ATTEMPTS", "JOB_TIMEOUT", "SEED_DEMO", "MAIL_TIMEOUT", "TELEMETRY_FLUSH_EVERY",
         "TELEMETRY_RESERVOIR", "MAIL_CLAIM_LEASE", "MAIL_RECONCILE_INTERVAL", "MAIL_RECONCILE_GRACE",
         "MAIL_CHUNK_SIZE", "MAIL_SLICE_SIZE", "CORS_MAX_AGE", "ALERT_INTERVAL", "BACKUP_MAX_AGE_HOURS",
         "RAW_EVENT_TTL_DAYS", "TRACKING_TOKEN_MAX_AGE_DAYS", "TRACKING_DEDUP_SECONDS", "BOUNCE_IMAP_PORT",
         "BOUNCE_IMAP_INTERVAL", "PREFERENCES_LINK_DAYS", "TWOFA_PENDING_SECONDS", "ENGAGEMENT_WARM_INTERVAL"}
_FLOATS = {"ENGAGEMENT_FOLD_INTERVAL", "TELEMETRY_SAMPLE_RATE", "TELEMETRY_FLUSH_SECONDS", "METRICS_CACHE_SECONDS",
           "DNS_TIMEOUT"}


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

    if app.config["CONSOLE_ENV"] not in ENVIRONMENTS:
        raise ConfigError(f"CONSOLE_ENV must be one of {', '.join(ENVIRONMENTS)}, not {app.config['CONSOLE_ENV']!r}")
    production = app.config["CONSOLE_ENV"] == "production"
    if production:
        missing = [key for key in ("SECRET_KEY", "INGEST_KEYS")
                   if sources.get(key) not in {"environment", "test"} or not app.config.get(key)]
        if missing:
            raise ConfigError(f"production needs explicit {', '.join(missing)} in the environment")
        problems = production_problems(app.config)
        if problems:
            raise ConfigError("production refuses to start: " + "; ".join(problems))
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
    app.config["INGEST_TRUSTED_KEY_SET"] = frozenset(
        key.strip() for key in str(app.config.get("INGEST_TRUSTED_KEYS") or "").split(",") if key.strip()
    )
    app.config["IS_PRODUCTION"] = production
    try:
        ZoneInfo(str(app.config["ANALYTICS_TIMEZONE"] or "UTC"))
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ConfigError(f"ANALYTICS_TIMEZONE {app.config['ANALYTICS_TIMEZONE']!r} is not an IANA time zone") \
            from error
    if app.config["ENGAGEMENT_FOLD"] not in ("worker", "request"):
        raise ConfigError(f"ENGAGEMENT_FOLD must be 'worker' or 'request', not {app.config['ENGAGEMENT_FOLD']!r}")
    parse_intervals(app.config["MAIL_RETRY_INTERVALS"])  # a malformed value stops the start, not the first retry


@lru_cache(maxsize=8)
def parse_intervals(value) -> tuple[int, ...]:
    """MAIL_RETRY_INTERVALS ("10,30,120" or a tuple) as seconds; each value is parsed once."""
    parts = value if isinstance(value, tuple) else str(value or "").split(",")
    try:
        seconds = tuple(int(str(part).strip()) for part in parts if str(part).strip())
    except ValueError:
        raise ConfigError(f"MAIL_RETRY_INTERVALS must be comma-separated seconds, not {value!r}") from None
    if any(s < 0 for s in seconds):
        raise ConfigError("MAIL_RETRY_INTERVALS cannot be negative")
    return seconds or (60,)


def setting(name: str) -> int:
    """An integer setting of the running app (its default is in DEFAULTS; the environment overrides it)."""
    return int(current_app.config[name])


def _keys(value) -> set[str]:
    return {key.strip() for key in str(value or "").split(",") if key.strip()}


def production_problems(config) -> list[str]:
    """What makes these settings unfit for production: a short SECRET_KEY or a public development default."""
    problems = []
    secret = str(config.get("SECRET_KEY") or "")
    if len(secret.encode()) < MIN_SECRET_KEY_BYTES:
        problems.append(f"SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes (it has {len(secret.encode())})")
    for key, default in DEVELOPMENT_DEFAULTS.items():
        if default in _keys(config.get(key)):
            problems.append(f"{key} holds the development default {default!r}")
    return problems


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
