"""Activity ingestion: validate each event, insert in bulk with dedupe, keep rollups and members current."""

from __future__ import annotations

import hashlib
import json
import random
import struct
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pymongo import InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, OperationFailure

from console import audit
from console.blueprints.engagement.models import ActivityRollup, EngagementCache, RetentionCache, UserActivity
from console.blueprints.engagement.periods import period_fields
from console.db import find_in
from console.members import Member
from console.telemetry import prom
from console.timeutil import as_utc, utcnow
from console.validation import pydantic_errors, unstorable

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


@lru_cache(maxsize=4096)  # the same few event and feature names, thousands of times a second
def escape_key(name: str) -> str:
    """A feature or event name as a safe MongoDB field name (no dots, no leading $)."""
    return name.replace("%", "%25").replace(".", "%2E").replace("$", "%24").replace("\x00", "%00")


def unescape_key(key: str) -> str:
    return key.replace("%00", "\x00").replace("%2E", ".").replace("%24", "$").replace("%25", "%")


def session_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


def day_start(moment: datetime) -> datetime:
    return as_utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)


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
    """
    now = now or utcnow()
    docs, traits, rejected = prepare(items, now)
    inserted = store_events(docs)
    stored = inserted
    if len(inserted) < len(docs):
        stored = inserted + earlier_attempts(docs, inserted, now)
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
    fields = {"_id": 0, "batch": 1, "user_id": 1, "event": 1, "feature": 1, "session_id": 1, "timestamp": 1}
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
        ActivityRollup._get_collection().insert_many(rollup_documents(fresh), ordered=False)
        invalidate_caches(min(day_start(doc["timestamp"]) for doc in fresh))
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


def _group(docs: list[dict]) -> dict[tuple[str, datetime], dict]:
    """What the stored events add to each member-day: counts, names, session spans and gap-session seconds."""
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
    return groups


def pack_seconds(seconds) -> bytes:
    """Sorted seconds of a day as one binary value: a rollup stays one small document however busy the day."""
    values = sorted(seconds)
    return struct.pack(f">{len(values)}I", *values)


def unpack_seconds(value) -> list[int]:
    if not value:
        return []
    if isinstance(value, list):
        return sorted(value)
    raw = bytes(value)
    return list(struct.unpack(f">{len(raw) // 4}I", raw))


SESSION_SPAN = struct.Struct(">8sII")  # session key (8 bytes of its hash), first and last second of the day
APPLIED_BATCH = struct.Struct(">8sI")  # batch token (8 bytes), when it was applied (Unix seconds)


def pack_sessions(sid: dict[str, dict]) -> bytes:
    """Session spans as one binary value: the server handles one element instead of three per session."""
    return b"".join(SESSION_SPAN.pack(bytes.fromhex(key), span["a"], span["b"]) for key, span in sorted(sid.items()))


def unpack_sessions(value) -> dict[str, dict]:
    """{session key: {"a": first second, "b": last second}} from a packed value (or the older mapping)."""
    if not value:
        return {}
    if isinstance(value, dict):
        return {key: dict(span) for key, span in value.items()}
    return {key.hex(): {"a": start, "b": end} for key, start, end in SESSION_SPAN.iter_unpack(bytes(value))}


def pack_applied(applied: dict[str, datetime]) -> bytes:
    """Batch tokens (16 hex digits, see prepare) with when they were applied, as one binary value."""
    return b"".join(APPLIED_BATCH.pack(bytes.fromhex(batch), int(at.timestamp())) for batch, at in applied.items())


def unpack_applied(value) -> dict[str, datetime]:
    """{batch key: when applied} from a packed value (or the older mapping)."""
    if not value:
        return {}
    if isinstance(value, dict):
        return {batch: as_utc(at) for batch, at in value.items()}
    return {batch.hex(): datetime.fromtimestamp(at, UTC) for batch, at in APPLIED_BATCH.iter_unpack(bytes(value))}


def _merged(row: dict | None, group: dict | None) -> dict:
    """The session-relevant part of a rollup after adding `group` to the stored `row`."""
    sid = unpack_sessions((row or {}).get("sid"))
    for key, (start, end) in ((group or {}).get("sid") or {}).items():
        span = sid.setdefault(key, {"a": start, "b": end})
        span["a"], span["b"] = min(span.get("a", start), start), max(span.get("b", end), end)
    stamps = set(unpack_seconds((row or {}).get("ts"))) | set((group or {}).get("ts") or ())
    return {"ts": sorted(stamps), "sid": sid}


def rollup_id(user_id: str, day: datetime) -> str:
    """A rollup's `_id`: the member and the UTC day, so reads and writes by member-day need no secondary index."""
    return f"{user_id}|{as_utc(day):%Y-%m-%d}"


