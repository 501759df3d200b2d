"""The Community Console: Flask app factory."""

from __future__ import annotations

import logging
from datetime import date, datetime

from bson import ObjectId
from flask import Flask, g, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from console.config import load_config
from console.timeutil import isoformat

CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": ["'self'", "'unsafe-inline'"],  # plotly.js sets inline styles on its SVG
    "img-src": ["'self'", "data:"],
    "font-src": "'self'",
    "connect-src": "'self'",
    "frame-src": "'self'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
    "base-uri": "'self'",
    "object-src": "'none'",
}


class ConsoleJSONProvider(DefaultJSONProvider):
    """ISO 8601 UTC with Z for times, strings for ids."""

    sort_keys = False

    @staticmethod
    def default(value):
        if isinstance(value, datetime):
            return isoformat(value)
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, ObjectId):
            return str(value)
        if isinstance(value, (set, frozenset)):
            return sorted(value)
        return DefaultJSONProvider.default(value)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: config → extensions → blueprints → errors → CLI."""
    app = Flask(__name__)
    app.json_provider_class = ConsoleJSONProvider
    app.json = ConsoleJSONProvider(app)
    load_config(app, test_config)
    logging.basicConfig(level=app.config.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if app.config["TRUST_PROXY"]:
        hops = int(app.config["TRUST_PROXY"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)

    @app.before_request
    def _fresh_request_globals():
        # g belongs to the app context, which a request reuses when one is already pushed (tests, CLI
        # tools): start every request without a previous request's user or identity.
        g.__dict__.clear()

    from console import cors

    cors.init_app(app)  # before auth, CSRF and rate limits, so a preflight never meets them
    _init_extensions(app)

    from console import blueprints, cli, errors

    blueprints.register_all(app)
    errors.init_app(app)
    cli.init_app(app)
    return app


def _init_extensions(app: Flask) -> None:
    from console import audit, db, queues, security, telemetry
    from console.extensions import htmx, mail

    telemetry.init_app(app)  # registers its command listener, which the Mongo client must be created with
    db.init_app(app)
    queues.init_app(app)
    security.init_app(app)
    audit.init_app(app)
    mail.init_app(app)
    htmx.init_app(app)
    _init_csrf(app)
    _init_limiter(app)
    _init_headers(app)


def _init_csrf(app: Flask) -> None:
    from console import security
    from console.extensions import csrf

    app.config["WTF_CSRF_CHECK_DEFAULT"] = False  # checked below, so header-authenticated API calls are exempt
    app.config.setdefault("WTF_CSRF_HEADERS", ["X-CSRFToken", "X-CSRF-Token"])
    csrf.init_app(app)

    @app.before_request
    def _csrf_protect():
        if request.method in {"GET", "HEAD", "OPTIONS", "TRACE"} or not app.config.get("WTF_CSRF_ENABLED", True):
            return
        if request.routing_exception is not None:  # a 404/405 answers as such, not as a CSRF failure
            return
        view = app.view_functions.get(request.endpoint)
        if getattr(view, "__csrf_exempt__", False) or security.csrf_exempt_request():
            return
        csrf.protect()


def _init_limiter(app: Flask) -> None:
    from console.extensions import limiter

    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["REDIS_URL"])
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 1, "socket_timeout": 1})
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "console-limits")
    limiter.init_app(app)


def _init_headers(app: Flask) -> None:
    """HTTPS, HSTS, CSP and the other security headers (Talisman); no server banner; API answers not cached."""
    from console.extensions import talisman

    production = app.config["IS_PRODUCTION"]
    talisman.init_app(
        app,
        force_https=production and not app.config.get("TESTING"),
        strict_transport_security=production,
        strict_transport_security_max_age=31536000,
        session_cookie_secure=production,
        session_cookie_http_only=True,
        content_security_policy=CSP,
        frame_options="DENY",
        referrer_policy="strict-origin-when-cross-origin",
        permissions_policy={"geolocation": "()", "camera": "()", "microphone": "()"},
        x_content_type_options=True,
    )

    @app.after_request
    def _strip_server_headers(response):
        response.headers.pop("X-Powered-By", None)
        response.headers["Server"] = "console"
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
