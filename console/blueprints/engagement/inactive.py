"""Inactive members: last activity at least N days ago (or none, and joined at least N days ago).

A page does not sort or count every member: the day aggregates say how many members were last active on each
local day (a day's set minus every later day's), so the total is a sum over days plus two narrow index counts
(last seen on the cutoff's own day before the cutoff; last seen before the first day the aggregates hold, e.g.
after old events were purged and rebuilt), and the page reads only the days of last_seen it shows.
Exports (`iter_inactive`, and `inactive_users(limit=None)`) read every matching member from one cursor.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from console.blueprints.engagement.frozen import Reader
from console.blueprints.engagement.periods import as_day, local_midnight, zone
from console.members import Member
from console.timeutil import as_utc, utcnow

DAY = timedelta(days=1)
FIELDS = {"_id": 0, "user_id": 1, "email": 1, "name": 1, "last_seen": 1, "created_at": 1}


def _pipeline(days: int, now: datetime) -> list[dict]:
    cutoff = now - timedelta(days=days)
    return [
        {"$match": {"$or": [{"last_seen": {"$lte": cutoff}},
                            {"last_seen": None, "created_at": {"$lte": cutoff}}]}},
        {"$addFields": {"_ref": {"$ifNull": ["$last_seen", "$created_at"]}}},
    ]


def inactive_users(days: int, *, limit: int | None = 50, after: list | None = None, now: datetime | None = None,
                   count: bool = True) -> dict:
    """Oldest first. `after` is the (reference time, user_id) of the previous page's last row."""
    now = now or utcnow()
    if limit:
        return _page(days, limit, after, now, count)
    collection = Member._get_collection()
    pipeline = _pipeline(days, now)
    total = None
    if count:
        total = next(iter(collection.aggregate([*pipeline, {"$count": "n"}])), {}).get("n", 0)
    if after:
        pipeline.append({"$match": {"$or": [{"_ref": {"$gt": after[0]}},
                                            {"_ref": after[0], "user_id": {"$gt": after[1]}}]}})
    pipeline += [{"$sort": {"_ref": 1, "user_id": 1}},
                 {"$project": {"_id": 0, "user_id": 1, "email": 1, "name": 1, "last_seen": 1, "created_at": 1,
                               "_ref": 1}}]
    if limit:
        pipeline.append({"$limit": limit + 1})
    rows = list(collection.aggregate(pipeline))
    more = bool(limit) and len(rows) > limit
    rows = rows[:limit] if limit else rows
    items = [_item(row, now) for row in rows]
    last = rows[-1] if more and rows else None
    return {"days": days, "total": total, "items": items,
            "after": [as_utc(last["_ref"]), last["user_id"]] if last else None}


def _item(row: dict, now: datetime) -> dict:
    last_seen = as_utc(row.get("last_seen"))
    reference = last_seen or as_utc(row.get("created_at"))
    return {"user_id": row["user_id"], "email": row.get("email"), "name": row.get("name"), "last_seen": last_seen,
            "days_inactive": (now - reference).days if reference else None, "never_active": last_seen is None}


def iter_inactive(days: int, *, now: datetime | None = None, batch_size: int = 1000) -> Iterator[dict]:
    """Every inactive member, oldest first, read from the cursor in batches (for exports of any size)."""
    now = now or utcnow()
    pipeline = [*_pipeline(days, now), {"$sort": {"_ref": 1, "user_id": 1}},
                {"$project": {"_id": 0, "user_id": 1, "email": 1, "name": 1, "last_seen": 1, "created_at": 1}}]
    with Member._get_collection().aggregate(pipeline, batchSize=batch_size, allowDiskUse=True) as cursor:
        for row in cursor:
            yield _item(row, now)


def _windows(cutoff: datetime, now: datetime) -> list[tuple[datetime | None, datetime, bool, int | None]]:
    """Ranges of last_seen that hold the inactive members, oldest first: (low, high, high included, members in
    it when the aggregates know). One per local day with members last active then, and the two ends.

    Who was last active on which past day is frozen (frozen.Reader.last_active); today's members are taken out."""
    tz = zone()
    cutoff_day = as_day(cutoff, tz)
    reader = Reader(now)
    first_day, last_active = reader.last_active()
    since = reader.span(reader.today, as_day(now, tz) + 2 * DAY).users  # active today (or a clock ahead)
    cutoff_start = local_midnight(cutoff_day, tz)
    if first_day is None or local_midnight(first_day, tz) >= cutoff_start:
        return [(None, cutoff, True, None)]
    windows = [(None, local_midnight(first_day, tz), False, None)]
    for label, members in sorted(last_active.items()):
        count = len(members) - members.intersection_cardinality(since) if label < cutoff_day else 0
        if count:
            windows.append((local_midnight(label, tz), local_midnight(label + DAY, tz), False, count))
    return [*windows, (cutoff_start, cutoff, True, None)]


def _range(low, high, included) -> dict:
    return {**({"$gte": low} if low else {}), ("$lte" if included else "$lt"): high}


def _page(days: int, limit: int, after: list | None, now: datetime, count: bool) -> dict:
    collection = Member._get_collection()
    cutoff = now - timedelta(days=days)
    windows = _windows(cutoff, now)
    key = (as_utc(after[0]), after[1]) if after else None

    def wanted(row) -> bool:
        return key is None or (_ref(row), row["user_id"]) > key

    never = [row for row in collection.find({"last_seen": None, "created_at": {"$lte": cutoff}}, FIELDS)
             if wanted(row)]
    total = None
    if count:
        total = len(never) if not key else collection.count_documents(  # `never` was cut by the cursor
            {"last_seen": None, "created_at": {"$lte": cutoff}})
        for low, high, included, members in windows:
            total += members if members is not None else collection.count_documents(
                {"last_seen": _range(low, high, included)})
    found, index = [], 0
    while index < len(windows) and len(found) <= limit:
        low, high, included, members = windows[index]
        if key and (high < key[0] or (high == key[0] and not included)):
            index += 1
            continue  # wholly before the cursor
        # Neighbouring days are read together while they hold fewer members than the page needs.
        expected = members or 0
        while (members is not None and index + 1 < len(windows) and windows[index + 1][3] is not None
               and expected + windows[index + 1][3] <= limit + 1 - len(found)):
            index += 1
            _low, high, included, members = windows[index]
            expected += members
        found += [row for row in collection.find({"last_seen": _range(low, high, included)}, FIELDS) if wanted(row)]
        index += 1
    rows = sorted([*found, *never], key=lambda row: (_ref(row), row["user_id"]))
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more and rows else None
    return {"days": days, "total": total, "items": [_item(row, now) for row in rows],
            "after": [_ref(last), last["user_id"]] if last else None}


def _ref(row: dict) -> datetime:
    return as_utc(row.get("last_seen")) or as_utc(row.get("created_at"))