def _next_version(row: dict | None, group: dict, merged: dict, sessions: int, seconds: int) -> dict:
    """The whole rollup document after adding `group` (events of one member-day) to the stored `row`."""
    row = row or {}
    features, names = Counter(row.get("features") or {}), Counter(row.get("names") or {})
    features.update(group["features"])
    names.update(group["names"])
    first, last = as_utc(row.get("first_at")), as_utc(row.get("last_at"))
    day = day_start(group["first"])
    return {
        "user_id": group["user_id"], "day": day, **period_fields(day),
        "events": row.get("events", 0) + group["events"], "sessions": sessions, "session_seconds": seconds,
        "features": dict(features), "names": dict(names), "ts": pack_seconds(merged["ts"]),
        "sid": pack_sessions(merged["sid"]),
        "first_at": min(first, group["first"]) if first else group["first"],
        "last_at": max(last, group["last"]) if last else group["last"], "v": row.get("v", 0) + 1,
    }


MAX_ATTEMPTS = 8
RETRY_WINDOW = timedelta(minutes=15)  # how long a rollup remembers the batches it applied
MAX_APPLIED = 500


def apply_rollups(docs: list[dict], *, now: datetime | None = None) -> None:
    """Write the per-member-day rollups for stored events, with exact session counts, in one bulk write.

    The touched days (and the neighbours sessions depend on) are read, then rewritten whole. Usually that is one
    transaction (see _write_in_transaction). When another request writes the same member-days at the same time,
    each write instead lands only over the version it read (`v`): a write that lost a race (a new day someone
    else created collides on `_id`; a replace over a version that moved on matches nothing, see _lost) is
    recomputed from a fresh read and written again, for just those member-days, so busy members do not stall
    everyone. Each write also records the batches it applied (`applied`, for RETRY_WINDOW), so events of a
    batch are added to a member-day once, however many requests carry them.
    """
    now = now or utcnow()
    parts: dict[tuple[str, datetime], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for doc in docs:
        parts[(doc["user_id"], day_start(doc["timestamp"]))][doc.get("batch") or ""].append(doc)
    if not _write_in_transaction(parts, day_start(now), now):
        pending = dict(parts)
        for attempt in range(MAX_ATTEMPTS):
            lost = _write_rollups(pending, day_start(now), now)
            if not lost:
                break
            pending = {key: parts[key] for key in lost}
            time.sleep(random.uniform(0, 0.005 * 2 ** attempt))  # let the request that won finish its round
        else:
            raise RuntimeError(f"rollups of {len(pending)} member-days kept changing under this request")
    invalidate_caches(min(day for _, day in parts))


class _Conflict(Exception):
    """A write in the transaction did not land as read: another request got there first."""


_transactions = {"supported": True}  # a standalone MongoDB has none; learnt on the first refusal
NO_TRANSACTIONS = 20  # IllegalOperation: "Transaction numbers are only allowed on a replica set member or mongos"


def _write_in_transaction(parts: dict[tuple[str, datetime], dict[str, list[dict]]], today: datetime,
                          now: datetime) -> bool:
    """Read and write the member-days in one transaction; False (nothing written) when it met a concurrent write.

    The transaction's snapshot turns any concurrent change of a member-day it writes into a write conflict, so its
    writes need no version in their filter: the server serves a filter on `_id` alone by a direct lookup, while a
    filter that also names `v` is planned like a query, write after write."""
    if not _transactions["supported"]:
        return False
    collection = ActivityRollup._get_collection()
    with collection.database.client.start_session() as session:
        try:
            with session.start_transaction():
                _write_rollups(parts, today, now, session=session)
        except _Conflict:
            return False
        except OperationFailure as error:  # a write conflict or a day created meanwhile; the transaction is void
            if error.code == NO_TRANSACTIONS:
                _transactions["supported"] = False
            return False
    return True


def _applied(named: dict[str, datetime], batches, now: datetime) -> bytes:
    """The batches a rollup names after this write (packed): recent ones, the newest MAX_APPLIED at most."""
    kept = {batch: at for batch, at in named.items() if at >= now - RETRY_WINDOW}
    kept.update({batch: now for batch in batches if batch})
    return pack_applied(dict(sorted(kept.items(), key=lambda item: item[1])[-MAX_APPLIED:]))


def _needed_keys(groups: dict[tuple[str, datetime], dict], today: datetime) -> set[tuple[str, datetime]]:
    """The member-days to read: the touched ones, the day before (sessions continue across midnight) and the
    day after when it may already hold a session that continues one of these days."""
    keys = set(groups)
    for user_id, day in groups:
        keys.add((user_id, day - DAY))
        if day < today:
            keys.add((user_id, day + DAY))
    return keys


def _write_rollups(parts: dict[tuple[str, datetime], dict[str, list[dict]]], today: datetime,
                   now: datetime, session=None) -> list[tuple[str, datetime]]:
    """One read and one unordered bulk write; returns the member-days whose write lost a race.

    Within a transaction (`session`), writes name no version and a lost race raises instead."""
    collection = ActivityRollup._get_collection()
    ids = [rollup_id(user_id, day) for user_id, day in _needed_keys(parts, today)]
    stored = {(row["user_id"], as_utc(row["day"])): row for row in find_in(collection, "_id", ids, session=session)}
    groups, batches, named = {}, {}, {}
    for key, by_batch in parts.items():
        named[key] = unpack_applied((stored.get(key) or {}).get("applied"))
        fresh = [batch for batch in by_batch if not batch or batch not in named[key]]
        if fresh:
            groups[key] = _group([doc for batch in fresh for doc in by_batch[batch]])[key]
            batches[key] = fresh
    merged = {key: _merged(stored.get(key), group) for key, group in groups.items()}

    def state(key):
        return merged.get(key) or stored.get(key)

    def current(row):
        return {"_id": row["_id"]} if session else {"_id": row["_id"], "v": row.get("v")}

    ops, keys = [], []
    for key, group in groups.items():
        row = stored.get(key)
        sessions, seconds = count_sessions(merged[key], state((key[0], key[1] - DAY)))
        doc = _next_version(row, {**group, "user_id": key[0]}, merged[key], sessions, seconds)
        doc["applied"] = _applied(named[key], batches[key], now)
        if row is None:  # another request creating the day meanwhile makes this collide on _id
            ops.append(InsertOne({"_id": rollup_id(*key), **doc}))
        else:  # a version that moved on matches nothing: see _lost
            ops.append(ReplaceOne(current(row), doc))
        keys.append(key)
    for user_id, day in groups:  # the next day may continue one of today's sessions
        after = (user_id, day + DAY)
        row = stored.get(after)
        if row is None or after in groups:
            continue
        sessions, seconds = count_sessions(row, merged[(user_id, day)])
        if sessions != row.get("sessions") or seconds != row.get("session_seconds"):
            ops.append(UpdateOne(current(row),
                                 {"$set": {"sessions": sessions, "session_seconds": seconds}, "$inc": {"v": 1}}))
    if not ops:
        return []
    replaced = [key for key in keys if key in stored]
    updates = len(ops) - len(keys) + len(replaced)  # every op but the inserts of new days must match
    if session:  # a write error aborts the transaction and propagates
        result = collection.bulk_write(ops, ordered=False, session=session).bulk_api_result
        if result.get("nMatched", 0) < updates:
            raise _Conflict  # a member-day read was deleted meanwhile (a rebuild)
        return []
    lost = []
    try:
        result = collection.bulk_write(ops, ordered=False).bulk_api_result
    except BulkWriteError as error:
        result = error.details
        for write_error in result.get("writeErrors", []):
            if write_error.get("code") != 11000 or write_error["index"] >= len(keys):
                raise
            lost.append(keys[write_error["index"]])
    if result.get("nMatched", 0) < updates:  # some update matched nothing
        lost += _lost(collection, replaced, batches)
    return lost


def _lost(collection, keys: list[tuple[str, datetime]], batches: dict) -> list[tuple[str, datetime]]:
    """Of the member-days just replaced, those that do not name this write's batches: the version had moved on.

    (Cheaper than upserts that collide: the server's plain replace is its fastest write, and races are rare.)"""
    found = {(row["user_id"], as_utc(row["day"])): unpack_applied(row.get("applied"))
             for row in find_in(collection, "_id", [rollup_id(*key) for key in keys],
                                {"user_id": 1, "day": 1, "applied": 1})}
    return [key for key in keys if not all(batch in found.get(key, {}) for batch in batches[key] if batch)]


def count_sessions(doc: dict, previous: dict | None) -> tuple[int, int]:
    """Sessions that start on this day and the seconds spent in sessions on it.

    A session continues across midnight: an id seen the day before, or a gap-session event less than 30 minutes
    after the previous day's last one, does not start a new session.
    """
    sessions, seconds = 0, 0
    earlier_sids = set(unpack_sessions((previous or {}).get("sid")))
    for key, span in unpack_sessions(doc.get("sid")).items():
        seconds += span.get("b", 0) - span.get("a", 0)
        if key not in earlier_sids:
            sessions += 1
    previous_stamps = unpack_seconds((previous or {}).get("ts"))
    last = previous_stamps[-1] - 86400 if previous_stamps else None
    start = None
    for second in unpack_seconds(doc.get("ts")):
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


def invalidate_caches(since: datetime) -> None:
    """Drop cached results whose range reaches the first day that just changed."""
    for model in (EngagementCache, RetentionCache):
        model._get_collection().delete_many({"$or": [{"range_to": {"$gte": since}}, {"range_to": None}]})


def rollup_documents(docs: list[dict], previous: dict | None = None) -> list[dict]:
    """Complete rollup documents for events of member-days that have no rollup yet (rebuilds, bulk loads).

    `previous` maps (user_id, day) to stored rollups of days just before, for sessions crossing midnight."""
    groups = _group(docs)
    merged = {key: _merged(None, group) for key, group in groups.items()}
    now = utcnow()
    batches = defaultdict(set)  # recent batches are named, so their retries are not added twice
    for doc in docs:
        if doc.get("batch") and as_utc(doc.get("received_at") or now) >= now - RETRY_WINDOW:
            batches[(doc["user_id"], day_start(doc["timestamp"]))].add(doc["batch"])
    out = []
    for (user_id, day), group in groups.items():
        before = merged.get((user_id, day - DAY)) or (previous or {}).get((user_id, day - DAY))
        sessions, seconds = count_sessions(merged[(user_id, day)], before)
        out.append({"_id": rollup_id(user_id, day), **_next_version(
            None, {**group, "user_id": user_id}, merged[(user_id, day)], sessions, seconds),
            "applied": _applied({}, batches[(user_id, day)], now)})
    return out


def rebuild_rollups(start: datetime | None = None, end: datetime | None = None, user_ids: list[str] | None = None,
                    chunk: int = 200) -> int:
    """Rebuild the rollups of days [start, end] (default: all) from raw events, a few members at a time.

    For repairs and the hardening task. Returns the number of events replayed."""
    events = UserActivity._get_collection()
    rollups = ActivityRollup._get_collection()
    first = day_start(start) if start else None
    last = day_start(end) if end else None
    targets = user_ids or sorted(events.distinct("user_id"))
    fields = {"user_id": 1, "event": 1, "feature": 1, "session_id": 1, "timestamp": 1, "batch": 1, "received_at": 1}
    everything = not (user_ids or first or last)
    if everything:
        rollups.delete_many({})
    total = 0
    for offset in range(0, len(targets), chunk):
        members = {"$in": targets[offset: offset + chunk]}
        stamps, days = {}, {}
        if first:
            stamps["$gte"], days["$gte"] = first, first
        if last:
            stamps["$lt"], days["$lte"] = last + DAY, last
        docs = list(events.find({"user_id": members, **({"timestamp": stamps} if stamps else {})}, fields))
        for doc in docs:
            doc["timestamp"] = as_utc(doc["timestamp"])
        previous = {}
        if first:
            ids = [rollup_id(user_id, first - DAY) for user_id in members["$in"]]
            previous = {(row["user_id"], first - DAY): row
                        for row in find_in(rollups, "_id", ids, {"user_id": 1, "ts": 1, "sid": 1})}
        if not everything:
            rollups.delete_many({"user_id": members, **({"day": days} if days else {})})
        if docs:
            rollups.insert_many(rollup_documents(docs, previous), ordered=False)
        total += len(docs)
    invalidate_caches(first or datetime.min.replace(tzinfo=UTC))
    return total


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
