"""Lifecycle stages per period (PostHog's definitions) for one member and for everyone."""

from __future__ import annotations

from datetime import datetime, timedelta

from console.blueprints.engagement.ingest import rollup_id
from console.blueprints.engagement.models import ActivityRollup
from console.blueprints.engagement.periods import add_periods, as_day, label, period_field, period_start
from console.config import setting
from console.db import find_in
from console.members import Member
from console.timeutil import as_utc, utcnow

STAGES = ("new", "returning", "resurrecting", "dormant")


def churn_after_days() -> int:
    return setting("CHURN_AFTER_DAYS")


def _periods_of(user_id: str, first_seen: datetime | None, now: datetime, interval: str) -> list[dict]:
    """The member's events, first and last time per period, read by `_id` from first_seen to today."""
    if first_seen is None:
        return []
    days = (as_day(now) - as_day(first_seen)).days + 1
    ids = [rollup_id(user_id, as_day(now) - timedelta(days=n)) for n in range(max(days, 0))]
    periods: dict[datetime, dict] = {}
    for row in find_in(ActivityRollup._get_collection(), "_id", ids, {"day": 1, "events": 1, "first_at": 1,
                                                                     "last_at": 1}):
        period = periods.setdefault(period_start(as_utc(row["day"]), interval),
                                    {"events": 0, "first": row["first_at"], "last": row["last_at"]})
        period["events"] += row["events"]
        period["first"], period["last"] = min(period["first"], row["first_at"]), max(period["last"], row["last_at"])
    return [{"_id": key, **value} for key, value in sorted(periods.items())]


def member_lifecycle(user_id: str, interval: str = "week", now: datetime | None = None) -> dict | None:
    """The member's current stage and per-period timeline; None when the member is unknown."""
    now = now or utcnow()
    member = Member._get_collection().find_one({"user_id": user_id}, {"first_seen": 1, "last_seen": 1,
                                                                       "created_at": 1})
    rows = _periods_of(user_id, as_utc((member or {}).get("first_seen")), now, interval)
    if member is None and not rows:
        return None
    events = {as_utc(row["_id"]): row["events"] for row in rows}
    first_seen = as_utc(min(row["first"] for row in rows)) if rows else as_utc((member or {}).get("first_seen"))
    last_seen = as_utc(max(row["last"] for row in rows)) if rows else as_utc((member or {}).get("last_seen"))
    current = period_start(now, interval)
    timeline = []
    if events:
        period, first_period = min(events), min(events)
        while period <= current:
            previous = add_periods(period, interval, -1)
            if period in events:
                stage = "new" if period == first_period else "returning" if previous in events else "resurrecting"
                timeline.append({"period": period.date().isoformat(), "label": label(period, interval),
                                 "stage": stage, "events": events[period]})
            elif previous in events:
                timeline.append({"period": period.date().isoformat(), "label": label(period, interval),
                                 "stage": "dormant", "events": 0})
            period = add_periods(period, interval, 1)
    if current in events:
        stage = timeline[-1]["stage"]
    else:
        reference = last_seen or as_utc((member or {}).get("created_at")) or now
        stage = "dormant" if now - reference <= timedelta(days=churn_after_days()) else "churned"
    return {"user_id": user_id, "interval": interval, "stage": stage, "first_seen": first_seen,
            "last_seen": last_seen, "timeline": timeline}


def lifecycle_chart(interval: str = "week", periods: int = 12, now: datetime | None = None) -> dict:
    """Counts of new/returning/resurrecting/dormant members for the last `periods` periods."""
    now = now or utcnow()
    current = period_start(now, interval)
    first = add_periods(current, interval, -(periods - 1))
    one = {"week": {"unit": "week", "amount": 1}, "month": {"unit": "month", "amount": 1}}.get(
        interval, {"unit": "day", "amount": 1})
    rows = ActivityRollup._get_collection().aggregate([  # every day: stage "new" needs each member's first period
        {"$group": {"_id": {"u": "$user_id", "p": period_field(interval)}}},
        {"$setWindowFields": {"partitionBy": "$_id.u", "sortBy": {"_id.p": 1}, "output": {
            "prev": {"$shift": {"output": "$_id.p", "by": -1}},
            "next": {"$shift": {"output": "$_id.p", "by": 1}},
            "rank": {"$documentNumber": {}},
        }}},
        {"$project": {
            "p": "$_id.p",
            "stage": {"$cond": [{"$eq": ["$rank", 1]}, "new", {"$cond": [
                {"$eq": ["$prev", {"$dateSubtract": {"startDate": "$_id.p", "timezone": "UTC", **one}}]},
                "returning", "resurrecting"]}]},
            "dormant_at": {"$let": {"vars": {"after": {"$dateAdd": {"startDate": "$_id.p", "timezone": "UTC", **one}}},
                                    "in": {"$cond": [{"$eq": ["$next", "$$after"]}, None, "$$after"]}}},
        }},
        {"$match": {"$or": [{"p": {"$gte": first}}, {"dormant_at": {"$gte": first, "$lte": current}}]}},
        {"$facet": {
            "active": [{"$match": {"p": {"$gte": first}}}, {"$group": {"_id": {"p": "$p", "s": "$stage"},
                                                                       "n": {"$sum": 1}}}],
            "dormant": [{"$match": {"dormant_at": {"$gte": first, "$lte": current}}},
                        {"$group": {"_id": "$dormant_at", "n": {"$sum": 1}}}],
        }},
    ])
    facet = next(iter(rows), {"active": [], "dormant": []})
    counts: dict = {}
    for row in facet["active"]:
        counts[(as_utc(row["_id"]["p"]), row["_id"]["s"])] = row["n"]
    for row in facet["dormant"]:
        counts[(as_utc(row["_id"]), "dormant")] = row["n"]
    series = []
    for index in range(periods):
        period = add_periods(first, interval, index)
        item = {"period": period.date().isoformat(), "label": label(period, interval)}
        for stage in STAGES:
            item[stage] = counts.get((period, stage), 0)
        item["dormant"] = -item["dormant"]
        series.append(item)
    return {"interval": interval, "series": series}
