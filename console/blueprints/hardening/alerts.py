"""Alert rules, evaluated by a scheduled RQ job; a firing alert is mailed to the active super admins (through
communication's `send_email`, on the high-priority mail queue) and posted to ALERT_WEBHOOK_URL (JSON with a
Slack-compatible `text`, HMAC-signed like the generic mail webhook); its resolution is sent too.

Rate rules (error rate, bounce and complaint rate, slow queries per minute) measure over their window; state
rules (oldest queued email, live workers, dependencies down, free disk) must hold for their window before they
fire (0: at once). After a notification, the rule stays quiet for its cool-down: a rule still firing is sent a
reminder when it ends, and one that fires again within it is recorded but not sent.
Reads communication's `email_queue` (counts) and uses communication's `email_templates.create_template` and
`sending.send_email`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.request
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app

from console.accounts import Admin
from console.audit import record
from console.blueprints.hardening.models import AlertEvent, AlertRule
from console.errors import ApiError
from console.queues import claim_period, run_every
from console.telemetry.models import RequestMetric, SlowQuery
from console.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)
TEMPLATE_NAME = "System alert"
MIN_REQUESTS = 20  # an error rate over fewer requests is noise
MIN_SENT = 20  # likewise for bounce and complaint rates
LOCK_KEY = "alerts:evaluate:lock"
TICK_KEY = "alerts:evaluate:tick"
JOB_FUNC = "console.blueprints.hardening.jobs.evaluate_alerts"


@dataclass(frozen=True)
class Rule:
    name: str
    title: str
    unit: str
    above: bool  # fires when the value is above the threshold (False: below)
    threshold: float
    window_minutes: int
    cooldown_minutes: int
    kind: str  # rate (measured over the window) | state (must hold for the window)
    help: str


RULES = {rule.name: rule for rule in (
    Rule("error_rate", "Request error rate", "%", True, 5.0, 15, 60, "rate",
         f"Unhandled errors per request over the window (at least {MIN_REQUESTS} requests)."),
    Rule("mail_queue_age", "Oldest queued email", "min", True, 15.0, 0, 60, "state",
         "Minutes the oldest email due for sending has waited."),
    Rule("no_worker", "Live RQ workers", "workers", False, 1.0, 2, 30, "state",
         "RQ workers with a heartbeat in the last two minutes; fires below the threshold."),
    Rule("bounce_rate", "Bounce rate", "%", True, 5.0, 60, 120, "rate",
         f"Bounced among the emails sent in the window (at least {MIN_SENT} sent)."),
    Rule("complaint_rate", "Complaint rate", "%", True, 0.1, 60, 120, "rate",
         f"Spam complaints among the emails sent in the window (at least {MIN_SENT} sent)."),
    Rule("dependency_down", "Dependencies down", "down", True, 0.0, 1, 30, "state",
         "MongoDB, Redis, SMTP or disk reported DOWN by the health check; fires above the threshold."),
    Rule("disk_low", "Free disk", "%", False, 10.0, 5, 240, "state",
         "Free space on the instance volume; fires below the threshold."),
    Rule("slow_queries", "Slow queries per minute", "/min", True, 10.0, 15, 60, "rate",
         "MongoDB commands slower than SLOW_QUERY_MS, per minute over the window."),
)}


# --- settings -------------------------------------------------------------------------------------------------

def _stored() -> dict[str, dict]:
    return {doc["rule"]: doc for doc in AlertRule.objects.as_pymongo()}


def _settings(rule: Rule, doc: dict | None) -> dict:
    doc = doc or {}

    def pick(key, default):
        return doc.get(key) if doc.get(key) is not None else default

    return {"enabled": pick("enabled", True), "threshold": float(pick("threshold", rule.threshold)),
            "window_minutes": int(pick("window_minutes", rule.window_minutes)),
            "cooldown_minutes": int(pick("cooldown_minutes", rule.cooldown_minutes))}


def rules() -> list[dict]:
    """Every rule with its settings, defaults and live state, in a fixed order."""
    stored = _stored()
    out = []
    for rule in RULES.values():
        doc = stored.get(rule.name) or {}
        out.append({"rule": rule.name, "title": rule.title, "unit": rule.unit, "kind": rule.kind,
                    "direction": "above" if rule.above else "below", "help": rule.help, **_settings(rule, doc),
                    "defaults": {"threshold": rule.threshold, "window_minutes": rule.window_minutes,
                                 "cooldown_minutes": rule.cooldown_minutes},
                    "state": doc.get("state") or "ok", "value": doc.get("value"), "detail": doc.get("detail"),
                    "fired_at": doc.get("fired_at") if doc.get("state") == "firing" else None,
                    "evaluated_at": doc.get("evaluated_at"), "updated_by": doc.get("updated_by")})
    return out


def current_states() -> dict[str, str]:
    stored = _stored()
    return {name: (stored.get(name) or {}).get("state") or "ok" for name in RULES}


def firing() -> list[dict]:
    return [rule for rule in rules() if rule["state"] == "firing"]


def update_rule(name: str, changes: dict, actor: str) -> dict:
    """Change a rule's enabled/threshold/window/cool-down; audited."""
    rule = RULES.get(name)
    if rule is None:
        raise ApiError(404, f"No alert rule is called {name}.")
    before = _settings(rule, _stored().get(name))
    fields = {f"set__{key}": value for key, value in changes.items() if value is not None}
    if fields:
        AlertRule.objects(rule=name).update_one(upsert=True, set__updated_at=utcnow(), set__updated_by=actor,
                                                **fields)
    after = _settings(rule, _stored().get(name))
    record("hardening.alert_rule.update", f"alert:{name}", before=before, after=after)
    return next(item for item in rules() if item["rule"] == name)


