"""The members behind a number: a retention cell, a lifecycle bar segment, a feature row or a stickiness bar, read
from the daily rollups."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from console.blueprints.engagement.ingest import escape_key
from console.blueprints.engagement.models import ActivityRollup
from console.blueprints.engagement.periods import add_periods, as_day, period_start
from console.db import find_in
from console.members import Member
from console.timeutil import as_utc


def _active(start: datetime, end: datetime, event: str | None = None) -> set[str]:
    """Members with activity (or the event) on a day in [start, end)."""
    query: dict = {"day": {"$gte": start, "$lt": end}}
    if event:
        query[f"names.{escape_key(event)}"] = {"$gt": 0}
    return set(ActivityRollup._get_collection().distinct("user_id", query))


def _active_before(user_ids: set[str], before: datetime, event: str | None = None) -> set[str]:
    if not user_ids:
        return set()
    query: dict = {"day": {"$lt": before}}
    if event:
        query[f"names.{escape_key(event)}"] = {"$gt": 0}
    return set(ActivityRollup._get_collection().distinct("user_id", query)) & user_ids


def cohort_member_ids(period: str, mode: str, cohort: date, offset: int, start_event: str | None = None,
                      return_event: str | None = None) -> set[str]:
    """The cohort starting `cohort` (first-time or recurring), narrowed to those back `offset` periods later."""
    start = period_start(as_day(cohort), period)
    members = _active(start, add_periods(start, period, 1), start_event)
    if mode == "first_time":
        members -= _active_before(members, start, start_event)
    if offset:
        later = add_periods(start, period, offset)
        members &= _active(later, add_periods(later, period, 1), return_event)
    return members


def lifecycle_member_ids(interval: str, period: date, stage: str) -> set[str]:
    """Members in `stage` (new, returning, resurrecting, dormant) in the period starting `period`."""
    start = period_start(as_day(period), interval)
    now = _active(start, add_periods(start, interval, 1))
    previous = _active(add_periods(start, interval, -1), start)
    if stage == "dormant":
        return previous - now
    if stage == "returning":
        return now & previous
    earlier = _active_before(now - previous, start)
    return (now - previous) - earlier if stage == "new" else earlier


def page(user_ids: set[str], limit: int, after: str | None) -> dict:
    """{"items": [{user_id, email, last_seen}], "after", "total"}, by user_id."""
    ordered = sorted(uid for uid in user_ids if after is None or uid > after)
    chosen = ordered[:limit] if limit else ordered
    docs = {doc["user_id"]: doc for doc in find_in(Member._get_collection(), "user_id", chosen,
                                                   {"user_id": 1, "email": 1, "last_seen": 1})}
    items = [{"user_id": uid, "email": docs.get(uid, {}).get("email"),
              "last_seen": as_utc(docs.get(uid, {}).get("last_seen"))} for uid in chosen]
    more = bool(limit) and len(ordered) > limit
    return {"items": items, "after": chosen[-1] if more and chosen else None, "total": len(user_ids)}


def feature_member_ids(feature: str, start: date, end: date) -> set[str]:
    """Members who used `feature` on a day in [start, end] (the overview's feature row)."""
    query = {"day": {"$gte": as_day(start), "$lte": as_day(end)}, f"features.{escape_key(feature)}": {"$gt": 0}}
    return set(ActivityRollup._get_collection().distinct("user_id", query))


def stickiness_member_ids(window: int, active_days: int, end: date) -> set[str]:
    """Members active on exactly `active_days` of the `window` days ending `end` (a stickiness bar)."""
    last = as_day(end)
    rows = ActivityRollup._get_collection().aggregate([
        {"$match": {"day": {"$gt": last - timedelta(days=window), "$lte": last}}},
        {"$group": {"_id": "$user_id", "days": {"$sum": 1}}},
        {"$match": {"days": active_days}},
    ])
    return {row["_id"] for row in rows}
