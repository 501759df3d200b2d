"""Per-member-per-day rollups: what stored events add to each member's local day, written exactly once.

`apply_rollups` builds the writes (`_plan`) and runs them one of two ways: in one transaction
(`_run_in_transaction`) or, without transactions or after a conflict, as version-checked writes redone for the
member-days that lost a race (`_run_checked`). What landed is handed to `aggregates.apply` as per-day deltas.
"""

from __future__ import annotations

import hashlib
import random
import struct
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from pymongo import InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, OperationFailure

from console.blueprints.engagement import aggregates, fold
from console.blueprints.engagement.models import ActivityRollup, UserActivity
from console.blueprints.engagement.periods import as_day, day_length, local_midnight, period_fields, zone
from console.db import find_in
from console.timeutil import as_utc, utcnow

SESSION_GAP_SECONDS = 30 * 60
DAY = timedelta(days=1)
MAX_ATTEMPTS = 8
RETRY_WINDOW = timedelta(minutes=15)  # how long a rollup remembers the batches it applied
MAX_APPLIED = 500
WRITERS_KEPT = 8  # the tokens of the last writes a rollup remembers (`ws`), to tell which racing write landed


@lru_cache(maxsize=4096)  # the same few event and feature names, thousands of times a second
def escape_key(name: str) -> str:
    """A feature or event name as a safe MongoDB field name (no dots, no leading $)."""
    return name.replace("%", "%25").replace(".", "%2E").replace("$", "%24").replace("\x00", "%00")


def unescape_key(key: str) -> str:
    return key.replace("%00", "\x00").replace("%2E", ".").replace("%24", "$").replace("%25", "%")


def session_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


def day_start(moment: datetime) -> datetime:
    """The label of the analytics-zone day holding `moment` (see periods)."""
    return as_day(as_utc(moment))


def rollup_id(user_id: str, day: datetime) -> str:
    """A rollup's `_id`: the member and the local day, so reads and writes by member-day need no secondary index."""
    return f"{user_id}|{as_utc(day):%Y-%m-%d}"


def _group(docs: list[dict]) -> dict[tuple[str, datetime], dict]:
    """What the stored events add to each member-day: counts, names, session spans and gap-session seconds."""
    tz = zone()
    midnights: dict[datetime, datetime] = {}
    groups: dict[tuple[str, datetime], dict] = defaultdict(lambda: {
        "events": 0, "features": defaultdict(int), "names": defaultdict(int), "ts": set(), "sid": {},
        "first": None, "last": None})
    for doc in docs:
        stamp = doc["timestamp"]
        day = as_day(stamp, tz)
        midnight = midnights.get(day) or midnights.setdefault(day, local_midnight(day, tz))
        group = groups[(doc["user_id"], day)]
        group["events"] += 1
        group["names"][escape_key(doc["event"])] += 1
        if doc.get("feature"):
            group["features"][escape_key(doc["feature"])] += 1
        second = int((stamp - midnight).total_seconds())
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
    """Batch tokens (16 hex digits, see ingest.prepare) with when they were applied, as one binary value."""
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


def _next_version(row: dict | None, group: dict, merged: dict, sessions: int, seconds: int) -> dict:
    """The whole rollup document after adding `group` (events of one member-day) to the stored `row`."""
    row = row or {}
    features, names = Counter(row.get("features") or {}), Counter(row.get("names") or {})
    features.update(group["features"])
    names.update(group["names"])
    first, last = as_utc(row.get("first_at")), as_utc(row.get("last_at"))
    day = group["day"]
    return {
        "user_id": group["user_id"], "day": day, **period_fields(day),
        "events": row.get("events", 0) + group["events"], "sessions": sessions, "session_seconds": seconds,
        "features": dict(features), "names": dict(names), "ts": pack_seconds(merged["ts"]),
        "sid": pack_sessions(merged["sid"]),
        "first_at": min(first, group["first"]) if first else group["first"],
        "last_at": max(last, group["last"]) if last else group["last"], "v": row.get("v", 0) + 1,
    }


def count_sessions(doc: dict, previous: dict | None, previous_length: int = 86400) -> tuple[int, int]:
    """Sessions that start on this day and the seconds spent in sessions on it.

    A session continues across midnight: an id seen the day before, or a gap-session event less than 30 minutes
    after the previous day's last one (`previous_length` seconds long: 23 or 25 hours on a clock change), does not
    start a new session.
    """
    sessions, seconds = 0, 0
    earlier_sids = set(unpack_sessions((previous or {}).get("sid")))
    for key, span in unpack_sessions(doc.get("sid")).items():
        seconds += span.get("b", 0) - span.get("a", 0)
        if key not in earlier_sids:
            sessions += 1
    previous_stamps = unpack_seconds((previous or {}).get("ts"))
    last = previous_stamps[-1] - previous_length if previous_stamps else None
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


