"""Activity ingestion: validate each event, insert in bulk with dedupe, keep rollups (see rollups.py), day
aggregates (aggregates.py) and members current."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from console import audit
from console.blueprints.engagement import fold
from console.blueprints.engagement.models import ActivityRollup, UserActivity
from console.blueprints.engagement.rollups import (  # noqa: F401  (the rollup helpers' old home)
    RETRY_WINDOW,
    SESSION_GAP_SECONDS,
    _transactions,
    apply_rollups,
    count_sessions,
    day_start,
    escape_key,
    insert_fresh,
    pack_applied,
    pack_seconds,
    pack_sessions,
    rebuild_rollups,
    rollup_documents,
    rollup_id,
    session_key,
    unescape_key,
    unpack_applied,
    unpack_seconds,
    unpack_sessions,
)
from console.db import find_in
from console.members import Member
from console.telemetry import prom
from console.timeutil import as_utc, utcnow
from console.validation import pydantic_errors, unstorable

MAX_BATCH = 1000
MAX_PROPERTIES_BYTES = 8 * 1024
FUTURE_TOLERANCE = timedelta(hours=1)


class Traits(BaseModel):
    """Profile fields sent with an event (an identify call); unknown ones are kept under `traits`."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    name: str | None = Field(None, max_length=200)


