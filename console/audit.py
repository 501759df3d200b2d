"""The append-only audit log."""

from __future__ import annotations

import logging
import re
from datetime import datetime

from flask import has_request_context, request
from flask_login import current_user
from mongoengine import DateTimeField, DictField, Document, DynamicField, ObjectIdField, StringField

from console.timeutil import utcnow

log = logging.getLogger(__name__)
DENIAL_LOG_WINDOW_SECONDS = 60


class AuditLog(Document):
    """Append-only record of security-relevant changes."""

    actor = StringField(required=True)
    actor_id = ObjectIdField()
    action = StringField(required=True, max_length=100)
    target = StringField(max_length=300)
    before = DynamicField()
    after = DynamicField()
    at = DateTimeField(default=utcnow, required=True)
    ip = StringField(max_length=64)
    details = DictField()

    meta = {"collection": "audit_log", "indexes": ["-at", ("actor", "-at"), ("target", "-at"), ("action", "-at")]}



def _actor() -> tuple[str, object]:
    if has_request_context() and current_user and current_user.is_authenticated:
        return current_user.email, current_user.id
    return "system", None


def client_ip() -> str | None:
    return request.remote_addr if has_request_context() else None


def record(action: str, target: str, before=None, after=None, *, actor: str | None = None, **details) -> AuditLog:
    """Write one audit entry: who did what to which target, with the state before and after."""
    name, actor_id = _actor()
    return AuditLog(
        actor=actor or name, actor_id=actor_id, action=action, target=target,
        before=before, after=after, ip=client_ip(), details=details,
    ).save()


def init_app(app) -> None:
    """Listen to security's denials (security does not import the audit log)."""
    from console.security import permission_denied

    permission_denied.connect(_on_denied, sender=app)


def _on_denied(_app, permission: str) -> None:
    log_denied(permission)


def log_denied(permission: str) -> None:
    """Record a denied permission check, at most once a minute per admin, permission and path."""
    from console.queues import get_redis

    _name, actor_id = _actor()
    key = f"audit:denied:{actor_id}:{permission}:{request.endpoint}"
    try:
        if not get_redis().set(key, 1, nx=True, ex=DENIAL_LOG_WINDOW_SECONDS):
            return
    except Exception:  # Redis down must not turn a 403 into a 500
        log.warning("audit: could not rate-limit denial logging", exc_info=True)
    record("permission.denied", request.path, permission=permission, method=request.method)


# --- reading the log -----------------------------------------------------------------------------------------

def entries(actor: str | None = None, target: str | None = None, action: str | None = None,
            since: datetime | None = None, until: datetime | None = None):
    """The log filtered: actor and target match as case-insensitive substrings, action exactly or by prefix
    (`role.` matches every role action), times as a half-open range [since, until)."""
    raw: dict = {}
    if actor:
        raw["actor"] = {"$regex": re.escape(actor), "$options": "i"}
    if target:
        raw["target"] = {"$regex": re.escape(target), "$options": "i"}
    if action:
        raw["action"] = {"$regex": "^" + re.escape(action)} if action.endswith(".") else action
    if since or until:
        raw["at"] = {**({"$gte": since} if since else {}), **({"$lt": until} if until else {})}
    return AuditLog.objects(__raw__=raw) if raw else AuditLog.objects


def trail(email: str, limit: int = 50) -> list[AuditLog]:
    """What happened to an admin and what they did, newest first."""
    return list(AuditLog.objects(__raw__={"$or": [{"actor": email}, {"target": email}]})
                .order_by("-at", "-id").limit(limit))


def known_actions() -> list[str]:
    return sorted(AuditLog.objects.distinct("action"))


def entry_dict(entry: AuditLog) -> dict:
    return {"id": str(entry.id), "at": entry.at, "actor": entry.actor, "action": entry.action,
            "target": entry.target, "before": entry.before, "after": entry.after, "ip": entry.ip,
            "details": entry.details or {}}


CSV_COLUMNS = ["at", "actor", "action", "target", "ip", "before", "after", "details"]
CSV_MAX_ROWS = 100_000


def csv_rows(queryset):
    """The entries as CSV rows (CSV_COLUMNS), newest first, at most CSV_MAX_ROWS, read as they are sent."""
    entries = (entry_dict(entry) for entry in queryset.order_by("-at", "-id").limit(CSV_MAX_ROWS).no_cache())
    return ([data[column] for column in CSV_COLUMNS] for data in entries)
