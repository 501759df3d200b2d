"""The hardening feature's own documents: alert rules (settings and live state), alert history, settings."""

from __future__ import annotations

from mongoengine import BooleanField, DateTimeField, DictField, Document, FloatField, IntField, StringField

from console.timeutil import utcnow


class AlertRule(Document):
    """One rule's overrides of its defaults (console.blueprints.hardening.alerts.RULES) and its live state."""

    rule = StringField(required=True, unique=True, max_length=40)
    enabled = BooleanField()
    threshold = FloatField()
    window_minutes = IntField()
    cooldown_minutes = IntField()
    state = StringField(default="ok")  # ok | pending | firing
    value = FloatField()
    detail = StringField(max_length=500)
    pending_since = DateTimeField()
    fired_at = DateTimeField()
    last_notified_at = DateTimeField()
    notified_firing = BooleanField(default=False)  # whether this firing was sent (so its resolution is too)
    evaluated_at = DateTimeField()
    updated_at = DateTimeField()
    updated_by = StringField()

    meta = {"collection": "alert_rules"}


class AlertEvent(Document):
    """History: a rule fired, was reminded (still firing after the cool-down) or resolved."""

    rule = StringField(required=True, max_length=40)
    kind = StringField(required=True)  # fired | reminder | resolved
    value = FloatField()
    threshold = FloatField()
    detail = StringField(max_length=500)
    at = DateTimeField(default=utcnow, required=True)
    notified = BooleanField(default=False)
    delivery = DictField()  # {"emails": [email_id...], "webhook": "200" | "error: ..." | None, "suppressed": reason}

    meta = {"collection": "alert_history", "indexes": ["-at", ("rule", "-at")]}


class OpsSetting(Document):
    """Small operator-recorded facts, e.g. `last_backup_at` (flask --app wsgi record-backup)."""

    key = StringField(required=True, unique=True, max_length=60)
    value = DictField()
    updated_at = DateTimeField(default=utcnow)

    meta = {"collection": "ops_settings"}
