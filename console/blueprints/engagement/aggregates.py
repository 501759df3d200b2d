"""Per-day aggregates: exact sets of active members as Roaring bitmaps of member ordinals, and day counters.

Every member gets a dense ordinal (`member_ordinals`, allocated from a counter). One `activity_days` document per
local day holds the members active that day (`b`), per feature and per event name the members who used it
(`f.<name>.b`, `n.<name>.b`) with event counts (`.e`), and the day's events, sessions and session seconds.
Ingestion adds to a day with one upsert: `$inc` for the counters, `$push` of one small serialized bitmap of the
batch's members into pending lists (`p`, `f.<name>.p`, `n.<name>.p`), so writers never read and never conflict, and
a replayed batch adds no member twice (a union is idempotent). Readers take base | pending; a reader that finds
many pending bitmaps folds them into the base (guarded by `bv`).
WAU/MAU and ranges are unions, cohorts intersections, lifecycle set algebra between periods.

For other features: `forget_member(user_id)` removes one member from every aggregate (call it when erasing a
member; it also deletes the member's rollups and ordinal, not the raw events).
"""

from __future__ import annotations

import contextlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from bson import Binary
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError
from pyroaring import BitMap

from console.db import find_in, get_db
from console.timeutil import as_utc

DAYS = "activity_days"
ORDINALS = "member_ordinals"
COUNTERS = "counters"
FOLD_AT = 200  # pending bitmaps in a day before a reader folds them into the base
FOLD_BY_WRITERS = 1 / 100  # the chance that a write folds the day it wrote


def _days():
    return get_db()[DAYS]


def day_key(day: datetime) -> str:
    return f"{as_utc(day):%Y-%m-%d}"


@dataclass
class Delta:
    """What landed rollup writes add to one day's counters (features and names by escaped key)."""

    day: datetime
    events: int = 0
    sessions: int = 0
    seconds: int = 0
    features: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)

    @classmethod
    def of(cls, row: dict) -> Delta:
        return cls(as_utc(row["day"]), row.get("events", 0), row.get("sessions", 0), row.get("session_seconds", 0),
                   dict(row.get("features") or {}), dict(row.get("names") or {}))


# --- ordinals ---------------------------------------------------------------------------------------------------


# An ordinal never changes while its member exists, so each process remembers the ones it has seen. The memory is
# good for one state of the counter (`epoch`, new whenever the counter is created, and `erased`, bumped by every
# forget_member): one read of the counter per call tells whether it still is, instead of a read per 25 members.
_known: dict = {"state": None, "ordinals": {}}
KNOWN_MAX = 1_000_000


def _counter_state() -> tuple | None:
    row = get_db()[COUNTERS].find_one({"_id": "member_ordinal"}, {"epoch": 1, "erased": 1})
    return (row.get("epoch"), row.get("erased", 0)) if row else None


def ordinals(user_ids, *, create: bool = True) -> dict[str, int]:
    """The ordinal of each member, allocating dense new ones for members seen for the first time."""
    users = list(dict.fromkeys(user_ids))
    collection = get_db()[ORDINALS]
    state = _counter_state()
    if state is None or state != _known["state"] or len(_known["ordinals"]) > KNOWN_MAX:
        _known.update(state=state, ordinals={})
    known = _known["ordinals"]
    found = {user: known[user] for user in users if user in known}
    asked = [user for user in users if user not in found]
    found.update({row["_id"]: row["o"] for row in find_in(collection, "_id", asked, {"o": 1})})
    missing = [user for user in users if user not in found]
    if missing and create:
        top = _allocate(len(missing))
        fresh = {user: top - len(missing) + index for index, user in enumerate(missing)}
        try:
            collection.insert_many([{"_id": user, "o": number} for user, number in fresh.items()], ordered=False)
        except BulkWriteError as error:  # another request numbered some of them first: theirs stand
            if any(item.get("code") != 11000 for item in error.details.get("writeErrors", [])):
                raise
            clashed = [missing[item["index"]] for item in error.details["writeErrors"]]
            fresh.update({row["_id"]: row["o"] for row in find_in(collection, "_id", clashed, {"o": 1})})
        found.update(fresh)
    if state is not None:  # remembered only under a counter this process has read
        known.update(found)
    return found


