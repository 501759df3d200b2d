"""Members as the engagement pages see them: search, and one member's activity, newest first."""

from __future__ import annotations

import re
from datetime import datetime

from bson import ObjectId

from console.blueprints.engagement.models import UserActivity
from console.members import Member
from console.timeutil import as_utc


def activity(user_id: str, *, start: datetime | None = None, end: datetime | None = None, event: str | None = None,
             limit: int = 50, after: list | None = None) -> dict:
    """A member's events newest first; `after` is the (timestamp, _id) of the previous page's last event."""
    query: dict = {"user_id": user_id}
    if start or end:
        query["timestamp"] = {}
        if start:
            query["timestamp"]["$gte"] = start
        if end:
            query["timestamp"]["$lte"] = end
    if event:
        query["event"] = event
    if after:
        stamp, last_id = after
        query = {"$and": [query, {"$or": [{"timestamp": {"$lt": stamp}},
                                          {"timestamp": stamp, "_id": {"$lt": ObjectId(last_id)}}]}]}
    rows = list(UserActivity._get_collection().find(query).sort([("timestamp", -1), ("_id", -1)]).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    items = [{"id": str(row["_id"]), "event_id": row["event_id"], "user_id": row["user_id"], "event": row["event"],
              "feature": row.get("feature"), "session_id": row.get("session_id"),
              "properties": row.get("properties") or {}, "timestamp": as_utc(row["timestamp"]),
              "received_at": as_utc(row.get("received_at")), "clamped": bool(row.get("clamped")),
              **({"client_timestamp": as_utc(row["client_timestamp"])} if row.get("client_timestamp") else {})}
             for row in rows]
    after_next = [as_utc(rows[-1]["timestamp"]), str(rows[-1]["_id"])] if more and rows else None
    return {"user_id": user_id, "items": items, "after": after_next}


def member_exists(user_id: str) -> bool:
    return Member._get_collection().count_documents({"user_id": user_id}, limit=1) > 0 or \
        UserActivity._get_collection().count_documents({"user_id": user_id}, limit=1) > 0


def get_member(user_id: str) -> dict | None:
    return Member._get_collection().find_one({"user_id": user_id}, {"_id": 0})


def search_members(q: str | None, *, limit: int = 50, after: str | None = None) -> dict:
    """Members by user_id, email or name (case-insensitive substring), ordered by user_id."""
    query: dict = {}
    if q:
        pattern = re.compile(re.escape(q), re.IGNORECASE)
        query["$or"] = [{"user_id": pattern}, {"email": pattern}, {"name": pattern}]
    if after:
        query = {"$and": [query, {"user_id": {"$gt": after}}]} if query else {"user_id": {"$gt": after}}
    rows = list(Member._get_collection().find(query, {"_id": 0, "user_id": 1, "email": 1, "name": 1,
                                                      "first_seen": 1, "last_seen": 1})
                .sort("user_id", 1).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    for row in rows:
        row["first_seen"], row["last_seen"] = as_utc(row.get("first_seen")), as_utc(row.get("last_seen"))
    return {"items": rows, "after": rows[-1]["user_id"] if more and rows else None}