def history(limit: int = 50) -> list[dict]:
    return [{"rule": doc["rule"], "title": RULES[doc["rule"]].title if doc["rule"] in RULES else doc["rule"],
             "kind": doc["kind"], "value": doc.get("value"), "threshold": doc.get("threshold"),
             "detail": doc.get("detail"), "at": doc["at"], "notified": doc.get("notified", False),
             "delivery": doc.get("delivery") or {}}
            for doc in AlertEvent.objects.order_by("-at").limit(limit).as_pymongo()]


# --- measuring ------------------------------------------------------------------------------------------------

def _error_rate(window, now):
    since = now - timedelta(minutes=window)
    rows = list(RequestMetric.objects.aggregate([{"$match": {"at": {"$gte": since}}},
                                                 {"$group": {"_id": None, "n": {"$sum": "$n"},
                                                             "errors": {"$sum": "$errors"}}}]))
    requests, errors = (rows[0]["n"], rows[0]["errors"]) if rows else (0, 0)
    if requests < MIN_REQUESTS:
        return None, f"{requests} requests in {window} min: too few to judge"
    return round(100 * errors / requests, 3), f"{errors} server errors in {requests} requests over {window} min"


def _mail_queue_age(window, now):
    from console.db import get_db

    coll = get_db()["email_queue"]
    due = [{"status": "queued", "$or": [{"send_at": None}, {"send_at": {"$lte": now}}]},
           {"status": "deferred", "next_attempt_at": {"$lte": now}}]
    oldest = None
    # queued: the lowest _id is the oldest (the (status, _id) index serves it); deferred ones are few
    for match, field, order in ((due[0], "created_at", "_id"), (due[1], "next_attempt_at", "next_attempt_at")):
        doc = coll.find_one(match, {field: 1}, sort=[(order, 1)])
        if doc and doc.get(field):
            moment = as_utc(doc[field])
            oldest = moment if oldest is None or moment < oldest else oldest
    if oldest is None:
        return 0.0, "no email is waiting"
    minutes = round((now - oldest).total_seconds() / 60, 1)
    return minutes, f"the oldest email due has waited {minutes} min"


def _no_worker(window, now):
    from console.blueprints.hardening import health

    check = health.check_workers(current_app.extensions["redis"])
    return float(check["alive"]), f"{check['alive']} of {check['count']} registered worker(s) alive"


def _mail_rate(status):
    def measure(window, now):
        from console.db import get_db

        coll = get_db()["email_queue"]
        since = now - timedelta(minutes=window)
        sent = coll.count_documents({"sent_at": {"$gte": since}})
        if sent < MIN_SENT:
            return None, f"{sent} emails sent in {window} min: too few to judge"
        n = coll.count_documents({"status": status, "sent_at": {"$gte": since}})
        return round(100 * n / sent, 3), f"{n} {status} of {sent} emails sent over {window} min"
    return measure


def _dependency_down(window, now):
    from console.blueprints.hardening import health

    report = health.health_comprehensive()
    down = [name for name, check in report["checks"].items()
            if check["status"] == health.DOWN and name in ("mongodb", "redis", "smtp", "disk")]
    return float(len(down)), (f"DOWN: {', '.join(down)}" if down else "every dependency answers")


def _disk_low(window, now):
    import os

    from console.blueprints.hardening import health

    app = current_app
    check = health.check_disk(app.instance_path if os.path.isdir(app.instance_path) else app.root_path)
    return float(check["free_percent"]), f"{check['free_gb']} GB free ({check['free_percent']}%)"


def _slow_queries(window, now):
    n = SlowQuery.objects(at__gte=now - timedelta(minutes=window)).count()
    return round(n / max(window, 1), 2), f"{n} slow commands in {window} min"