def _allocate(count: int) -> int:
    """Reserve `count` ordinals; returns the last one. (No upsert: SecantusDB can answer a racing first upsert of
    find_one_and_update with nothing, so the counter is created apart.)"""
    counters = get_db()[COUNTERS]
    for _attempt in range(5):
        row = counters.find_one_and_update({"_id": "member_ordinal"}, {"$inc": {"n": count}},
                                           return_document=ReturnDocument.AFTER)
        if row is not None:
            return row["n"]
        with contextlib.suppress(DuplicateKeyError):  # another request created it first
            counters.insert_one({"_id": "member_ordinal", "n": 0, "epoch": uuid.uuid4().hex, "erased": 0})
    raise RuntimeError("the member ordinal counter could not be created")


def members_of(bitmap: BitMap) -> list[str]:
    """The user_ids behind ordinals (for drill-downs); reads by the `o` index."""
    return [row["_id"] for row in find_in(get_db()[ORDINALS], "o", list(bitmap), {"_id": 1})]


# --- writing ----------------------------------------------------------------------------------------------------


def _update_for(ords: dict, counts: dict) -> dict:
    update: dict = {"$setOnInsert": {"bv": 0}}
    if ords:
        update["$push"] = {path: Binary(BitMap(values).serialize()) for path, values in ords.items()}
    incs = {path: value for path, value in counts.items() if value}
    update["$inc"] = {**incs, "cv": 1}
    return update


def apply(docs: list[dict], deltas: list[Delta]) -> None:
    """Add stored events (their members, to the sets) and landed rollup deltas (to the counters) to their days."""
    from console.blueprints.engagement import frozen
    from console.blueprints.engagement.rollups import day_start, escape_key

    numbers = ordinals(doc["user_id"] for doc in docs) if docs else {}
    sets: dict[datetime, dict[str, set]] = {}
    for doc in docs:
        day = day_start(doc["timestamp"])
        number = numbers[doc["user_id"]]
        paths = sets.setdefault(day, {})
        paths.setdefault("p", set()).add(number)
        paths.setdefault(f"n.{escape_key(doc['event'])}.p", set()).add(number)
        if doc.get("feature"):
            paths.setdefault(f"f.{escape_key(doc['feature'])}.p", set()).add(number)
    counts: dict[datetime, dict[str, int]] = {}
    for delta in deltas:
        day = counts.setdefault(delta.day, {})
        for path, value in (("events", delta.events), ("sessions", delta.sessions), ("seconds", delta.seconds)):
            day[path] = day.get(path, 0) + value
        for prefix, named in (("f", delta.features), ("n", delta.names)):
            for key, value in named.items():
                day[f"{prefix}.{key}.e"] = day.get(f"{prefix}.{key}.e", 0) + value
    ops = [UpdateOne({"_id": day_key(day)}, {**_update_for(sets.get(day, {}), counts.get(day, {})),
                                             "$set": {"day": day}}, upsert=True)
           for day in sorted(set(sets) | set(counts))]
    _write(ops)
    late = [day for day in set(sets) | set(counts) if frozen.is_late(day)]
    if late:  # answers kept about past days that this write changed no longer hold
        frozen.invalidate(min(late))
    for day in sets:  # now and then a writer folds too, so a day nobody reads stays a small document
        if random.random() < FOLD_BY_WRITERS:
            fold(day_key(day))


def _write(ops: list) -> None:
    """Bulk upserts; two requests creating the same day at once collide on `_id`, so the loser runs again."""
    for _attempt in range(4):
        if not ops:
            return
        try:
            _days().bulk_write(ops, ordered=False)
            return
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if any(item.get("code") != 11000 for item in errors):
                raise
            ops = [ops[item["index"]] for item in errors]
    raise RuntimeError("day aggregates kept colliding")


