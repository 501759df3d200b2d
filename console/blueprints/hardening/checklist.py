"""Production checklist: every item verified against the running system, not a static list."""

from __future__ import annotations

import re
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

from flask import current_app

from console import db
from console.blueprints.hardening import backups, health, mail_dns
from console.blueprints.hardening.security_audit import FAIL, PASS, WARN, run_checks
from console.telemetry.models import TELEMETRY_COLLECTIONS
from console.timeutil import utcnow

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


def _backups(app) -> dict:
    """The last backup the operator recorded with `flask --app wsgi record-backup`."""
    title = "Backups are recent"
    last = backups.last_backup()
    limit = timedelta(hours=int(app.config.get("BACKUP_MAX_AGE_HOURS", 24)))
    if last is None:
        return item("backups.recent", title, FAIL if app.config.get("IS_PRODUCTION") else WARN,
                    "No backup was ever recorded. Back up MongoDB (mongodump or your provider's snapshots), then run "
                    "`flask --app wsgi record-backup`.")
    age = utcnow() - last["at"]
    hours = round(age.total_seconds() / 3600, 1)
    if age > limit:
        return item("backups.recent", title, WARN, f"The last recorded backup is {hours} h old (more than "
                    f"{int(limit.total_seconds() // 3600)} h). Back up and run `flask --app wsgi record-backup`.")
    return item("backups.recent", title, PASS, f"The last backup was recorded {hours} h ago"
                + (f" ({last['note']})." if last["note"] else "."))


def _demo_content(app) -> list[dict]:
    """Demo admins (the seeded one-per-role accounts) or demo activity in production."""
    from console.accounts import Admin
    from console.authz import BUILTIN_ROLES

    demo_emails = [f"{role.replace('_', '.')}@example.com" for role in BUILTIN_ROLES]
    admins = sorted(a.email for a in Admin.objects(email__in=demo_emails, active=True).only("email"))
    activity = db.get_db()["user_activities"].find_one({"event_id": {"$regex": "^demo-"}}, {"_id": 1}) is not None
    production = app.config.get("IS_PRODUCTION")
    found = ([f"demo admin(s) {', '.join(admins)}"] if admins else []) + (["demo activity"] if activity else [])
    if not found:
        return [item("demo.absent", "No demo admins or demo data", PASS, "No seeded demo admin or demo activity.")]
    status = FAIL if production else WARN
    detail = f"Found {' and '.join(found)}."
    detail += (" Deactivate the demo admins and drop the demo data before going live (start with SEED_DEMO=0)."
               if production else " Fine for development; production must not have them.")
    return [item("demo.absent", "No demo admins or demo data", status, detail)]


def _super_admins() -> dict:
    from console.accounts import Admin

    count = Admin.objects(roles="super_admin", active=True).count()
    title = "At least two active super admins"
    if count >= 2:
        return item("admins.super_admins", title, PASS, f"{count} active super admins.")
    return item("admins.super_admins", title, FAIL if count == 0 else WARN,
                f"{count} active super admin(s): one lost password or departure locks everyone out of roles and "
                "maintenance. Create a second with `flask --app wsgi create-admin EMAIL --role super_admin`.")


def _public_url(app) -> dict:
    url = str(app.config.get("PUBLIC_BASE_URL") or "")
    title = "PUBLIC_BASE_URL is https"
    if urlparse(url).scheme == "https":
        return item("config.public_base_url", title, PASS, f"Links in emails and tracking use {url}.")
    return item("config.public_base_url", title, FAIL if app.config.get("IS_PRODUCTION") else WARN,
                f"PUBLIC_BASE_URL is {url or 'empty'}: tracking, unsubscribe and preference links in every email "
                "would travel unencrypted. Set it to the https address of this console.")


def _mail_dns(app) -> dict:
    title = "SPF, DKIM and DMARC for the sender's domain"
    domain = mail_dns.sender_domain(app.config.get("MAIL_DEFAULT_SENDER"))
    if not domain:
        return item("mail.dns", title, FAIL, "MAIL_DEFAULT_SENDER has no address to check.")
    records = mail_dns.check_domain(domain, app.config.get("MAIL_DKIM_SELECTOR"))
    statuses = {name: entry["status"] for name, entry in records.items()}
    detail = f"{domain}: " + ", ".join(f"{name.upper()} {status}" for name, status in statuses.items()) + "."
    problems = [entry["detail"] for entry in records.values() if entry["status"] != "present" and entry.get("detail")]
    if problems:
        detail += " " + "; ".join(problems) + "."
    if "missing" in statuses.values():
        status = FAIL if app.config.get("IS_PRODUCTION") else WARN
    elif "unknown" in statuses.values():
        status = WARN
    else:
        status = PASS
    return item("mail.dns", title, status, detail)


def _config_items(pick) -> list[dict]:
    return [
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


def _database_items() -> list[dict]:
    missing = missing_indexes()
    indexes = item("mongodb.indexes", "Indexes exist for hot queries", FAIL if missing else PASS,
                   "Missing: " + "; ".join(f"{c}: {', '.join(n)}" for c, n in missing.items())
                   + ". Run the optimize task ensure_indexes." if missing
                   else f"Every index declared by {len(db.all_documents())} models exists.")
    ttl = ttl_status()
    without = [name for name, ok in ttl.items() if not ok]
    expiry = item("mongodb.ttl", "Telemetry expires (TTL indexes)", FAIL if without else PASS,
                  f"No TTL index on: {', '.join(without)}." if without else f"TTL indexes on {', '.join(ttl)}.")
    return [indexes, expiry]


def _redis_item(app, pick) -> dict:
    conn = app.extensions["redis"]
    try:
        redis_check = health.check_redis(conn)
        workers = health.check_workers(conn)
    except Exception as error:  # Redis down: the item fails with the reason's type only
        redis_check, workers = {"status": health.DOWN, "error": type(error).__name__}, None
    if redis_check["status"] == health.DOWN:
        return item("redis.workers", "Redis answers and workers run", FAIL,
                    f"Redis is unreachable ({redis_check.get('error')}).")
    redis_items = pick("redis_password")
    alive = workers["alive"] if workers else 0
    status = max([PASS if alive else FAIL, *(c["status"] for c in redis_items)], key=_RANK.__getitem__)
    detail = (f"Redis answers in {redis_check['latency_ms']} ms; {alive} RQ worker(s) alive."
              if alive else "Redis answers, but no RQ worker is alive: start `python worker.py`.")
    detail += "".join(f" {c['detail']}" for c in redis_items if c["status"] != PASS)
    return item("redis.workers", "Redis answers and workers run", status, detail)


def _operations_items(app) -> list[dict]:
    return [*_demo_content(app), _super_admins(), _public_url(app), _mail_dns(app), _backups(app)]


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
    """Every item verified live: configuration (from the security audit), database, Redis and workers,
    observability, dependencies, and operations (demo content, super admins, links, mail DNS, backups)."""
    app = current_app._get_current_object()
    root = Path(app.root_path).parent
    checks = {c["id"]: c for c in run_checks(app)}

    def pick(*ids):
        return [checks[i] for i in ids if i in checks]

    items = [*_config_items(pick), *_database_items(), _redis_item(app, pick), _observability(app),
             *_dependencies(root), *_operations_items(app)]
    ready = all(entry["status"] != FAIL for entry in items)
    summary = {status: sum(1 for entry in items if entry["status"] == status) for status in (PASS, WARN, FAIL)}
    return {"ready": ready, "summary": summary, "items": items}
