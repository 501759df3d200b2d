"""Engagement: raw activity events, per-member-per-day rollups, per-day aggregates, member ordinals, campaigns."""

from __future__ import annotations

from mongoengine import (
    BinaryField,
    BooleanField,
    DateTimeField,
    DictField,
    Document,
    DynamicField,
    FloatField,
    IntField,
    ListField,
    StringField,
)

from console.timeutil import utcnow


class UserActivity(Document):
    """One tracked event. `event_id` is unique (client-sent or server-made) so retries never store twice."""

    event_id = StringField(required=True, unique=True, max_length=200)
    batch = StringField()  # the request that stored it; rollups name the batches they applied
    user_id = StringField(required=True, max_length=200)
    event = StringField(required=True, max_length=200)
    feature = StringField(max_length=200)
    session_id = StringField(max_length=200)
    properties = DictField()
    timestamp = DateTimeField(required=True)
    received_at = DateTimeField(default=utcnow)
    clamped = BooleanField(default=False)  # the client's timestamp was in the future
    client_timestamp = DateTimeField()

    meta = {
        "collection": "user_activities",
        "indexes": [("user_id", "-timestamp")],
    }


class ActivityRollup(Document):
    """One document per member per local day (ANALYTICS_TIMEZONE): the basis of the day aggregates.

    `features`/`names` map (escaped) feature and event names to counts; `ts` packs the seconds of the day of
    events without a session id and `sid` packs a hash of each session id with its first/last second, so the
    day's `sessions` and `session_seconds` can be recomputed exactly whatever order events arrive in.
    """

    id = StringField(primary_key=True)  # "<user_id>|<YYYY-MM-DD>", see engagement_ingest.rollup_id
    user_id = StringField(required=True, max_length=200)
    day = DateTimeField(required=True)
    week = DateTimeField()  # Monday of the ISO week
    month = DateTimeField()  # first of the month
    events = IntField(default=0)
    sessions = IntField(default=0)
    session_seconds = IntField(default=0)
    features = DictField()
    names = DictField()
    ts = BinaryField()  # packed uint32 seconds of the day, sorted
    sid = BinaryField()  # packed session spans, see engagement_ingest.pack_sessions
    first_at = DateTimeField()
    last_at = DateTimeField()
    v = IntField(default=0)  # bumped on every write; a write only lands on the version it read
    applied = BinaryField()  # packed batch -> when its events were added, for 15 minutes (retries add nothing)
    ws = ListField(StringField())  # tokens of the last writes, so a request can tell whether its racing write landed

    meta = {
        "collection": "activity_rollups",
        # Only one secondary index: every index costs each ingestion write; member-days are read by `_id`.
        "indexes": ["day"],
    }


CACHE_INDEXES = ["range_to", {"fields": ["computed_at"], "expireAfterSeconds": 86400}]


class CachedResult(Document):
    """A cached result (only the churn report still uses one; dashboards read the day aggregates)."""

    key = StringField(required=True, unique=True)
    range_from = DateTimeField()
    range_to = DateTimeField()
    computed_at = DateTimeField(default=utcnow)
    result = DynamicField()

    meta = {"abstract": True}


class EngagementCache(CachedResult):
    meta = {"collection": "engagement_metrics", "indexes": CACHE_INDEXES}


class ActivityDay(Document):
    """One local day's exact member sets (Roaring bitmaps) and counters; see engagement.aggregates."""

    id = StringField(primary_key=True)  # "YYYY-MM-DD", the local day
    day = DateTimeField(required=True)
    meta = {"collection": "activity_days", "indexes": ["day"], "strict": False}


class ActivityFrozen(Document):
    """An answer about past days kept until a late event changes one of them (engagement.frozen writes these:
    `last`, `epoch`, `gen`, `at`, `v`); declared for its indexes."""

    id = StringField(primary_key=True)  # the question
    last = DateTimeField(required=True)
    at = DateTimeField(required=True)
    meta = {"collection": "activity_frozen", "indexes": ["last", "at"], "strict": False}


class ActivityPending(Document):
    """A stored batch that waits for the worker to fold it (fold.py writes these directly: `ids` packed, `n`,
    `created_at`, `lease_until`, `token`); declared for its index, oldest first."""

    created_at = DateTimeField(required=True)
    meta = {"collection": "activity_pending", "indexes": ["created_at"], "strict": False}


class MemberOrdinal(Document):
    """A member's dense number in the aggregates' bitmaps."""

    id = StringField(primary_key=True)  # the user_id
    o = IntField(required=True)
    meta = {"collection": "member_ordinals", "indexes": [{"fields": ["o"], "unique": True}]}


class Campaign(Document):
    """A re-engagement campaign: who was targeted, who was held out, and the mail batch that went out."""

    name = StringField(required=True, max_length=200)
    segment = DictField()
    template_id = StringField(required=True)
    category = StringField(default="marketing")
    holdout_percent = FloatField(default=0)
    salt = StringField(required=True)
    include_holdout_members = BooleanField(default=False)  # an admin chose to mail other campaigns' holdouts
    status = StringField(default="queued")  # dry_run | queued | sending | complete | failed
    dry_run = BooleanField(default=False)
    treated = ListField(StringField())
    holdout = ListField(StringField())
    skipped = DictField()
    skipped_users = DictField()
    batch_id = StringField()
    sent_at = DateTimeField()
    created_at = DateTimeField(default=utcnow)
    created_by = StringField()
    error = StringField()

    meta = {"collection": "campaigns", "indexes": ["-created_at", "treated", "sent_at"]}


class ChurnScore(Document):
    """A member's churn risk from the latest scoring run (only members still here are scored)."""

    user_id = StringField(required=True, unique=True)
    risk = FloatField(required=True)
    tier = StringField(required=True)
    reasons = ListField(StringField())
    signals = DictField()
    last_seen = DateTimeField()
    days_inactive = IntField()
    run_id = StringField()
    computed_at = DateTimeField()

    meta = {"collection": "churn_scores",
            "indexes": [{"fields": ["tier", "-risk", "user_id"]}, {"fields": ["-risk", "user_id"]}, "run_id"]}


class ChurnRun(Document):
    """One scoring run: when, how many per tier, how many churned, the model and its backtest."""

    run_id = StringField(required=True)
    computed_at = DateTimeField(required=True)
    job_id = StringField()
    scored = IntField()
    tiers = DictField()
    churned = IntField()
    churn_after_days = IntField()
    model = DictField()

    meta = {"collection": "churn_runs", "indexes": ["-computed_at"]}
