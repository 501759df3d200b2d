"""DAU/WAU/MAU, stickiness, sessions and feature usage, computed in MongoDB from the daily rollups."""

from __future__ import annotations

from datetime import datetime, timedelta

from console.blueprints.engagement.ingest import unescape_key
from console.blueprints.engagement.models import ActivityRollup, EngagementCache
from console.blueprints.engagement.periods import as_day, label, period_field, periods_between, trunc
from console.members import Member
from console.timeutil import as_utc, utcnow

DAY = timedelta(days=1)


def cached(model, key: str, range_from: datetime, range_to: datetime, compute):
    """Return a cached result for `key`, computing and storing it when absent (ingest drops stale ones)."""
    hit = model._get_collection().find_one({"key": key}, {"result": 1})
    if hit is not None:
        return hit["result"]
    result = compute()
    model._get_collection().update_one(
        {"key": key},
        {"$set": {"result": result, "range_from": range_from, "range_to": range_to, "computed_at": utcnow()}},
        upsert=True)
    return result


def default_range(start: datetime | None, end: datetime | None, days: int = 30) -> tuple[datetime, datetime]:
    end_day = as_day(end or utcnow())
    start_day = as_day(start) if start else end_day - timedelta(days=days - 1)
    return start_day, end_day


def metrics(start: datetime | None = None, end: datetime | None = None, interval: str = "day") -> dict:
    """The engagement summary for [start, end] (whole UTC days) by `interval`."""
    start_day, end_day = default_range(start, end)
    key = f"metrics:{start_day.date()}:{end_day.date()}:{interval}"
    window_start = min(start_day, end_day - 29 * DAY)
    result = cached(EngagementCache, key, window_start, end_day,
                    lambda: _compute_metrics(start_day, end_day, interval))
    return {**result, "from": start_day.date().isoformat(), "to": end_day.date().isoformat()}


def _compute_metrics(start_day: datetime, end_day: datetime, interval: str) -> dict:
    """One pass over the rollups of [from, to] and the 30 days ending `to` (usually the same days)."""
    active_from = end_day - 29 * DAY
    window_start = min(start_day, active_from)

    def within(first: datetime) -> list[dict]:
        return [{"$match": {"day": {"$gte": first}}}] if first > window_start else []

    facets = ActivityRollup._get_collection().aggregate([
        {"$match": {"day": {"$gte": window_start, "$lte": end_day}}},
        {"$facet": {
            "series": within(start_day) + _series_stages(interval),
            "totals": [
                *within(start_day),
                {"$group": {"_id": "$user_id", "sessions": {"$sum": "$sessions"},
                            "seconds": {"$sum": "$session_seconds"}, "events": {"$sum": "$events"}}},
                {"$group": {"_id": None, "users": {"$sum": 1}, "sessions": {"$sum": "$sessions"},
                            "seconds": {"$sum": "$seconds"}, "events": {"$sum": "$events"}}},
            ],
            "features": [
                *within(start_day),
                {"$project": {"user_id": 1, "f": {"$objectToArray": {"$ifNull": ["$features", {}]}}}},
                {"$unwind": "$f"},
                {"$group": {"_id": {"f": "$f.k", "u": "$user_id"}, "events": {"$sum": "$f.v"}}},
                {"$group": {"_id": "$_id.f", "events": {"$sum": "$events"}, "users": {"$sum": 1}}},
            ],
            "active": within(active_from) + _active_stages(end_day),
        }},
    ])
    facet = next(iter(facets), {"series": [], "totals": [], "features": [], "active": []})
    new_users = {as_utc(row["_id"]): row["n"] for row in Member._get_collection().aggregate([
        {"$match": {"first_seen": {"$gte": start_day, "$lt": end_day + DAY}}},
        {"$group": {"_id": trunc("$first_seen", interval), "n": {"$sum": 1}}},
    ])}
    by_period = {as_utc(row["_id"]): row for row in facet["series"]}
    series = []
    for period in periods_between(start_day, end_day, interval):
        row = by_period.get(period, {})
        item = {"period": period.date().isoformat(), "label": label(period, interval),
                "active_users": row.get("active", 0), "new_users": new_users.get(period, 0),
                "events": row.get("events", 0), "sessions": row.get("sessions", 0)}
        if interval == "day":
            item["dau"] = item["active_users"]
        series.append(item)
    totals = (facet["totals"] or [{}])[0]
    active = totals.get("users", 0)
    sessions = totals.get("sessions", 0)
    features = sorted(
        ({"feature": unescape_key(row["_id"]), "events": row["events"], "users": row["users"],
          "adoption": row["users"] / active if active else 0.0} for row in facet["features"]),
        key=lambda item: (-item["users"], -item["events"], item["feature"]))
    return {
        "interval": interval,
        "series": series,
        **_active_counts((facet["active"] or [{}])[0]),
        "active_users": active,
        "events": totals.get("events", 0),
        "sessions": sessions,
        "sessions_per_user": sessions / active if active else 0.0,
        "avg_session_minutes": totals.get("seconds", 0) / sessions / 60 if sessions else 0.0,
        "feature_usage": features,
    }


def _series_stages(interval: str) -> list[dict]:
    """Active members, events and sessions per period; a rollup is one member-day, so days need one group."""
    totals = {"events": {"$sum": "$events"}, "sessions": {"$sum": "$sessions"}}
    if interval == "day":
        return [{"$group": {"_id": "$day", "active": {"$sum": 1}, **totals}}]
    return [{"$group": {"_id": {"p": period_field(interval), "u": "$user_id"}, **totals}},
            {"$group": {"_id": "$_id.p", "active": {"$sum": 1}, **totals}}]


def _active_stages(end_day: datetime) -> list[dict]:
    return [
        {"$group": {"_id": "$user_id", "last": {"$max": "$day"}, "days": {"$sum": 1}}},
        {"$group": {"_id": None, "mau": {"$sum": 1}, "user_days": {"$sum": "$days"},
                    "dau": {"$sum": {"$cond": [{"$eq": ["$last", end_day]}, 1, 0]}},
                    "wau": {"$sum": {"$cond": [{"$gte": ["$last", end_day - 6 * DAY]}, 1, 0]}}}},
    ]


def _active_counts(row: dict) -> dict:
    """DAU (the day of `to`), WAU (7 days ending it), MAU (30 days) and stickiness (mean DAU over the 30 days
    divided by MAU)."""
    mau = row.get("mau", 0)
    mean_daily = row.get("user_days", 0) / 30
    return {"dau": row.get("dau", 0), "wau": row.get("wau", 0), "mau": mau,
            "stickiness": mean_daily / mau if mau else 0.0}
