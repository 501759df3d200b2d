"""Activity ingestion: validate each event, insert in bulk with dedupe, keep rollups and members current."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from console.apikit import operator_keys, pydantic_errors
from console.models.engagement import ActivityRollup, EngagementCache, RetentionCache, UserActivity
from console.models.member import Member
from console.timeutil import as_utc, utcnow

MAX_BATCH = 1000
MAX_PROPERTIES_BYTES = 8 * 1024
FUTURE_TOLERANCE = timedelta(hours=1)
SESSION_GAP_SECONDS = 30 * 60
DAY = timedelta(days=1)


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


def escape_key(name: str) -> str:
    """A feature or event name as a safe MongoDB field name (no dots, no leading $)."""
    return name.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def unescape_key(key: str) -> str:
    return key.replace("%2E", ".").replace("%24", "$").replace("%25", "%")


def session_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


def day_start(moment: datetime) -> datetime:
    return as_utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)


def validate_item(item: Any) -> tuple[TrackEvent | None, list[dict]]:
    """Return the parsed event, or the reasons it was rejected."""
    if not isinstance(item, dict):
        return None, [{"field": "body", "message": "each event must be a JSON object"}]
    bad = operator_keys(item)
    if bad:
        return None, [{"field": path, "message": "keys may not start with '$' or contain '.'"} for path in bad]
    try:
        return TrackEvent.model_validate(item), []
    except ValidationError as error:
        return None, pydantic_errors(error)


def build_document(event: TrackEvent, now: datetime) -> dict:
    timestamp = as_utc(event.timestamp) if event.timestamp else now
    doc = {
        "event_id": event.event_id or uuid.uuid4().hex,
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


def ingest(items: list[Any], *, now: datetime | None = None) -> dict:
    """Validate, store and roll up a batch. Returns accepted/duplicates/rejected counts (rejected with reasons)."""
    now = now or utcnow()
    rejected, docs, traits = [], [], {}
    for index, item in enumerate(items):
        event, errors = validate_item(item)
        if event is None:
            rejected.append({"index": index, "errors": errors})
            continue
        docs.append(build_document(event, now))
        if event.traits:
            traits.setdefault(event.user_id, {}).update(event.traits.model_dump(exclude_none=True))
    inserted = store_events(docs)
    if inserted:
        apply_rollups(inserted)
    touch_members(inserted, traits, now)
    return {
        "accepted": len(inserted),
        "duplicates": len(docs) - len(inserted),
        "rejected": rejected,
        "clamped": sum(1 for doc in inserted if doc["clamped"]),
    }


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


def apply_rollups(docs: list[dict]) -> None:
    """Upsert the per-member-day rollups for stored events, then recount sessions of the touched days."""
    groups: dict[tuple[str, datetime], dict] = defaultdict(lambda: {
        "events": 0, "features": defaultdict(int), "names": defaultdict(int), "ts": set(), "sid": {},
        "first": None, "last": None})
    for doc in docs:
        stamp = doc["timestamp"]
        day = day_start(stamp)
        group = groups[(doc["user_id"], day)]
        group["events"] += 1
        group["names"][escape_key(doc["event"])] += 1
        if doc.get("feature"):
            group["features"][escape_key(doc["feature"])] += 1
        second = int((stamp - day).total_seconds())
        if doc.get("session_id"):
            span = group["sid"].setdefault(session_key(doc["session_id"]), [second, second])
            span[0], span[1] = min(span[0], second), max(span[1], second)
        else:
            group["ts"].add(second)
        group["first"] = stamp if group["first"] is None else min(group["first"], stamp)
        group["last"] = stamp if group["last"] is None else max(group["last"], stamp)

    ops = []
    for (user_id, day), group in groups.items():
        inc = {"events": group["events"], "v": 1}
        inc.update({f"features.{key}": n for key, n in group["features"].items()})
        inc.update({f"names.{key}": n for key, n in group["names"].items()})
        minimum = {"first_at": group["first"]}
        maximum = {"last_at": group["last"]}
        for key, (start, end) in group["sid"].items():
            minimum[f"sid.{key}.a"] = start
            maximum[f"sid.{key}.b"] = end
        update = {"$inc": inc, "$min": minimum, "$max": maximum}
        if group["ts"]:
            update["$addToSet"] = {"ts": {"$each": sorted(group["ts"])}}
        ops.append(UpdateOne({"user_id": user_id, "day": day}, update, upsert=True))
    collection = ActivityRollup._get_collection()
    collection.bulk_write(ops, ordered=False)
    recount_sessions({(user_id, day) for user_id, day in groups})
    invalidate_caches(min(day for _, day in groups))


def count_sessions(doc: dict, previous: dict | None) -> tuple[int, int]:
    """Sessions that start on this day and the seconds spent in sessions on it.

    A session continues across midnight: an id seen the day before, or a gap-session event less than 30 minutes
    after the previous day's last one, does not start a new session.
    """
    sessions, seconds = 0, 0
    earlier_sids = set((previous or {}).get("sid", {}))
    for key, span in (doc.get("sid") or {}).items():
        seconds += span.get("b", 0) - span.get("a", 0)
        if key not in earlier_sids:
            sessions += 1
    stamps = sorted(doc.get("ts") or [])
    previous_stamps = (previous or {}).get("ts") or []
    last = max(previous_stamps) - 86400 if previous_stamps else None
    start = None
    for second in stamps:
        if last is None or second - last >= SESSION_GAP_SECONDS:
            if start is not None:
                seconds += last - start
            sessions += 1
            start = second
        elif start is None:  # continues yesterday's session from midnight
            start = 0
        last = second
    if start is not None:
        seconds += last - start
    return sessions, seconds


def recount_sessions(touched: set[tuple[str, datetime]]) -> None:
    """Recompute sessions for touched member-days and the day after each (which may continue a session)."""
    users = sorted({user_id for user_id, _ in touched})
    days = [day for _, day in touched]
    collection = ActivityRollup._get_collection()
    rows = collection.find(
        {"user_id": {"$in": users}, "day": {"$gte": min(days) - DAY, "$lte": max(days) + DAY}},
        {"user_id": 1, "day": 1, "ts": 1, "sid": 1, "sessions": 1, "session_seconds": 1, "v": 1},
    )
    by_key = {(row["user_id"], as_utc(row["day"])): row for row in rows}
    targets = touched | {(user_id, day + DAY) for user_id, day in touched}
    ops = []
    for key in targets:
        row = by_key.get(key)
        if row is None:
            continue
        sessions, seconds = count_sessions(row, by_key.get((key[0], key[1] - DAY)))
        if sessions != row.get("sessions") or seconds != row.get("session_seconds"):
            ops.append(UpdateOne({"_id": row["_id"], "v": row.get("v", 0)},
                                 {"$set": {"sessions": sessions, "session_seconds": seconds}}))
    if ops:
        collection.bulk_write(ops, ordered=False)


def touch_members(docs: list[dict], traits: dict[str, dict], now: datetime) -> None:
    """Create members on first sight, widen first_seen/last_seen, apply traits (email, name, others)."""
    seen: dict[str, list[datetime]] = {}
    for doc in docs:
        span = seen.setdefault(doc["user_id"], [doc["timestamp"], doc["timestamp"]])
        span[0], span[1] = min(span[0], doc["timestamp"]), max(span[1], doc["timestamp"])
    ops = []
    for user_id in sorted(set(seen) | set(traits)):
        update: dict = {"$setOnInsert": {"created_at": now}}
        if user_id in seen:
            update["$min"] = {"first_seen": seen[user_id][0]}
            update["$max"] = {"last_seen": seen[user_id][1]}
        fields = {}
        for key, value in traits.get(user_id, {}).items():
            fields[key if key in {"email", "name"} else f"traits.{key}"] = value
        if fields:
            update["$set"] = fields
        ops.append(UpdateOne({"user_id": user_id}, update, upsert=True))
    if ops:
        Member._get_collection().bulk_write(ops, ordered=False)


def invalidate_caches(since: datetime) -> None:
    """Drop cached results whose range reaches the first day that just changed."""
    for model in (EngagementCache, RetentionCache):
        model._get_collection().delete_many({"$or": [{"range_to": {"$gte": since}}, {"range_to": None}]})


def rebuild_rollups(user_ids: list[str] | None = None, batch: int = 5000) -> int:
    """Rebuild rollups (and first/last seen) from raw events; for repairs and the hardening task."""
    query = {"user_id": {"$in": user_ids}} if user_ids else {}
    ActivityRollup._get_collection().delete_many(query)
    fields = {"user_id": 1, "event": 1, "feature": 1, "session_id": 1, "timestamp": 1}
    chunk, total = [], 0
    for doc in UserActivity._get_collection().find(query, fields).sort("timestamp", 1):
        doc["timestamp"] = as_utc(doc["timestamp"])
        chunk.append(doc)
        if len(chunk) >= batch:
            apply_rollups(chunk)
            total += len(chunk)
            chunk = []
    if chunk:
        apply_rollups(chunk)
        total += len(chunk)
    return total