class TrackEvent(BaseModel):
    """One activity event."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    user_id: str = Field(min_length=1, max_length=200)
    event: str = Field(min_length=1, max_length=200)
    feature: str | None = Field(None, min_length=1, max_length=200)
    session_id: str | None = Field(None, min_length=1, max_length=200)
    properties: dict[str, Any] | None = None
    timestamp: datetime | None = None
    event_id: str | None = Field(None, min_length=1, max_length=200)
    traits: Traits | None = None

    @field_validator("timestamp")
    @classmethod
    def _plausible_timestamp(cls, value):
        # Backfills are welcome; times before the Unix epoch are typos and would overflow UTC arithmetic.
        if value is not None and value.year < 1970:
            raise ValueError("timestamp must be after 1970-01-01")
        return value

    @field_validator("properties")
    @classmethod
    def _small_properties(cls, value):
        if value is not None and len(json.dumps(value, default=str).encode()) > MAX_PROPERTIES_BYTES:
            raise ValueError(f"properties must be at most {MAX_PROPERTIES_BYTES} bytes of JSON")
        return value

    @field_validator("traits")
    @classmethod
    def _small_traits(cls, value):
        if value is not None and len(json.dumps(value.model_dump(), default=str).encode()) > MAX_PROPERTIES_BYTES:
            raise ValueError(f"traits must be at most {MAX_PROPERTIES_BYTES} bytes of JSON")
        return value


def validate_item(item: Any) -> tuple[TrackEvent | None, list[dict]]:
    """Return the parsed event, or the reasons it was rejected."""
    if not isinstance(item, dict):
        return None, [{"field": "body", "message": "each event must be a JSON object"}]
    bad = unstorable(item)
    if bad:
        return None, bad
    try:
        return TrackEvent.model_validate(item), []
    except ValidationError as error:
        return None, pydantic_errors(error)


def build_document(event: TrackEvent, now: datetime, batch: str = "") -> dict:
    timestamp = as_utc(event.timestamp) if event.timestamp else now
    doc = {
        "event_id": event.event_id or uuid.uuid4().hex,
        "batch": batch,  # the request that stored it: its rollup writes name it (see apply_rollups)
        "user_id": event.user_id,
        "event": event.event,
        "timestamp": timestamp,
        "received_at": now,
        "clamped": False,
    }
    if timestamp > now + FUTURE_TOLERANCE:
        doc.update(timestamp=now, clamped=True, client_timestamp=timestamp)
    for field in ("feature", "session_id"):
        value = getattr(event, field)
        if value is not None:
            doc[field] = value
    if event.properties:
        doc["properties"] = event.properties
    return doc


def prepare(items: list[Any], now: datetime) -> tuple[list[dict], dict[str, dict], list[dict]]:
    """Documents to store, traits per member, and the rejected items with their reasons."""
    rejected, docs, traits = [], [], {}
    batch = uuid.uuid4().hex[:16]
    for index, item in enumerate(items):
        event, errors = validate_item(item)
        if event is None:
            rejected.append({"index": index, "errors": errors})
            continue
        docs.append(build_document(event, now, batch))
        if event.traits:
            traits.setdefault(event.user_id, {}).update(event.traits.model_dump(exclude_none=True))
    return docs, traits, rejected


def ingest(items: list[Any], *, now: datetime | None = None, may_change_email: bool = True) -> dict:
    """Validate, store and roll up a batch. Returns accepted/duplicates/rejected counts (rejected with reasons).

    A retried batch whose first attempt stored its events but failed before rolling them up (the database
    went away between the two) has its duplicates rolled up now: rollup writes name the batches they applied.
    With ENGAGEMENT_FOLD=worker the rolling up is the worker's (fold.py): the request stores and answers.
    """
    now = now or utcnow()
    docs, traits, rejected = prepare(items, now)
    inserted = store_events(docs)
    stored = inserted
    if len(inserted) < len(docs):
        stored = inserted + earlier_attempts(docs, inserted, now)
    if fold.deferred() or fold.paused(now):  # the worker folds it (fold.py); an identify call still lands at once
        identified = [doc for doc in stored if doc["user_id"] in traits]
        touch_members(identified, traits, now, may_change_email=may_change_email)
        if stored:
            fold.defer(stored, now)
    else:
        if stored:
            apply_rollups(stored, now=now)
        touch_members(stored, traits, now, may_change_email=may_change_email)
    prom.count_ingest(len(inserted), len(docs) - len(inserted), len(rejected))
    return {
        "accepted": len(inserted),
        "duplicates": len(docs) - len(inserted),
        "rejected": rejected,
        "clamped": sum(1 for doc in inserted if doc["clamped"]),
    }


def earlier_attempts(docs: list[dict], inserted: list[dict], now: datetime) -> list[dict]:
    """The stored events behind this batch's duplicates, from other batches recent enough to be retries;
    apply_rollups skips those whose batch its member-day already names."""
    duplicates = {doc["event_id"] for doc in docs} - {doc["event_id"] for doc in inserted}
    fields = {"batch": 1, "user_id": 1, "event": 1, "feature": 1, "session_id": 1, "timestamp": 1}
    found = find_in(UserActivity._get_collection(), "event_id", sorted(duplicates), fields,
                    {"received_at": {"$gte": now - RETRY_WINDOW}, "batch": {"$exists": True}})
    return [{**doc, "timestamp": as_utc(doc["timestamp"])} for doc in found]


def backfill(items: list[Any], *, now: datetime | None = None) -> dict:
    """Like `ingest`, for large loads of history: members without rollups get theirs in one insert."""
    now = now or utcnow()
    docs, traits, rejected = prepare(items, now)
    inserted = store_events(docs)
    users = sorted({doc["user_id"] for doc in inserted})
    # A member has rollups exactly when they have a first_seen: both are written for every stored event.
    known = {row["user_id"] for row in find_in(Member._get_collection(), "user_id", users, {"user_id": 1},
                                               {"first_seen": {"$ne": None}})}
    fresh = [doc for doc in inserted if doc["user_id"] not in known]
    if fresh:
        insert_fresh(fresh)
    rest = [doc for doc in inserted if doc["user_id"] in known]
    if rest:
        apply_rollups(rest, now=now)
    touch_members(inserted, traits, now)
    return {"accepted": len(inserted), "duplicates": len(docs) - len(inserted), "rejected": rejected}


def store_events(docs: list[dict]) -> list[dict]:
    """Insert unordered; return only the documents actually stored (duplicates by event_id are skipped)."""
    if not docs:
        return []
    collection = UserActivity._get_collection()
    try:
        collection.insert_many(docs, ordered=False)
        return docs
    except BulkWriteError as error:
        failed = set()
        for write_error in error.details.get("writeErrors", []):
            if write_error.get("code") != 11000:
                raise
            failed.add(write_error["index"])
        return [doc for index, doc in enumerate(docs) if index not in failed]


def touch_members(docs: list[dict], traits: dict[str, dict], now: datetime, *, may_change_email: bool = True) -> None:
    """Create members on first sight, widen first_seen/last_seen, apply traits (email, name, others).

    Members are read first and only written when something changes: backfills and late, out-of-order batches
    then cost a read instead of a write per member."""
    seen: dict[str, list[datetime]] = {}
    for doc in docs:
        span = seen.setdefault(doc["user_id"], [doc["timestamp"], doc["timestamp"]])
        span[0], span[1] = min(span[0], doc["timestamp"]), max(span[1], doc["timestamp"])
    users = sorted(set(seen) | set(traits))
    if not users:
        return
    collection = Member._get_collection()
    stored = {row["user_id"]: row for row in find_in(
        collection, "user_id", users, {"user_id": 1, "first_seen": 1, "last_seen": 1, "email": 1})}
    ops, email_changes = [], []
    for user_id in users:
        row = stored.get(user_id)
        update: dict = {}
        if user_id in seen:
            first, last = seen[user_id]
            if row is None or not row.get("first_seen") or first < as_utc(row["first_seen"]):
                update["$min"] = {"first_seen": first}
            if row is None or not row.get("last_seen") or last > as_utc(row["last_seen"]):
                update["$max"] = {"last_seen": last}
        fields = {}
        for key, value in traits.get(user_id, {}).items():
            fields[key if key in {"email", "name"} else f"traits.{key}"] = value
        old_email = (row or {}).get("email")
        if "email" in fields and old_email and fields["email"] != old_email:
            if not may_change_email:  # an untrusted key may set a first address, never redirect a member's mail
                del fields["email"]
            else:
                change = {"from": old_email, "to": fields["email"], "at": now, "source": "ingest"}
                update["$push"] = {"email_history": change}
                email_changes.append((user_id, change))
        if fields:
            update["$set"] = fields
        if row is None:
            update["$setOnInsert"] = {"created_at": now}
            ops.append(UpdateOne({"user_id": user_id}, update, upsert=True))
        elif update:  # by _id: the server's cheapest path
            ops.append(UpdateOne({"_id": row["_id"]}, update))
    if ops:
        collection.bulk_write(ops, ordered=False)
    for user_id, change in email_changes:
        audit.record("member.email_changed", f"member:{user_id}", {"email": change["from"]}, {"email": change["to"]},
                     source="ingest traits")


OLD_ROLLUP_INDEX = "user_id_1_day_1"
RETIRED_ROLLUP_INDEXES = ("day_1_user_id_1",)


def migrate_rollup_ids() -> str | None:
    """Databases from before rollups were keyed by member-day: rebuild them from events, drop the old indexes."""
    collection = ActivityRollup._get_collection()
    present = collection.index_information()
    for name in RETIRED_ROLLUP_INDEXES:
        if name in present:
            collection.drop_index(name)
    if OLD_ROLLUP_INDEX not in present:
        return None
    collection.drop_index(OLD_ROLLUP_INDEX)
    return f"rollups rebuilt from {rebuild_rollups()} events, keyed by member-day"


def migrate_day_aggregates() -> str | None:
    """Databases from before the day aggregates: build them once from the rollups (no event is replayed)."""
    from console.blueprints.engagement import aggregates
    from console.blueprints.engagement.models import ActivityDay

    if ActivityDay._get_collection().find_one({}, {"_id": 1}) or not ActivityRollup._get_collection().find_one(
            {}, {"_id": 1}):
        return None
    return f"day aggregates built for {aggregates.rebuild(everything=True)} days"