def rebuild(first: datetime | None = None, last: datetime | None = None, *, everything: bool = False,
            progress=None) -> int:
    """Recompute the aggregates of days [first, last] (default: every day) from the rollups; returns days built."""
    from console.blueprints.engagement import frozen
    from console.blueprints.engagement.models import ActivityRollup

    rollups = ActivityRollup._get_collection()
    match: dict = {}
    if first or last:
        match["day"] = {**({"$gte": first} if first else {}), **({"$lte": last} if last else {})}
    days = sorted(as_utc(day) for day in rollups.distinct("day", match))
    if everything:
        _days().delete_many({})
    elif match:
        _days().delete_many({"day": match["day"]})
    fields = {"user_id": 1, "events": 1, "sessions": 1, "session_seconds": 1, "features": 1, "names": 1}
    for index, day in enumerate(days):
        rows = list(rollups.find({"day": day}, fields))
        numbers = ordinals(row["user_id"] for row in rows)
        doc = {"_id": day_key(day), "day": day, "bv": 0, "cv": 0, "events": 0, "sessions": 0, "seconds": 0}
        users, features, names = BitMap(), {}, {}
        for row in rows:
            number = numbers[row["user_id"]]
            users.add(number)
            doc["events"] += row.get("events", 0)
            doc["sessions"] += row.get("sessions", 0)
            doc["seconds"] += row.get("session_seconds", 0)
            for target, counts in ((features, row.get("features") or {}), (names, row.get("names") or {})):
                for key, value in counts.items():
                    entry = target.setdefault(key, [BitMap(), 0])
                    entry[0].add(number)
                    entry[1] += value
        doc["b"] = users.serialize()
        doc["f"] = {key: {"b": bits.serialize(), "e": count} for key, (bits, count) in features.items()}
        doc["n"] = {key: {"b": bits.serialize(), "e": count} for key, (bits, count) in names.items()}
        _days().replace_one({"_id": doc["_id"]}, doc, upsert=True)
        if progress:
            progress(100 * (index + 1) / len(days))
    frozen.clear()
    return len(days)


def forget_member(user_id: str) -> int:
    """Remove one member from every aggregate (and delete their rollups and ordinal), so dashboards stay exact
    after an erase. Returns the number of days changed. Safe to call twice or for an unknown member."""
    from console.blueprints.engagement import frozen
    from console.blueprints.engagement.models import ActivityRollup

    number = ordinals([user_id], create=False).get(user_id)
    rollups = ActivityRollup._get_collection()
    rows = {as_utc(row["day"]): row for row in rollups.find(
        {"user_id": user_id}, {"day": 1, "events": 1, "sessions": 1, "session_seconds": 1, "features": 1,
                               "names": 1})}
    changed = 0
    if number is not None:
        for doc in list(_days().find({}, {"b": 1, "p": 1, "f": 1, "n": 1, "bv": 1, "day": 1})):
            day = as_utc(doc["day"])
            present = number in _bits(doc) or any(
                number in _bits(entry) for prefix in ("f", "n") for entry in (doc.get(prefix) or {}).values())
            if not present and day not in rows:
                continue
            _remove(doc, number, rows.get(day))
            changed += 1
    rollups.delete_many({"user_id": user_id})
    if get_db()[ORDINALS].delete_one({"_id": user_id}).deleted_count:
        get_db()[COUNTERS].update_one({"_id": "member_ordinal"}, {"$inc": {"erased": 1}})  # see _known
    if changed:
        frozen.clear()
    return changed


def _remove(doc: dict, number: int, row: dict | None) -> None:
    """Take one ordinal out of a day's sets (version-guarded, re-read on a race) and its rollup off the counters."""
    incs: dict = {}
    if row:
        incs = {"events": -row.get("events", 0), "sessions": -row.get("sessions", 0),
                "seconds": -row.get("session_seconds", 0)}
        for prefix, counts in (("f", row.get("features") or {}), ("n", row.get("names") or {})):
            for key, value in counts.items():
                incs[f"{prefix}.{key}.e"] = -value
    if incs:
        _days().update_one({"_id": doc["_id"]}, {"$inc": {**incs, "cv": 1}})
    for _attempt in range(8):
        sets, pulls = {"b": _without(doc, number)}, {"p": list(doc.get("p") or [])}
        for prefix in ("f", "n"):
            for key, entry in (doc.get(prefix) or {}).items():
                sets[f"{prefix}.{key}.b"] = _without(entry, number)
                pulls[f"{prefix}.{key}.p"] = list(entry.get("p") or [])
        result = _days().update_one({"_id": doc["_id"], "bv": doc.get("bv", 0)},
                                    {"$set": sets, "$pullAll": pulls, "$inc": {"bv": 1}})
        if result.matched_count:
            return
        doc = _days().find_one({"_id": doc["_id"]}, {"b": 1, "p": 1, "f": 1, "n": 1, "bv": 1, "day": 1})
        if doc is None:
            return


