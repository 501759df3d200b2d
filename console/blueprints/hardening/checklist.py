"""Production checklist: every item verified against the running system, not a static list."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from flask import current_app

from console import db
from console.blueprints.hardening import health
from console.blueprints.hardening.security_audit import FAIL, PASS, WARN, run_checks
from console.telemetry.models import TELEMETRY_COLLECTIONS

_RANK = {PASS: 0, WARN: 1, FAIL: 2}


def item(id: str, title: str, status: str, detail: str) -> dict:
    return {"id": id, "title": title, "status": status, "detail": detail}


def _from_checks(id: str, title: str, checks: list[dict]) -> dict:
    """One item summarizing audit checks: the worst status, with the details of the ones not passing."""
    status = max((c["status"] for c in checks), key=_RANK.__getitem__, default=PASS)
    failing = [c for c in checks if c["status"] != PASS]
    detail = " ".join(c["detail"] for c in (failing or checks))
    return item(id, title, status, detail)


def missing_indexes() -> dict[str, list[str]]:
    """Declared indexes (model meta) that the database does not have, by collection."""
    missing: dict[str, list[str]] = {}
    for cls in db.all_documents():
        existing = {tuple(tuple(k) for k in spec["key"])
                    for spec in cls._get_collection().index_information().values()}
        for spec in cls._meta.get("index_specs") or []:
            key = tuple((field, direction) for field, direction in spec["fields"])
            if key not in existing:
                missing.setdefault(cls._get_collection_name(), []).append(
                    "_".join(f"{field}_{direction}" for field, direction in key))
    return missing


def ttl_status() -> dict[str, bool]:
    out = {}
    database = db.get_db()
    for name in sorted(TELEMETRY_COLLECTIONS):
        info = database[name].index_information() if name in database.list_collection_names() else {}
        out[name] = any("expireAfterSeconds" in spec for spec in info.values())
    return out


def _dependencies(root: Path) -> list[dict]:
    requirements = root / "requirements.txt"
    if not requirements.exists():
        return [item("dependencies.pinned", "Dependencies are pinned", FAIL, "requirements.txt is missing.")]
    unpinned, drift = [], []
    for raw in requirements.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)\s*==\s*([^\s;]+)", line)
        if not match:
            unpinned.append(line)
            continue
        name, pinned = re.sub(r"\[.*\]", "", match.group(1)), match.group(2)
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            drift.append(f"{name} not installed")
            continue
        if installed != pinned:
            drift.append(f"{name} {installed} (pinned {pinned})")
    if unpinned:
        pinned_item = item("dependencies.pinned", "Dependencies are pinned", FAIL,
                           f"Not pinned with ==: {', '.join(unpinned)}.")
    elif drift:
        pinned_item = item("dependencies.pinned", "Dependencies are pinned", WARN,
                           f"Installed versions differ from the pins: {', '.join(drift)}.")
    else:
        pinned_item = item("dependencies.pinned", "Dependencies are pinned", PASS,
                           "Every runtime requirement is pinned with == and installed at that version.")
    try:
        metadata.version("pip-audit")
        vulns = item("dependencies.vulnerabilities", "Known-vulnerable versions", WARN,
                     "pip-audit is installed but needs the network for its advisory data; run `pip-audit -r "
                     "requirements.txt` in CI.")
    except metadata.PackageNotFoundError:
        vulns = item("dependencies.vulnerabilities", "Known-vulnerable versions", WARN,
                     "Not checked: no offline vulnerability database is available here. Run `pip-audit -r "
                     "requirements.txt` (or your registry's scanner) in CI.")
    return [pinned_item, vulns]


def _backups(root: Path) -> dict:
    readme = root / "README.md"
    text = readme.read_text() if readme.exists() else ""
    documented = bool(re.search(r"mongodump|back ?up", text, re.IGNORECASE))
    return item("backups.documented", "Backups are documented", PASS if documented else FAIL,
                "README.md explains how to back up MongoDB." if documented
                else "No backup procedure found in README.md.")


def _observability(app) -> dict:
    telemetry = app.extensions.get("telemetry")
    listeners = db.get_db().client.options.event_listeners or []
    problems = []
    if telemetry is None or not telemetry.enabled:
        problems.append("request telemetry is off")
    elif telemetry.listener not in listeners:
        problems.append("the slow-command listener is not attached to the MongoDB client")
    if "telemetry_signal_handler" not in app.extensions:
        problems.append("errors are not captured")
    if problems:
        return item("observability", "Telemetry, errors and slow queries are recorded", FAIL, "; ".join(problems) + ".")
    return item("observability", "Telemetry, errors and slow queries are recorded", PASS,
                f"Request timings, error groups and commands slower than {app.config.get('SLOW_QUERY_MS')} ms are "
                f"recorded for {app.config.get('TELEMETRY_TTL_DAYS')} days.")


def production_checklist() -> dict:
    app = current_app._get_current_object()
    root = Path(app.root_path).parent
    checks = {c["id"]: c for c in run_checks(app)}

    def pick(*ids):
        return [checks[i] for i in ids if i in checks]

    items = [
        _from_checks("config.secret_key", "Secret key is strong and explicit", pick("secret_key")),
        _from_checks("config.debug", "Debug is off", pick("debug")),
        _from_checks("config.hosts", "Hosts and proxy are configured", pick("trusted_hosts", "proxy_fix")),
        _from_checks("transport.https", "HTTPS is enforced (redirect and HSTS)", pick("https_redirect", "hsts")),
        _from_checks("transport.headers", "Security headers are sent",
                     pick("csp", "frame_options", "content_type_nosniff", "referrer_policy", "server_header")),
        _from_checks("sessions.cookies", "Session cookies are Secure, HttpOnly, SameSite",
                     pick("session_cookie_secure", "session_cookie_httponly", "session_cookie_samesite")),
        _from_checks("sessions.csrf", "CSRF protection is on", pick("csrf")),
        _from_checks("authz.routes", "No route without a permission", pick("route_permissions")),
        _from_checks("authz.limits", "Rate and size limits are in place", pick("rate_limits", "request_size")),
        _from_checks("secrets.ingest_keys", "Ingest keys are custom", pick("dev_ingest_key")),
        _from_checks("mongodb.auth_tls", "MongoDB uses authentication and TLS", pick("mongodb_auth", "mongodb_tls")),
    ]
    missing = missing_indexes()
    items.append(item("mongodb.indexes", "Indexes exist for hot queries", FAIL if missing else PASS,
                      "Missing: " + "; ".join(f"{c}: {', '.join(n)}" for c, n in missing.items())
                      + ". Run the optimize task ensure_indexes." if missing
                      else f"Every index declared by {len(db.all_documents())} models exists."))
    ttl = ttl_status()
    without = [name for name, ok in ttl.items() if not ok]
    items.append(item("mongodb.ttl", "Telemetry expires (TTL indexes)", FAIL if without else PASS,
                      f"No TTL index on: {', '.join(without)}." if without
                      else f"TTL indexes on {', '.join(ttl)}."))
    conn = app.extensions["redis"]
    try:
        redis_check = health.check_redis(conn)
        workers = health.check_workers(conn)
    except Exception as error:  # Redis down: both items fail with the reason's type only
        redis_check, workers = {"status": health.DOWN, "error": type(error).__name__}, None
    redis_items = pick("redis_password")
    if redis_check["status"] == health.DOWN:
        items.append(item("redis.workers", "Redis answers and workers run", FAIL,
                          f"Redis is unreachable ({redis_check.get('error')})."))
    else:
        alive = workers["alive"] if workers else 0
        status = max([PASS if alive else FAIL, *(c["status"] for c in redis_items)], key=_RANK.__getitem__)
        detail = (f"Redis answers in {redis_check['latency_ms']} ms; {alive} RQ worker(s) alive."
                  if alive else "Redis answers, but no RQ worker is alive: start `python worker.py`.")
        detail += "".join(f" {c['detail']}" for c in redis_items if c["status"] != PASS)
        items.append(item("redis.workers", "Redis answers and workers run", status, detail))
    items.append(_observability(app))
    items.extend(_dependencies(root))
    items.append(_backups(root))
    ready = all(entry["status"] != FAIL for entry in items)
    summary = {status: sum(1 for entry in items if entry["status"] == status) for status in (PASS, WARN, FAIL)}
    return {"ready": ready, "summary": summary, "items": items}