MEASURES = {"error_rate": _error_rate, "mail_queue_age": _mail_queue_age, "no_worker": _no_worker,
            "bounce_rate": _mail_rate("bounced"), "complaint_rate": _mail_rate("complained"),
            "dependency_down": _dependency_down, "disk_low": _disk_low, "slow_queries": _slow_queries}


def _breached(rule: Rule, value: float | None, threshold: float) -> bool:
    if value is None:
        return False
    return value > threshold if rule.above else value < threshold


# --- evaluating -----------------------------------------------------------------------------------------------

def evaluate(now=None) -> dict:
    """Measure every enabled rule, move its state (ok → pending → firing → ok) and notify on changes."""
    now = now or utcnow()
    stored = _stored()
    outcome = {}
    for rule in RULES.values():
        doc = stored.get(rule.name) or {}
        settings = _settings(rule, doc)
        if not settings["enabled"]:
            if doc.get("state") == "firing":
                _resolve(rule, doc, settings, None, "rule disabled", now)
            elif doc.get("state") == "pending":
                AlertRule.objects(rule=rule.name).update_one(set__state="ok", unset__pending_since=True)
            outcome[rule.name] = "disabled"
            continue
        try:
            value, detail = MEASURES[rule.name](settings["window_minutes"], now)
        except Exception as error:  # one broken measure must not stop the others
            log.warning("alert %s could not be measured", rule.name, exc_info=True)
            value, detail = None, f"not measured ({type(error).__name__})"
        outcome[rule.name] = _step(rule, doc, settings, value, detail, now)
    return {"evaluated_at": now, "rules": outcome}


def _step(rule: Rule, doc: dict, settings: dict, value, detail: str, now) -> str:
    state = doc.get("state") or "ok"
    breached = _breached(rule, value, settings["threshold"])
    base = {"set__value": value, "set__detail": detail[:500], "set__evaluated_at": now}
    if breached and state == "firing":
        cooldown = timedelta(minutes=settings["cooldown_minutes"])
        last = doc.get("last_notified_at")
        if last is None or now - as_utc(last) >= cooldown:
            event = _event(rule, "reminder", value, settings, detail, now)
            sent = _notify(rule, event, settings)
            AlertRule.objects(rule=rule.name).update_one(set__last_notified_at=now, set__notified_firing=True,
                                                         **base)
            return "reminded" if sent else "firing"
        AlertRule.objects(rule=rule.name).update_one(**base)
        return "firing"
    if breached:
        pending_since = as_utc(doc["pending_since"]) if state == "pending" and doc.get("pending_since") else now
        if rule.kind == "state" and now - pending_since < timedelta(minutes=settings["window_minutes"]):
            AlertRule.objects(rule=rule.name).update_one(upsert=True, set__state="pending",
                                                         set__pending_since=pending_since, **base)
            return "pending"
        return _fire(rule, doc, settings, value, detail, now, base)
    if state == "firing":
        _resolve(rule, doc, settings, value, detail, now)
        return "resolved"
    AlertRule.objects(rule=rule.name).update_one(upsert=True, set__state="ok", unset__pending_since=True, **base)
    return "ok"


def _fire(rule, doc, settings, value, detail, now, base) -> str:
    last = doc.get("last_notified_at")
    in_cooldown = last is not None and now - as_utc(last) < timedelta(minutes=settings["cooldown_minutes"])
    event = _event(rule, "fired", value, settings, detail, now)
    sent = False
    if in_cooldown:
        event.update(set__delivery={"suppressed": "cool-down"})
    else:
        sent = _notify(rule, event, settings)
    changes = {"set__state": "firing", "set__fired_at": now, "unset__pending_since": True,
               "set__notified_firing": sent, **base}
    if sent:
        changes["set__last_notified_at"] = now
    AlertRule.objects(rule=rule.name).update_one(upsert=True, **changes)
    return "fired"


def _resolve(rule, doc, settings, value, detail, now) -> None:
    event = _event(rule, "resolved", value, settings, detail, now)
    if doc.get("notified_firing"):
        _notify(rule, event, settings)
    AlertRule.objects(rule=rule.name).update_one(set__state="ok", set__value=value, set__detail=detail[:500],
                                                 set__evaluated_at=now, set__notified_firing=False,
                                                 unset__pending_since=True, unset__fired_at=True)


def _event(rule, kind, value, settings, detail, now) -> AlertEvent:
    return AlertEvent(rule=rule.name, kind=kind, value=value, threshold=settings["threshold"], detail=detail[:500],
                      at=now).save()


# --- notifying ------------------------------------------------------------------------------------------------

def _text(rule: Rule, event: AlertEvent) -> str:
    value = "—" if event.value is None else f"{event.value:g} {rule.unit}"
    comparison = "above" if rule.above else "below"
    if event.kind == "resolved":
        return f"RESOLVED: {rule.title} is back within {event.threshold:g} {rule.unit} (now {value}). {event.detail}"
    prefix = "FIRING" if event.kind == "fired" else "STILL FIRING"
    return f"{prefix}: {rule.title} {value}, {comparison} the threshold {event.threshold:g} {rule.unit}. {event.detail}"


