"""Security audit: Django's `check --deploy`, translated to Flask, plus this stack's own risks.

Header checks are verified live: a probe request goes through the whole app (in its own thread, so it gets a
fresh application context and never touches the caller's `g`).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from flask import current_app
from werkzeug.middleware.proxy_fix import ProxyFix

from console.accounts import Admin
from console.config import DEV_INGEST_KEY, ENVIRONMENTS, production_problems
from console.cors import parse_origins
from console.security import view_permission
from console.telemetry import PROBE_ENVIRON
from console.timeutil import utcnow

PASS, WARN, FAIL = "pass", "warn", "fail"
SEVERITY_WEIGHT = {"critical": 5, "high": 3, "medium": 2, "low": 1}
CREDIT = {PASS: 1.0, WARN: 0.5, FAIL: 0.0}
PASSWORD_MAX_AGE_DAYS = 90
HSTS_MIN_SECONDS = 31536000
WEAK_SECRET_WORDS = ("changeme", "change-me", "change_me", "secret-key", "secretkey", "dev-key", "devkey",
                     "insecure", "default", "example", "password", "your-secret")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def check(id: str, title: str, status: str, severity: str, detail: str, remediation: str) -> dict:
    return {"id": id, "title": title, "status": status, "severity": severity, "detail": detail,
            "remediation": remediation if status != PASS else ""}


# --- live probe ----------------------------------------------------------------------------------------------

def probe_responses(app) -> dict:
    """Headers of a page over HTTP and of an API response over HTTPS, as a client would see them."""
    host = urlsplit(app.config.get("PUBLIC_BASE_URL") or "").hostname or "localhost"

    def run():
        client = app.test_client()
        out = {}
        for name, path, scheme in (("page", "/login", "http"), ("api", "/api/openapi.json", "https")):
            response = client.get(path, base_url=f"{scheme}://{host}", environ_overrides={PROBE_ENVIRON: True})
            out[name] = {"status": response.status_code, "headers": response.headers}
            response.close()
        return out

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-probe") as pool:
        return pool.submit(run).result(timeout=30)


# --- individual checks ---------------------------------------------------------------------------------------

def secret_key_problems(value: str) -> list[str]:
    problems = []
    if len(value) < 32:
        problems.append(f"only {len(value)} characters (use at least 32)")
    if len(set(value)) < 12:
        problems.append("too few distinct characters")
    lowered = value.lower()
    if any(word in lowered for word in WEAK_SECRET_WORDS):
        problems.append("contains a well-known placeholder word")
    return problems


def _secret_key(config, production: bool) -> dict:
    value = str(config.get("SECRET_KEY") or "")
    source = config.get("CONFIG_SOURCES", {}).get("SECRET_KEY", "default")
    problems = secret_key_problems(value)
    remediation = ("Generate one with `python -c \"import secrets; print(secrets.token_urlsafe(48))\"` and set "
                   "SECRET_KEY in the environment (a secret manager in production).")
    if problems:
        return check("secret_key", "SECRET_KEY is strong and set explicitly", FAIL, "critical",
                     f"SECRET_KEY (from {source}) is weak: {'; '.join(problems)}.", remediation)
    if source == "generated":
        return check("secret_key", "SECRET_KEY is strong and set explicitly", FAIL if production else WARN, "high",
                     "SECRET_KEY is generated per machine for development; sessions break across hosts.", remediation)
    return check("secret_key", "SECRET_KEY is strong and set explicitly", PASS, "critical",
                 f"{len(value)} characters, set from the {source}.", remediation)


def _debug(app) -> dict:
    remediation = "Never run with FLASK_DEBUG/DEBUG or TESTING in production; unset them."
    if app.debug:
        return check("debug", "Debug mode is off", FAIL, "critical",
                     "Debug mode is on: tracebacks and the interactive debugger are exposed.", remediation)
    if app.testing:
        return check("debug", "Debug mode is off", WARN, "medium",
                     "TESTING is on: exceptions propagate instead of being handled.", remediation)
    return check("debug", "Debug mode is off", PASS, "critical", "Debug and testing modes are off.", remediation)


def _cookies(config, production: bool) -> list[dict]:
    secure = bool(config.get("SESSION_COOKIE_SECURE"))
    samesite = str(config.get("SESSION_COOKIE_SAMESITE") or "")
    return [
        check("session_cookie_secure", "Session cookie is Secure",
              PASS if secure else FAIL if production else WARN, "high",
              "The session cookie is only sent over HTTPS." if secure
              else "The session cookie is also sent over plain HTTP" + ("" if production else " (development)."),
              "Run with CONSOLE_ENV=production (sets SESSION_COOKIE_SECURE) behind HTTPS."),
        check("session_cookie_httponly", "Session cookie is HttpOnly",
              PASS if config.get("SESSION_COOKIE_HTTPONLY") else FAIL, "high",
              "Scripts cannot read the session cookie." if config.get("SESSION_COOKIE_HTTPONLY")
              else "Scripts can read the session cookie.", "Set SESSION_COOKIE_HTTPONLY=True."),
        check("session_cookie_samesite", "Session cookie has SameSite",
              PASS if samesite in {"Lax", "Strict"} else WARN, "medium", f"SameSite={samesite or 'unset'}.",
              "Set SESSION_COOKIE_SAMESITE to Lax or Strict."),
    ]


def _csrf(app) -> dict:
    enabled = app.config.get("WTF_CSRF_ENABLED", True) and "csrf" in app.extensions
    return check("csrf", "CSRF protection is enabled", PASS if enabled else FAIL, "high",
                 "Every state-changing form and htmx request carries a CSRF token (kept in the session cookie)."
                 if enabled else "CSRF protection is disabled.",
                 "Keep WTF_CSRF_ENABLED on and CSRFProtect initialised.")


def _headers(probes: dict, production: bool) -> list[dict]:
    """HTTPS (HSTS, the redirect) and the security headers of a page (of the API when the page redirected)."""
    page, api = probes["page"], probes["api"]
    checked = api if page["status"] >= 300 else page
    return _transport(page, api, production) + _response_headers(checked["headers"])


def _transport(page: dict, api: dict, production: bool) -> list[dict]:
    out = []
    hsts = api["headers"].get("Strict-Transport-Security", "")
    match = re.search(r"max-age=(\d+)", hsts)
    max_age = int(match.group(1)) if match else 0
    if max_age >= HSTS_MIN_SECONDS:
        status, detail = PASS, f"Strict-Transport-Security: {hsts}"
    else:
        status = FAIL if production else WARN
        detail = f"HSTS max-age is {max_age} s" if hsts else "No Strict-Transport-Security header over HTTPS"
        detail += "" if production else " (sent only in production)."
    out.append(check("hsts", "HTTP Strict Transport Security", status, "high", detail,
                     "Run with CONSOLE_ENV=production; Talisman sends HSTS for a year."))

    redirected = 300 <= page["status"] < 400 and str(page["headers"].get("Location", "")).startswith("https://")
    out.append(check("https_redirect", "Plain HTTP redirects to HTTPS",
                     PASS if redirected else FAIL if production else WARN, "high",
                     "HTTP requests are redirected to HTTPS." if redirected
                     else f"An HTTP request was answered with {page['status']}"
                          + ("" if production else " (redirects are enforced only in production)."),
                     "Run with CONSOLE_ENV=production (Talisman force_https) or redirect at the proxy."))
    return out


def _response_headers(headers_of: dict) -> list[dict]:
    out = []
    frame = headers_of.get("X-Frame-Options", "")
    csp = headers_of.get("Content-Security-Policy", "")
    frame_ok = frame.upper() == "DENY" or "frame-ancestors 'none'" in csp
    out.append(check("frame_options", "Clickjacking protection", PASS if frame_ok else FAIL, "medium",
                     f"X-Frame-Options: {frame or 'absent'}; frame-ancestors {'none' if frame_ok else 'unset'}.",
                     "Send X-Frame-Options: DENY and CSP frame-ancestors 'none'."))
    nosniff = headers_of.get("X-Content-Type-Options", "").lower() == "nosniff"
    out.append(check("content_type_nosniff", "X-Content-Type-Options: nosniff", PASS if nosniff else FAIL,
                     "medium", "Browsers do not sniff content types." if nosniff else "The header is missing.",
                     "Send X-Content-Type-Options: nosniff (Talisman does)."))
    referrer = headers_of.get("Referrer-Policy", "")
    strict = referrer in {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}
    out.append(check("referrer_policy", "Referrer-Policy", PASS if strict else WARN, "low",
                     f"Referrer-Policy: {referrer or 'absent'}.",
                     "Send Referrer-Policy: strict-origin-when-cross-origin."))
    script_src = re.search(r"script-src ([^;]*)", csp)
    unsafe = script_src and ("'unsafe-inline'" in script_src.group(1) or "'unsafe-eval'" in script_src.group(1))
    csp_ok = bool(csp) and script_src and not unsafe and "default-src" in csp
    out.append(check("csp", "Content-Security-Policy", PASS if csp_ok else FAIL if not csp else WARN, "high",
                     f"script-src {script_src.group(1) if script_src else 'unset'}" + (
                         "; scripts are served from this origin only." if csp_ok else "."),
                     "Send a CSP with default-src 'self' and script-src 'self' (no unsafe-inline/eval)."))
    server = headers_of.get("Server", "")
    leaks = [name for name in ("X-Powered-By",) if headers_of.get(name)]
    if re.search(r"\d", server) or "werkzeug" in server.lower() or "python" in server.lower():
        leaks.append(f"Server: {server}")
    out.append(check("server_header", "No server software leak", FAIL if leaks else PASS, "low",
                     f"Leaks: {', '.join(leaks)}." if leaks else f"Server: {server or 'absent'}; no X-Powered-By.",
                     "Strip X-Powered-By and version numbers from Server (the app and the proxy)."))
    return out


def _proxy(app, production: bool) -> list[dict]:
    hops = int(app.config.get("TRUST_PROXY") or 0)
    wsgi, fixed = app.wsgi_app, False
    for _ in range(10):
        if isinstance(wsgi, ProxyFix):
            fixed = True
            break
        wsgi = getattr(wsgi, "app", None) or getattr(wsgi, "wsgi_app", None)
        if wsgi is None:
            break
    if hops:
        proxy = check("proxy_fix", "ProxyFix matches TRUST_PROXY", PASS if fixed else FAIL, "medium",
                      f"TRUST_PROXY={hops}; ProxyFix {'is' if fixed else 'is not'} installed.",
                      "create_app installs ProxyFix when TRUST_PROXY is set; do not replace app.wsgi_app.")
    else:
        proxy = check("proxy_fix", "ProxyFix matches TRUST_PROXY", WARN if production else PASS, "low",
                      "TRUST_PROXY is not set: client addresses come from the socket"
                      + (" (behind a proxy, every client would share the proxy's rate limit)." if production else "."),
                      "Behind a reverse proxy set TRUST_PROXY to the number of proxies.")
    hosts = app.config.get("TRUSTED_HOSTS") or app.config.get("SERVER_NAME")
    trusted = check("trusted_hosts", "Host header is validated", PASS if hosts else WARN, "medium",
                    f"Accepted hosts: {hosts}." if hosts else "Any Host header is accepted (Django: ALLOWED_HOSTS).",
                    "Set TRUSTED_HOSTS (or SERVER_NAME) to the console's host names, or filter at the proxy.")
    return [proxy, trusted]


def _split_uri(uri: str) -> tuple[str, bool, list[str], dict]:
    parts = urlsplit(uri)
    netloc = parts.netloc
    has_user = "@" in netloc and bool(netloc.rsplit("@", 1)[0].split(":", 1)[0])
    hosts = [host.rsplit(":", 1)[0] if not host.endswith("]") else host
             for host in netloc.rsplit("@", 1)[-1].split(",") if host]
    options = {key.lower(): values[-1].lower() for key, values in parse_qs(parts.query).items()}
    return parts.scheme, has_user, hosts, options


def _mongodb(config, production: bool) -> list[dict]:
    scheme, has_user, hosts, options = _split_uri(str(config.get("MONGODB_URI") or ""))
    local = bool(hosts) and all(host in LOCAL_HOSTS for host in hosts)
    tls = scheme == "mongodb+srv" or options.get("tls") == "true" or options.get("ssl") == "true"
    insecure = options.get("tlsinsecure") == "true" or options.get("tlsallowinvalidcertificates") == "true"
    soft = WARN if (local or not production) else FAIL
    return [
        check("mongodb_auth", "MongoDB requires authentication", PASS if has_user else soft, "high",
              "MONGODB_URI carries credentials." if has_user
              else f"MONGODB_URI has no credentials ({'local server' if local else 'remote server'}).",
              "Enable access control on MongoDB and put a least-privilege user in MONGODB_URI."),
        check("mongodb_tls", "MongoDB connection uses TLS", PASS if tls and not insecure else soft, "high",
              ("TLS is on" + (" but certificates are not verified." if insecure else ".")) if tls
              else f"TLS is off ({'local server' if local else 'traffic crosses the network in clear'}).",
              "Add tls=true to MONGODB_URI (mongodb+srv:// implies it) and keep certificate checks on."),
    ]


def _redis(config, production: bool) -> dict:
    parts = urlsplit(str(config.get("REDIS_URL") or ""))
    local = (parts.hostname or "") in LOCAL_HOSTS or parts.scheme == "unix"
    has_password = bool(parts.password)
    status = PASS if has_password else WARN if (local or not production) else FAIL
    detail = ("REDIS_URL carries a password" if has_password else "REDIS_URL has no password") + (
        " and uses TLS." if parts.scheme == "rediss" else f" ({'local' if local else 'remote'} server, no TLS).")
    return check("redis_password", "Redis requires a password", status, "high", detail,
                 "Set requirepass (or ACL users) on Redis and use rediss://:password@host/0.")


def _ingest_keys(config) -> dict:
    keys = config.get("INGEST_KEY_SET") or frozenset()
    remediation = ("Set INGEST_KEYS to long random keys (`python -c \"import secrets; "
                   "print(secrets.token_urlsafe(32))\"`), one per sender, comma-separated.")
    if DEV_INGEST_KEY in keys:
        return check("dev_ingest_key", "Default development ingest key is not accepted", FAIL, "critical",
                     f"INGEST_KEYS still contains the published development key {DEV_INGEST_KEY!r}.", remediation)
    short = [key for key in keys if len(key) < 24]
    if not keys:
        return check("dev_ingest_key", "Default development ingest key is not accepted", WARN, "medium",
                     "No ingest key is configured; activity can only be sent with a bearer token.", remediation)
    if short:
        return check("dev_ingest_key", "Default development ingest key is not accepted", WARN, "medium",
                     f"{len(short)} of {len(keys)} ingest keys are shorter than 24 characters.", remediation)
    return check("dev_ingest_key", "Default development ingest key is not accepted", PASS, "critical",
                 f"{len(keys)} custom ingest key(s), none of them the development default.", remediation)


def _cors(config, production: bool) -> dict:
    title = "CORS allows only exact HTTPS origins"
    remediation = ("List the platform's exact origins (https://app.example.com) in CORS_ORIGINS and "
                   "INGEST_CORS_ORIGINS; never `*` and never plain http:// in production.")
    origins, refused = set(), []
    for key in ("CORS_ORIGINS", "INGEST_CORS_ORIGINS"):
        found, bad = parse_origins(config.get(key))
        origins |= found
        refused += [f"{key}: {entry}" for entry in bad]
    plain = sorted(origin for origin in origins if origin.startswith("http://"))
    wildcard = [entry for entry in refused if "*" in entry]
    if wildcard or (plain and production):
        problems = wildcard + [f"plain HTTP origin {origin}" for origin in plain]
        return check("cors_origins", title, FAIL if production else WARN, "high",
                     "; ".join(problems) + ". Wildcards are ignored; plain HTTP lets a network attacker "
                     "act as the allowed origin.", remediation)
    if refused:
        return check("cors_origins", title, WARN, "medium", "Ignored: " + "; ".join(refused) + ".", remediation)
    if not origins:
        return check("cors_origins", title, PASS, "high",
                     "No cross-origin access: only this console's own pages can call the API.", remediation)
    return check("cors_origins", title, PASS, "high",
                 f"{len(origins)} exact origin(s), without credentials: {', '.join(sorted(origins))}.", remediation)


def _admin_passwords() -> dict:
    cutoff = utcnow() - timedelta(days=PASSWORD_MAX_AGE_DAYS)
    stale = Admin.objects(active=True).filter(
        __raw__={"$or": [{"password_changed_at": {"$lt": cutoff}}, {"password_changed_at": None}]}
    ).only("email")
    emails = [admin.email for admin in stale]
    if not emails:
        return check("admin_passwords", "Admins changed their password recently", PASS, "medium",
                     f"Every active admin changed their password within {PASSWORD_MAX_AGE_DAYS} days.", "")
    shown = ", ".join(emails[:5]) + (f" and {len(emails) - 5} more" if len(emails) > 5 else "")
    return check("admin_passwords", "Admins changed their password recently", WARN, "medium",
                 f"{len(emails)} active admin(s) have not changed their password in {PASSWORD_MAX_AGE_DAYS} days: "
                 f"{shown}.", "Ask them to set a new password (`flask --app wsgi create-admin EMAIL --role ...`).")


def unguarded_routes(app) -> tuple[list[str], list[str]]:
    """(routes without any access decision, public routes)."""
    missing, public = [], []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        decision = view_permission(app.view_functions[rule.endpoint])
        if decision is None:
            missing.append(rule.rule)
        elif decision == "@public":
            public.append(rule.rule)
    return sorted(set(missing)), sorted(set(public))


def _routes(app) -> dict:
    missing, public = unguarded_routes(app)
    if missing:
        return check("route_permissions", "Every route declares a permission", FAIL, "critical",
                     f"{len(missing)} route(s) without a permission: {', '.join(missing[:10])}.",
                     "Decorate each view with permission_required(...), login_only or public.")
    return check("route_permissions", "Every route declares a permission", PASS, "critical",
                 f"Every route is guarded; {len(public)} are deliberately public (probes, login, tracking links).", "")


def rate_limited_endpoints(app) -> dict[str, bool | None]:
    """Whether login, token and ingestion views carry a rate limit (None: the view does not exist)."""
    from flask_limiter.util import get_qualified_name

    from console.extensions import limiter

    marked = getattr(limiter, "_marked_for_limiting", set())
    ingest = next((rule.endpoint for rule in app.url_map.iter_rules()
                   if rule.rule.endswith("/engagement/track-activity")), None)
    found: dict[str, bool | None] = {}
    for label, endpoint in (("login", "auth.login"), ("token", "auth.create_token"), ("ingestion", ingest)):
        view = app.view_functions.get(endpoint) if endpoint else None
        found[label] = None if view is None else get_qualified_name(view) in marked
    return found


def _rate_limits(app) -> dict:
    found = rate_limited_endpoints(app)
    enabled = app.config.get("RATELIMIT_ENABLED", True)
    missing = [name for name, limited in found.items() if limited is False]
    absent = [name for name, limited in found.items() if limited is None]
    if not enabled or missing:
        detail = "Rate limiting is disabled." if not enabled else f"No rate limit on: {', '.join(missing)}."
        return check("rate_limits", "Login, token and ingestion are rate limited", FAIL, "high", detail,
                     "Keep RATELIMIT_ENABLED on and decorate these views with limiter.limit(...).")
    detail = "Rate limited: " + ", ".join(name for name, limited in found.items() if limited)
    detail += f" (not installed here: {', '.join(absent)})." if absent else "."
    return check("rate_limits", "Login, token and ingestion are rate limited", PASS, "high", detail, "")


def _body_size(config) -> dict:
    limit = config.get("MAX_CONTENT_LENGTH")
    ok = bool(limit) and int(limit) <= 16 * 1024 * 1024
    return check("request_size", "Request bodies are size limited", PASS if ok else FAIL, "medium",
                 f"MAX_CONTENT_LENGTH is {limit} bytes." if limit else "Request bodies are unlimited.",
                 "Set MAX_CONTENT_LENGTH (1 MiB default; ingestion raises its own limit).")


def _metrics_guard(config) -> dict:
    token = str(config.get("METRICS_TOKEN") or "")
    allow = [e.strip() for e in str(config.get("METRICS_ALLOW") or "").split(",") if e.strip()]
    remediation = ("Set METRICS_TOKEN to a long random value (the scraper's bearer token) and/or METRICS_ALLOW to "
                   "the scraper's addresses; never 0.0.0.0/0.")
    title = "/metrics is guarded"
    if any(entry in ("0.0.0.0/0", "::/0") for entry in allow):
        return check("metrics_guard", title, FAIL, "medium", "METRICS_ALLOW admits every address.", remediation)
    if token and len(token) < 24:
        return check("metrics_guard", title, WARN, "medium", "METRICS_TOKEN is shorter than 24 characters.",
                     remediation)
    if not token and not allow:
        return check("metrics_guard", title, PASS, "medium", "/metrics is off (neither METRICS_TOKEN nor "
                     "METRICS_ALLOW is set).", remediation)
    return check("metrics_guard", title, PASS, "medium", "Scrapes need " + " or ".join(
        (["the bearer token"] if token else []) + ([f"an address in {', '.join(allow)}"] if allow else [])) + ".",
        remediation)


# --- the audit -----------------------------------------------------------------------------------------------

def run_checks(app=None) -> list[dict]:
    app = app or current_app._get_current_object()
    config = app.config
    production = bool(config.get("IS_PRODUCTION"))
    probes = probe_responses(app)
    return [
        _secret_key(config, production), _debug(app), *_cookies(config, production), _csrf(app),
        *_headers(probes, production), *_proxy(app, production), *_mongodb(config, production),
        _redis(config, production), _ingest_keys(config), _cors(config, production), _admin_passwords(),
        _routes(app), _rate_limits(app), _body_size(config), _metrics_guard(config), _environment(config),
        _production_settings(config, production), _trusted_ingest_keys(config), _tracking_tokens(config),
    ]


def _environment(config) -> dict:
    env = str(config.get("CONSOLE_ENV") or "")
    known = env in ENVIRONMENTS
    return check("console_env", "CONSOLE_ENV names a known environment", PASS if known else FAIL, "high",
                 f"CONSOLE_ENV={env!r}" + ("." if known else f"; only {', '.join(ENVIRONMENTS)} are known."),
                 "Set CONSOLE_ENV=production on servers (any other value would run in development mode).")


def _production_settings(config, production: bool) -> dict:
    problems = production_problems(config)
    remediation = "Set a SECRET_KEY of at least 32 random bytes and replace every development default."
    if not problems:
        return check("production_settings", "No short SECRET_KEY and no development defaults", PASS, "critical",
                     "SECRET_KEY is long enough and no setting holds a development default.", remediation)
    return check("production_settings", "No short SECRET_KEY and no development defaults",
                 FAIL if production else WARN, "critical",
                 "; ".join(problems) + ("." if production else " (production refuses to start with these)."),
                 remediation)


def _trusted_ingest_keys(config) -> dict:
    trusted = config.get("INGEST_TRUSTED_KEY_SET") or frozenset()
    stray = trusted - (config.get("INGEST_KEY_SET") or frozenset())
    remediation = ("List in INGEST_TRUSTED_KEYS only the ingest keys of systems allowed to change members' "
                   "email addresses (each also in INGEST_KEYS).")
    if DEV_INGEST_KEY in trusted or stray:
        return check("trusted_ingest_keys", "Only named ingest keys may change member emails", FAIL, "high",
                     "INGEST_TRUSTED_KEYS holds the development key or keys missing from INGEST_KEYS.", remediation)
    return check("trusted_ingest_keys", "Only named ingest keys may change member emails", PASS, "high",
                 f"{len(trusted)} trusted ingest key(s); other keys cannot change a member's email.", remediation)


def _tracking_tokens(config) -> dict:
    days = int(config.get("TRACKING_TOKEN_MAX_AGE_DAYS") or 0)
    ok = 0 < days <= 400
    return check("tracking_token_age", "Tracking links expire", PASS if ok else WARN, "low",
                 f"Open and click links stop working after {days} days." if ok
                 else f"TRACKING_TOKEN_MAX_AGE_DAYS={days}: tracking links live (almost) forever.",
                 "Set TRACKING_TOKEN_MAX_AGE_DAYS between 1 and 400 (default 180).")


def score(checks: list[dict]) -> int:
    total = sum(SEVERITY_WEIGHT[c["severity"]] for c in checks)
    earned = sum(SEVERITY_WEIGHT[c["severity"]] * CREDIT[c["status"]] for c in checks)
    return round(100 * earned / total) if total else 100


def security_audit() -> dict:
    checks = run_checks()
    order = {FAIL: 0, WARN: 1, PASS: 2}
    checks.sort(key=lambda c: (order[c["status"]], -SEVERITY_WEIGHT[c["severity"]]))
    summary = {status: sum(1 for c in checks if c["status"] == status) for status in (PASS, WARN, FAIL)}
    return {"score": score(checks), "summary": summary, "checks": checks}
