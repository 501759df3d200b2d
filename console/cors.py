"""CORS for the platform's frontend: exact origins on `/api/...` only, never with credentials.

`CORS_ORIGINS` may call every JSON endpoint (with a bearer token or an ingest key; cookies are never honoured
cross-origin, so no `Access-Control-Allow-Credentials`). `INGEST_CORS_ORIGINS` may additionally call the
endpoints that take an ingest key (activity tracking). Anything else — pages, static files, other origins —
gets no CORS headers at all, so the browser keeps the same-origin policy.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request

ALLOW_HEADERS = ("Authorization", "Content-Type", "X-Ingest-Key")
EXPOSE_HEADERS = "Retry-After, Content-Disposition"
_IGNORED_METHODS = {"HEAD", "OPTIONS"}


def parse_origins(value) -> tuple[frozenset[str], list[str]]:
    """(exact origins, entries refused and why). `*`, paths and other schemes are refused, never widened."""
    origins, refused = set(), []
    for raw in str(value or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        normal = entry.rstrip("/").lower()
        parts = urlsplit(normal)
        if "*" in entry:
            refused.append(f"{entry} (wildcards are not allowed; list exact origins)")
        elif parts.scheme not in {"http", "https"} or not parts.hostname or "@" in parts.netloc \
                or parts.path or parts.query or parts.fragment:
            refused.append(f"{entry} (an origin is scheme://host[:port], nothing more)")
        else:
            origins.add(f"{parts.scheme}://{parts.netloc}")
    return frozenset(origins), refused


def _config(app) -> tuple[frozenset[str], frozenset[str]]:
    api, _ = parse_origins(app.config.get("CORS_ORIGINS"))
    ingest, _ = parse_origins(app.config.get("INGEST_CORS_ORIGINS"))
    return api, ingest


def _takes_ingest_key(endpoint: str | None) -> bool:
    view = current_app.view_functions.get(endpoint) if endpoint else None
    return bool(getattr(view, "__ingest_key__", False))


def allowed_origin(origin: str | None, endpoint: str | None = None) -> bool:
    """True when `origin` may call `endpoint` (default: the current request's) cross-origin."""
    if not origin or not request.path.startswith("/api/"):
        return False
    api, ingest = current_app.extensions["cors"]
    return origin in api or (origin in ingest and _takes_ingest_key(endpoint or request.endpoint))


def beacon_origin_ok() -> bool:
    """A key sent in the query (sendBeacon cannot set headers) skips the browser's preflight, so the origin is
    checked here: no Origin (a server) or the console itself is fine, another origin must be allowed."""
    origin = request.headers.get("Origin")
    return not origin or origin == request.host_url.rstrip("/") or allowed_origin(origin)


def _preflight() -> Response | None:
    if request.method != "OPTIONS" or not request.path.startswith("/api/") or request.url_rule is None:
        return None
    wanted = request.headers.get("Access-Control-Request-Method")
    if not wanted:
        return None
    response = Response(status=204)
    response.headers["Vary"] = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    origin = request.headers.get("Origin")
    adapter = current_app.url_map.bind_to_environ(request.environ)
    methods = sorted(set(adapter.allowed_methods()) - _IGNORED_METHODS)  # a path's methods may be several rules
    asked = {h.strip().lower() for h in request.headers.get("Access-Control-Request-Headers", "").split(",")
             if h.strip()}
    if wanted.upper() not in methods or not asked <= {h.lower() for h in ALLOW_HEADERS}:
        return response  # no CORS headers: the browser refuses the call
    endpoint, _ = adapter.match(method=wanted.upper())
    if not allowed_origin(origin, endpoint):
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
    response.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOW_HEADERS)
    response.headers["Access-Control-Max-Age"] = str(current_app.config["CORS_MAX_AGE"])
    return response


def _decorate(response: Response) -> Response:
    if not request.path.startswith("/api/"):
        return response
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if request.method != "OPTIONS" and allowed_origin(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    return response


def init_app(app: Flask) -> None:
    """Answer preflights before auth, CSRF and rate limits run; decorate every `/api` answer, errors too."""
    app.extensions["cors"] = _config(app)
    app.before_request(_preflight)
    app.after_request(_decorate)
