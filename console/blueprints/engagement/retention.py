"""Cohort retention (first-time or recurring), computed in MongoDB from the daily rollups."""

from __future__ import annotations

from datetime import datetime

from console.blueprints.engagement.ingest import escape_key
from console.blueprints.engagement.metrics import cached
from console.blueprints.engagement.models import ActivityRollup, RetentionCache
from console.blueprints.engagement.periods import add_periods, as_day, label, period_field, period_start
from console.timeutil import as_utc, utcnow


def _did(event: str | None):
    if not event:
        return {"$literal": True}
    return {"$gt": [{"$ifNull": [f"$names.{escape_key(event)}", 0]}, 0]}


def _period_diff(later: str, earlier: str, period: str) -> dict:
    if period == "month":
        return {"$dateDiff": {"startDate": earlier, "endDate": later, "unit": "month", "timezone": "UTC"}}
    days = {"$dateDiff": {"startDate": earlier, "endDate": later, "unit": "day", "timezone": "UTC"}}
    return {"$floor": {"$divide": [days, 7]}} if period == "week" else days


def retention(period: str = "week", cohorts: int = 8, periods: int | None = None, start_event: str | None = None,
              return_event: str | None = None, mode: str = "first_time", now: datetime | None = None) -> dict:
    """Cohorts for the `cohorts` periods ending with the current one; counts[k] = members active k periods later."""
    now = now or utcnow()
    periods = periods or cohorts
    current = period_start(now, period)
    first = add_periods(current, period, -(cohorts - 1))
    key = f"retention:{period}:{cohorts}:{periods}:{start_event}:{return_event}:{mode}:{current.date()}"
    result = cached(RetentionCache, key, first, as_day(now),
                    lambda: _compute(period, cohorts, periods, start_event, return_event, mode, current, first, now))
    return result


def _per_member_stages(period: str, start_event: str | None, return_event: str | None) -> list[dict]:
    """One document per member with the periods they started in (`starts`) and came back in (`returns`).

    Without event filters every active period counts for both, and no per-document expression is needed."""
    key = {"u": "$user_id", "p": period_field(period)}
    if not start_event and not return_event:
        return [{"$group": {"_id": key}},
                {"$group": {"_id": "$_id.u", "starts": {"$push": "$_id.p"}}},
                {"$project": {"starts": 1, "returns": "$starts"}}]
    return [
        {"$group": {"_id": key, "s": {"$max": _did(start_event)}, "r": {"$max": _did(return_event)}}},
        {"$group": {"_id": "$_id.u", "starts": {"$push": {"$cond": ["$s", "$_id.p", None]}},
                    "returns": {"$push": {"$cond": ["$r", "$_id.p", None]}}}},
        {"$project": {"starts": {"$filter": {"input": "$starts", "cond": {"$ne": ["$$this", None]}}},
                      "returns": {"$filter": {"input": "$returns", "cond": {"$ne": ["$$this", None]}}}}},
    ]


def _compute(period, cohorts, periods, start_event, return_event, mode, current, first, now) -> dict:
    # first-time cohorts need each member's first start event ever; recurring ones only the window
    match: dict = {"day": {"$gte": first}} if mode == "recurring" else {}
    starts = "$starts"
    if mode == "first_time":
        starts = {"$cond": [{"$gt": [{"$size": "$starts"}, 0]}, [{"$min": "$starts"}], []]}
    pipeline = [
        *([{"$match": match}] if match else []),
        *_per_member_stages(period, start_event, return_event),
        {"$project": {"returns": 1, "starts": {"$filter": {"input": starts, "cond": {"$gte": ["$$this", first]}}}}},
        {"$unwind": "$starts"},
        {"$facet": {
            "sizes": [{"$group": {"_id": "$starts", "n": {"$sum": 1}}}],
            "returns": [
                {"$unwind": "$returns"},
                {"$project": {"c": "$starts", "k": _period_diff("$returns", "$starts", period)}},
                {"$match": {"k": {"$gte": 1, "$lt": periods}}},
                {"$group": {"_id": {"c": "$c", "k": "$k"}, "n": {"$sum": 1}}},
            ],
        }},
    ]
    facet = next(iter(ActivityRollup._get_collection().aggregate(pipeline)), {"sizes": [], "returns": []})
    sizes = {as_utc(row["_id"]): row["n"] for row in facet["sizes"]}
    returned = {(as_utc(row["_id"]["c"]), int(row["_id"]["k"])): row["n"] for row in facet["returns"]}
    out = []
    for index in range(cohorts):
        cohort = add_periods(first, period, index)
        size = sizes.get(cohort, 0)
        length = min(periods, cohorts - index)  # periods after the current one have not begun
        counts = [size] + [returned.get((cohort, k), 0) for k in range(1, length)]
        out.append({"cohort": cohort.date().isoformat(), "label": label(cohort, period), "size": size,
                    "counts": counts, "retention": [n / size if size else 0.0 for n in counts]})
    return {"period": period, "mode": mode, "start_event": start_event, "return_event": return_event,
            "cohorts": out, "generated_at": utcnow()}
