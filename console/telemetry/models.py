"""Telemetry the app collects about itself: error groups, request timings, slow MongoDB commands.

Every document carries `expires_at` with a TTL index (expireAfterSeconds=0), so the retention follows
TELEMETRY_TTL_DAYS at write time instead of being frozen into the index definition.
"""

from __future__ import annotations

from mongoengine import (
    BooleanField,
    DateTimeField,
    DictField,
    Document,
    FloatField,
    IntField,
    ListField,
    StringField,
)

from console.timeutil import utcnow

TELEMETRY_COLLECTIONS = frozenset({"error_events", "request_metrics", "slow_queries"})


class ErrorEvent(Document):
    """One group of unhandled exceptions sharing a fingerprint; `hours` counts them per UTC hour."""

    fingerprint = StringField(required=True, unique=True, max_length=64)
    exception = StringField(max_length=200)
    message = StringField(max_length=500)
    endpoint = StringField(max_length=300)
    frames = ListField(StringField(max_length=300))
    count = IntField(default=0)
    hours = DictField()  # "YYYYMMDDHH" → occurrences in that hour
    first_seen = DateTimeField(default=utcnow)
    last_seen = DateTimeField(default=utcnow)
    sample = DictField()  # method, path (query values stripped), status; never headers or bodies
    source = StringField(default="request")  # request | job
    job = DictField()  # name, func, queue, attempts, will_retry, job_id, traceback (scrubbed)
    job_ids = ListField(StringField())  # the recent failed job ids, for retry or discard
    state = StringField(default="open")  # open | resolved | ignored
    ignored_until = DateTimeField()  # None while ignored: for good
    resolved_at = DateTimeField()
    changed_by = StringField()
    regressed = BooleanField(default=False)  # a resolved group recurred
    regressed_at = DateTimeField()
    expires_at = DateTimeField()

    meta = {
        "collection": "error_events",
        "indexes": ["-last_seen", {"fields": ["expires_at"], "expireAfterSeconds": 0}],
    }


class RequestMetric(Document):
    """Request timings of one endpoint and method over one flush interval (a compact batch, not a row each)."""

    at = DateTimeField(required=True)
    endpoint = StringField(required=True, max_length=300)
    method = StringField(required=True, max_length=10)
    n = IntField(default=0)  # requests seen (exact, even when durations are sampled)
    errors = IntField(default=0)  # status >= 500
    statuses = DictField()  # "200" → count
    d = ListField(FloatField())  # durations in ms (a reservoir sample when traffic is high)
    expires_at = DateTimeField()

    meta = {
        "collection": "request_metrics",
        "indexes": ["at", {"fields": ["expires_at"], "expireAfterSeconds": 0}],
    }


class SlowQuery(Document):
    """A MongoDB command slower than SLOW_QUERY_MS: its shape (every value replaced by its type), never values."""

    at = DateTimeField(required=True)
    database = StringField(max_length=120)
    collection = StringField(max_length=200)
    command_name = StringField(max_length=60)
    shape = DictField()
    shape_id = StringField(max_length=64)
    duration_ms = FloatField()
    expires_at = DateTimeField()

    meta = {
        "collection": "slow_queries",
        "indexes": ["-at", "shape_id", {"fields": ["expires_at"], "expireAfterSeconds": 0}],
    }