def _without(entry: dict, number: int) -> bytes:
    """A set (base | pending) without one ordinal, as a new base."""
    bits = _bits(entry)
    bits.discard(number)
    return bits.serialize()


# --- reading ----------------------------------------------------------------------------------------------------


def _bits(entry: dict | None) -> BitMap:
    """base | pending of one set in a day document."""
    entry = entry or {}
    bits = BitMap.deserialize(bytes(entry["b"])) if entry.get("b") else BitMap()
    for chunk in entry.get("p") or ():
        bits |= BitMap.deserialize(bytes(chunk))
    return bits


@dataclass
class Day:
    users: BitMap = field(default_factory=BitMap)
    events: int = 0
    sessions: int = 0
    seconds: int = 0
    features: dict = field(default_factory=dict)  # escaped name -> (BitMap, events)
    names: dict = field(default_factory=dict)


def _day_of(doc: dict) -> Day:
    return Day(_bits(doc), doc.get("events", 0), doc.get("sessions", 0), doc.get("seconds", 0),
               {key: (_bits(entry), entry.get("e", 0)) for key, entry in (doc.get("f") or {}).items()},
               {key: (_bits(entry), entry.get("e", 0)) for key, entry in (doc.get("n") or {}).items()})


def read_days(first: datetime | None, last: datetime, *, features: bool = False, names: list[str] | None = None,
              counters: bool = True, all_names: bool = False) -> dict[datetime, Day]:
    """The days in [first, last] (all days up to `last` when `first` is None) that have any activity.

    `names` are escaped event names whose sets are wanted (every one with all_names); features and counters only
    when asked for."""
    projection: dict = {"day": 1, "b": 1, "p": 1, "bv": 1}
    if counters:
        projection.update(events=1, sessions=1, seconds=1)
    if features:
        projection["f"] = 1
    if all_names:
        projection["n"] = 1
    for name in () if all_names else names or ():
        projection[f"n.{name}"] = 1
    span = {"$lte": last, **({"$gte": first} if first else {})}
    out = {}
    for doc in _days().find({"day": span}, projection):
        out[as_utc(doc["day"])] = _day_of(doc)
        if _pending(doc) >= FOLD_AT:
            fold(doc["_id"])
    return out


def _pending(doc: dict) -> int:
    return len(doc.get("p") or ()) + sum(len(entry.get("p") or ()) for prefix in ("f", "n")
                                         for entry in (doc.get(prefix) or {}).values())


def fold(key: str) -> bool:
    """Move a day's pending bitmaps into its base. Writers keep adding meanwhile: only what was read is pulled,
    and the write lands only over the base version read (another fold got there first otherwise)."""
    doc = _days().find_one({"_id": key}, {"b": 1, "p": 1, "f": 1, "n": 1, "bv": 1})
    if doc is None:
        return False
    sets, pulls = {"b": _bits(doc).serialize()}, {}
    if doc.get("p"):
        pulls["p"] = list(doc["p"])
    for prefix in ("f", "n"):
        for name, entry in (doc.get(prefix) or {}).items():
            if entry.get("p"):
                sets[f"{prefix}.{name}.b"] = _bits(entry).serialize()
                pulls[f"{prefix}.{name}.p"] = list(entry["p"])
    update = {"$set": sets, "$inc": {"bv": 1}}
    if pulls:
        update["$pullAll"] = pulls
    return _days().update_one({"_id": key, "bv": doc.get("bv", 0)}, update).matched_count == 1


def union(days: dict[datetime, Day], first: datetime, last: datetime, pick=lambda day: day.users) -> BitMap:
    """The union of one set over the days of [first, last] present in `days`."""
    bits = [pick(day) for label, day in days.items() if first <= label <= last]
    return BitMap.union(*bits) if bits else BitMap()
