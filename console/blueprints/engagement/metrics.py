"""DAU/WAU/MAU, stickiness, sessions and feature usage, from the day aggregates (exact sets of member ordinals).

Past days come from answers frozen per period (frozen.Reader): a request reads a few small documents per period
shown plus today's day document, so its cost follows the number of periods, not of members, and an event ingested
now counts on the next request without recomputing the past.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from console.blueprints.engagement.frozen import Reader
from console.blueprints.engagement.periods import as_day, label, period_end, periods_between, zone_name
from console.blueprints.engagement.rollups import unescape_key
from console.timeutil import utcnow

DAY = timedelta(days=1)
STICKINESS_WINDOWS = (7, 30)


def cached(model, key: str, range_from: datetime, range_to: datetime, compute):
    """Return a cached result for `key`, computing and storing it when absent (kept for the churn report)."""
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
    """Labels of the local days [start, end]; the 30 days ending today by default."""
    end_day = as_day(end or utcnow())
    start_day = as_day(start) if start else end_day - timedelta(days=days - 1)
    return start_day, end_day


def metrics(start: datetime | None = None, end: datetime | None = None, interval: str = "day") -> dict:
    """The engagement summary for the local days [start, end] by `interval`; scalars for the day of `end`."""
    start_day, end_day = default_range(start, end)
    reader = Reader()
    bounds = [(period, max(period, start_day), min(period_end(period, interval), end_day))
              for period in periods_between(start_day, end_day, interval)]
    last30 = [end_day - n * DAY for n in range(29, -1, -1)]
    numbers = reader.numbers([(low, high) for _period, low, high in bounds] + [(day, day) for day in last30])
    series = []
    for (period, low, high), counts in zip(bounds, numbers, strict=False):
        item = {"period": period.date().isoformat(), "label": label(period, interval),
                "active_users": counts["active"], "new_users": counts["new"],
                "events": counts["events"], "sessions": counts["sessions"],
                "feature_users": {unescape_key(name): users
                                  for name, (users, _events) in sorted(counts["features"].items()) if users}}
        if interval == "day":
            item["dau"] = item["active_users"]
        if (low, high) != (period, period_end(period, interval)):
            item["partial"] = True  # from/to cut this week or month: it is not the whole period
        series.append(item)
    whole = reader.span(start_day, end_day, features=True)
    active, sessions = len(whole.users), whole.sessions
    mau = len(reader.span(end_day - 29 * DAY, end_day).users)
    user_days = sum(counts["active"] for counts in numbers[len(bounds):])
    return {
        "interval": interval,
        "series": series,
        "dau": numbers[-1]["active"],
        "wau": len(reader.span(end_day - 6 * DAY, end_day).users),
        "mau": mau,
        "stickiness": user_days / 30 / mau if mau else 0.0,  # mean DAU over the 30 days ending `to`, over MAU
        "active_users": active,
        "events": whole.events,
        "sessions": sessions,
        "sessions_per_user": sessions / active if active else 0.0,
        "avg_session_minutes": whole.seconds / sessions / 60 if sessions else 0.0,
        "feature_usage": _feature_usage(whole, active),
        "stickiness_distribution": {str(window): reader.stickiness(end_day, window) for window in STICKINESS_WINDOWS},
        "timezone": zone_name(),
        "from": start_day.date().isoformat(),
        "to": end_day.date().isoformat(),
    }


def _feature_usage(whole, active: int) -> list[dict]:
    rows = [{"feature": unescape_key(name), "events": events, "users": len(bits),
             "adoption": len(bits) / active if active else 0.0}
            for name, (bits, events) in whole.features.items() if events or bits]
    return sorted(rows, key=lambda item: (-item["users"], -item["events"], item["feature"]))
