"""Inactive members: last activity at least N days ago (or none, and joined at least N days ago)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from console.members import Member
from console.timeutil import as_utc, utcnow


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