def _notify(rule: Rule, event: AlertEvent, settings: dict) -> bool:
    """Mail every active super admin and post the webhook; record what went out on the history event."""
    text = _text(rule, event)
    delivery = {"emails": [], "webhook": None}
    try:
        delivery["emails"] = _mail(rule, event, text)
    except Exception as error:
        log.warning("alert mail failed", exc_info=True)
        delivery["mail_error"] = type(error).__name__
    delivery["webhook"] = _post_webhook(rule, event, settings, text)
    notified = bool(delivery["emails"]) or (delivery["webhook"] or "").startswith("2")
    event.update(set__notified=notified, set__delivery=delivery)
    return notified


def _template_id() -> str:
    from console.blueprints.communication.email_templates import ensure_template

    template = ensure_template({
        "name": TEMPLATE_NAME, "key": "system.alert", "category": "security",
        "subject": "[{{ state }}] {{ title }}",
        "html_body": "<p><strong>{{ state }}</strong>: {{ text }}</p>"
                     "<p><a href=\"{{ url }}\">Open the System page</a></p>",
        "text_body": "{{ state }}: {{ text }}\n\n{{ url }}",
        "description": "Sent by the alert rules to every active super admin.",
        "sample_data": {"state": "FIRING", "title": "Request error rate", "text": "…", "url": "https://x"},
    }, actor="system")
    return str(template.id)


def _mail(rule: Rule, event: AlertEvent, text: str) -> list[str]:
    from console.blueprints.communication.sending import send_email

    admins = Admin.objects(roles="super_admin", active=True).only("id", "email")
    if not admins:
        return []
    template_id = _template_id()
    base = str(current_app.config.get("PUBLIC_BASE_URL") or "").rstrip("/")
    variables = {"state": {"fired": "FIRING", "reminder": "STILL FIRING", "resolved": "RESOLVED"}[event.kind],
                 "title": rule.title, "text": text, "url": f"{base}/system#alerts"}
    return [send_email(template_id, {"email": admin.email}, variables=variables, priority="high",
                       category="security", idempotency_key=f"alert:{event.id}:{admin.id}")["email_id"]
            for admin in admins]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _post_webhook(rule: Rule, event: AlertEvent, settings: dict, text: str) -> str | None:
    url = str(current_app.config.get("ALERT_WEBHOOK_URL") or "")
    if not url:
        return None
    if not url.startswith(("https://", "http://")):
        return "error: ALERT_WEBHOOK_URL must be http(s)"
    payload = {"text": text, "alert": {
        "rule": rule.name, "title": rule.title, "status": "resolved" if event.kind == "resolved" else "firing",
        "kind": event.kind, "value": event.value, "threshold": event.threshold, "unit": rule.unit,
        "window_minutes": settings["window_minutes"], "detail": event.detail, "at": as_utc(event.at).isoformat()
        .replace("+00:00", "Z"), "id": str(event.id)}}
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "console-alerts/1"}
    secret = current_app.config.get("ALERT_WEBHOOK_SECRET")
    if secret:
        timestamp = str(int(time.time()))
        headers.update({"X-Console-Timestamp": timestamp, "X-Console-Signature": sign(secret, timestamp, body)})
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310  (http(s) only)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310  (an operator-set URL)
            return str(response.status)
    except urllib.error.HTTPError as error:
        return str(error.code)
    except Exception as error:
        return f"error: {type(error).__name__}"


# --- scheduling -----------------------------------------------------------------------------------------------

def run_locked() -> dict:
    """The job body: one evaluation at a time across workers."""
    conn = current_app.extensions["redis"]
    interval = int(current_app.config.get("ALERT_INTERVAL", 60))
    if not conn.set(LOCK_KEY, 1, nx=True, ex=max(30, interval * 2)):
        return {"skipped": "another evaluation is running"}
    try:
        return evaluate()
    finally:
        conn.delete(LOCK_KEY)


def enqueue_evaluation(force: bool = False):
    """Enqueue the evaluation job unless one was enqueued within the interval (several workers tick)."""
    interval = int(current_app.config.get("ALERT_INTERVAL", 60))
    if force or claim_period(TICK_KEY, interval - 1):
        return current_app.extensions["queues"]["high"].enqueue(JOB_FUNC, job_timeout=120, result_ttl=600,
                                                                description="alert evaluation")
    return None


def start_schedule(app) -> None:
    """Worker startup hook: evaluate the alert rules every ALERT_INTERVAL seconds (0 turns it off)."""
    run_every(app, int(app.config.get("ALERT_INTERVAL", 60)), "alert-schedule", enqueue_evaluation)