def _sessions_of(doc: dict, previous: dict | None, day: datetime) -> tuple[int, int]:
    return count_sessions(doc, previous, day_length(day - DAY))


# --- writing ---------------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """The writes for some member-days, and what each adds to the day aggregates."""

    ops: list = field(default_factory=list)
    keys: list = field(default_factory=list)  # the member-day of each of the first len(keys) ops
    replaced: list = field(default_factory=list)  # of those, the ones that exist (their replace must match)
    batches: dict = field(default_factory=dict)
    deltas: list = field(default_factory=list)  # per op: aggregates.Delta
    targets: list = field(default_factory=list)  # per op: the rollup `_id` it writes
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])  # names this plan's writes (`ws`)


def apply_rollups(docs: list[dict], *, now: datetime | None = None) -> None:
    """Write the per-member-day rollups for stored events, with exact session counts, in one bulk write.

    The touched days (and the neighbours sessions depend on) are read, then rewritten whole. Usually that is one
    transaction (see _run_in_transaction). When another request writes the same member-days at the same time,
    each write instead lands only over the version it read (`v`): a write that lost a race (a new day someone
    else created collides on `_id`; a replace over a version that moved on matches nothing, see _lost) is
    recomputed from a fresh read and written again, for just those member-days, so busy members do not stall
    everyone. Each write also records the batches it applied (`applied`, for RETRY_WINDOW), so events of a
    batch are added to a member-day once, however many requests carry them. Then the day aggregates get what
    landed (their bitmaps are sets, so adding a member again is harmless).
    """
    now = now or utcnow()
    parts: dict[tuple[str, datetime], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for doc in docs:
        parts[(doc["user_id"], day_start(doc["timestamp"]))][doc.get("batch") or ""].append(doc)
    today = day_start(now)
    deltas = _run_in_transaction(parts, today, now)
    if deltas is None:
        deltas, pending = [], dict(parts)
        for attempt in range(MAX_ATTEMPTS):
            landed, lost = _run_checked(pending, today, now)
            deltas += landed
            if not lost:
                break
            pending = {key: parts[key] for key in lost}
            time.sleep(random.uniform(0, 0.005 * 2 ** attempt))  # let the request that won finish its round
        else:
            raise RuntimeError(f"rollups of {len(pending)} member-days kept changing under this request")
    aggregates.apply(docs, deltas)


class _Conflict(Exception):
    """A write in the transaction did not land as read: another request got there first."""


_transactions = {"supported": True}  # a standalone MongoDB has none; learnt on the first refusal
NO_TRANSACTIONS = 20  # IllegalOperation: "Transaction numbers are only allowed on a replica set member or mongos"


def _read(parts, today: datetime, session=None) -> dict[tuple[str, datetime], dict]:
    collection = ActivityRollup._get_collection()
    ids = [rollup_id(user_id, day) for user_id, day in _needed_keys(parts, today)]
    return {(row["user_id"], as_utc(row["day"])): row for row in find_in(collection, "_id", ids, session=session)}


def _run_in_transaction(parts, today: datetime, now: datetime) -> list | None:
    """Read and write the member-days in one transaction; None (nothing written) when it met a concurrent write.

    The writes still name the version they read: the day aggregates add each write's change of sessions against
    the row it read, so a write must never land over a version it did not read, even where a server's snapshot
    does not see a concurrent write outside transactions (SecantusDB under `make load` did not)."""
    if not _transactions["supported"]:
        return None
    collection = ActivityRollup._get_collection()
    with collection.database.client.start_session() as session:
        try:
            with session.start_transaction():
                plan = _plan(parts, _read(parts, today, session), now, versioned=True)
                if plan.ops:
                    result = collection.bulk_write(plan.ops, ordered=False, session=session).bulk_api_result
                    if result.get("nMatched", 0) < _must_match(plan):
                        raise _Conflict  # a member-day read was deleted meanwhile (a rebuild)
        except _Conflict:
            return None
        except OperationFailure as error:  # a write conflict or a day created meanwhile; the transaction is void
            if error.code == NO_TRANSACTIONS:
                _transactions["supported"] = False
            return None
    return plan.deltas


def _must_match(plan: _Plan) -> int:
    """Every op but the inserts of new days must match a document."""
    return len(plan.ops) - len(plan.keys) + len(plan.replaced)


def _run_checked(parts, today: datetime, now: datetime) -> tuple[list, list]:
    """Version-checked writes: (deltas of the writes that landed, member-days that lost a race and are redone)."""
    collection = ActivityRollup._get_collection()
    plan = _plan(parts, _read(parts, today), now, versioned=True)
    if not plan.ops:
        return [], []
    failed: set[int] = set()
    try:
        result = collection.bulk_write(plan.ops, ordered=False).bulk_api_result
    except BulkWriteError as error:
        result = error.details
        for write_error in result.get("writeErrors", []):
            if write_error.get("code") != 11000 or write_error["index"] >= len(plan.keys):
                raise
            failed.add(write_error["index"])
    lost = [plan.keys[index] for index in sorted(failed)]
    if _must_match(plan) - result.get("nMatched", 0) > 0:  # some update matched nothing
        found = {row["_id"]: row for row in find_in(
            collection, "_id", [target for index, target in enumerate(plan.targets) if index not in failed],
            {"user_id": 1, "day": 1, "applied": 1, "ws": 1})}
        lost += _lost(found, plan.replaced, plan.batches)
        # Which writes landed: those whose member-day names this plan's token (a replace whose batches another
        # attempt applied first is not lost, yet did not land; its change must not count twice).
        failed |= {index for index, target in enumerate(plan.targets)
                   if plan.token not in (found.get(target) or {}).get("ws", [])}
    return [delta for index, delta in enumerate(plan.deltas) if index not in failed], lost


def _applied(named: dict[str, datetime], batches, now: datetime) -> bytes:
    """The batches a rollup names after this write (packed): recent ones, the newest MAX_APPLIED at most."""
    kept = {batch: at for batch, at in named.items() if at >= now - RETRY_WINDOW}
    kept.update({batch: now for batch in batches if batch})
    return pack_applied(dict(sorted(kept.items(), key=lambda item: item[1])[-MAX_APPLIED:]))


def _needed_keys(groups, today: datetime) -> set[tuple[str, datetime]]:
    """The member-days to read: the touched ones, the day before (sessions continue across midnight) and the
    day after when it may already hold a session that continues one of these days."""
    keys = set(groups)
    for user_id, day in groups:
        keys.add((user_id, day - DAY))
        if day < today:
            keys.add((user_id, day + DAY))
    return keys


def _plan(parts, stored: dict, now: datetime, *, versioned: bool) -> _Plan:
    """The rollup writes for `parts` over the `stored` rows: a whole new version of each touched member-day (minus
    batches it already names) and the session fix-up of a following day a touched day's session continues into."""
    plan = _Plan()
    groups, named = _fresh_groups(parts, stored, plan)
    merged = {key: _merged(stored.get(key), group) for key, group in groups.items()}

    def current(row):
        return {"_id": row["_id"], "v": row.get("v")} if versioned else {"_id": row["_id"]}

    for key, group in groups.items():
        row = stored.get(key)
        before = merged.get((key[0], key[1] - DAY)) or stored.get((key[0], key[1] - DAY))
        sessions, seconds = _sessions_of(merged[key], before, key[1])
        doc = _next_version(row, {**group, "user_id": key[0], "day": key[1]}, merged[key], sessions, seconds)
        doc["applied"] = _applied(named[key], plan.batches[key], now)
        doc["ws"] = [*((row or {}).get("ws") or [])[-(WRITERS_KEPT - 1):], plan.token]
        if row is None:  # another request creating the day meanwhile makes this collide on _id
            plan.ops.append(InsertOne({"_id": rollup_id(*key), **doc}))
        else:  # a version that moved on matches nothing: see _lost
            plan.ops.append(ReplaceOne(current(row), doc))
            plan.replaced.append(key)
        plan.keys.append(key)
        plan.targets.append(rollup_id(*key))
        plan.deltas.append(aggregates.Delta(
            key[1], group["events"], sessions - (row or {}).get("sessions", 0),
            seconds - (row or {}).get("session_seconds", 0), dict(group["features"]), dict(group["names"])))
    for op, delta in _session_fixups(groups, stored, merged, plan.token, current):
        plan.ops.append(op)
        plan.deltas.append(delta)
        plan.targets.append(op._filter["_id"])
    return plan


def _fresh_groups(parts, stored: dict, plan: _Plan) -> tuple[dict, dict]:
    """Per touched member-day: the events of the batches its stored row does not name yet (grouped), and the
    batches it names; the fresh batches are noted in `plan.batches`."""
    groups, named = {}, {}
    for key, by_batch in parts.items():
        named[key] = unpack_applied((stored.get(key) or {}).get("applied"))
        fresh = [batch for batch in by_batch if not batch or batch not in named[key]]
        if fresh:
            groups[key] = _group([doc for batch in fresh for doc in by_batch[batch]])[key]
            plan.batches[key] = fresh
    return groups, named


def _session_fixups(groups: dict, stored: dict, merged: dict, token, current) -> list[tuple]:
    """(update, delta) for each stored following day whose sessions change because a touched day's last session
    continues into it."""
    fixups = []
    for user_id, day in groups:
        after = (user_id, day + DAY)
        row = stored.get(after)
        if row is None or after in groups:
            continue
        sessions, seconds = _sessions_of(row, merged[(user_id, day)], after[1])
        if sessions != row.get("sessions") or seconds != row.get("session_seconds"):
            fixups.append((UpdateOne(current(row), {"$set": {"sessions": sessions, "session_seconds": seconds},
                                                    "$inc": {"v": 1},
                                                    "$push": {"ws": {"$each": [token], "$slice": -WRITERS_KEPT}}}),
                           aggregates.Delta(after[1], 0, sessions - row.get("sessions", 0),
                                            seconds - row.get("session_seconds", 0))))
    return fixups


def _lost(found: dict, keys: list[tuple[str, datetime]], batches: dict) -> list[tuple[str, datetime]]:
    """Of the member-days just replaced (`found`: their rows read back), those that do not name this write's
    batches: the version had moved on, so they are redone.

    (Cheaper than upserts that collide: the server's plain replace is its fastest write, and races are rare.)"""
    named = {key: unpack_applied((found.get(rollup_id(*key)) or {}).get("applied")) for key in keys}
    return [key for key in keys if not all(batch in named[key] for batch in batches[key] if batch)]


# --- whole documents (bulk loads, rebuilds) ---------------------------------------------------------------------


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
        sessions, seconds = _sessions_of(merged[(user_id, day)], before, day)
        out.append({"_id": rollup_id(user_id, day), **_next_version(
            None, {**group, "user_id": user_id, "day": day}, merged[(user_id, day)], sessions, seconds),
            "applied": _applied({}, batches[(user_id, day)], now)})
    return out


def insert_fresh(docs: list[dict]) -> None:
    """Rollups (and their aggregates) for events of members who have none yet: one insert, no reads."""
    rows = rollup_documents(docs)
    ActivityRollup._get_collection().insert_many(rows, ordered=False)
    aggregates.apply(docs, [aggregates.Delta.of(row) for row in rows])


def rebuild_rollups(start: datetime | None = None, end: datetime | None = None, user_ids: list[str] | None = None,
                    chunk: int = 200, progress=None) -> int:
    """Rebuild the rollups of days [start, end] (default: all) from raw events, a few members at a time, then the
    day aggregates of those days from the rollups. `progress(percent)` is told how far it got.

    Live ingestion goes on: the events received before the rebuild started are replayed, folding pauses
    meanwhile, and what arrived since is folded after (see fold.pause). For repairs, a changed
    ANALYTICS_TIMEZONE and the optimize task. Returns the number of events replayed."""
    began = utcnow()
    fold.pause(began)
    try:
        if not (user_ids or start or end):  # waiting batches' events are replayed: folding them too would add twice
            fold.forget_before(began)
        else:  # a partial replay leaves the other days as they are: what waits from before goes into them first
            fold.drain(before=began)

        def told(percent: float) -> None:
            fold.pause()  # still running
            if progress:
                progress(percent)

        total = _replay(start, end, user_ids, chunk, began, told)
    finally:
        fold.resume()
    fold.drain()  # what arrived meanwhile (the worker would fold it too; with ENGAGEMENT_FOLD=request nobody else does)
    return total


def _replay(start, end, user_ids, chunk: int, began: datetime, progress) -> int:
    """rebuild_rollups' replay of the events received before `began`."""
    events = UserActivity._get_collection()
    rollups = ActivityRollup._get_collection()
    first = day_start(start) if start else None
    last = day_start(end) if end else None
    targets = user_ids or sorted(events.distinct("user_id"))
    fields = {"user_id": 1, "event": 1, "feature": 1, "session_id": 1, "timestamp": 1, "batch": 1, "received_at": 1}
    everything = not (user_ids or first or last)
    if everything:
        rollups.delete_many({})
    received = {"received_at": {"$not": {"$gte": began}}}  # events stored without the field count as old
    total = 0
    for offset in range(0, len(targets), chunk):
        members = {"$in": targets[offset: offset + chunk]}
        stamps, days = {}, {}
        if first:
            stamps["$gte"], days["$gte"] = local_midnight(first), first
        if last:
            stamps["$lt"], days["$lte"] = local_midnight(last + DAY), last
        docs = list(events.find({"user_id": members, **received, **({"timestamp": stamps} if stamps else {})},
                                fields))
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
        progress(70 * min(offset + chunk, len(targets)) / max(len(targets), 1))
    aggregates.rebuild(first, last, everything=everything, progress=lambda pct: progress(70 + 0.3 * pct))
    return total
