"""DAU/WAU/MAU, stickiness, sessions and feature usage, from the day aggregates (exact sets of member ordinals).

A request reads one small document per day shown (plus the member sets of earlier days, for "new"), so its cost
follows the number of days, not of members. Nothing is cached: an event ingested now counts on the next request.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pyroaring import BitMap

from console.blueprints.engagement.aggregates import Day, read_days, union
from console.blueprints.engagement.periods import (
    add_periods,
    as_day,
    label,
    period_end,
    periods_between,
    zone_name,
)
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
    window_start = min(start_day, end_day - 29 * DAY)
    days = read_days(window_start, end_day, features=True)
    earlier = read_days(None, window_start - DAY, counters=False)
    seen = union(earlier, datetime.min.replace(tzinfo=end_day.tzinfo), window_start - DAY)
    seen |= union(days, window_start, start_day - DAY)
    series = []
    for period in periods_between(start_day, end_day, interval):
        low, high = max(period, start_day), min(period_end(period, interval), end_day)
        active = union(days, low, high)
        sums = _sums(days, low, high)
        item = {"period": period.date().isoformat(), "label": label(period, interval),
                "active_users": len(active), "new_users": len(active - seen),
                "events": sums["events"], "sessions": sums["sessions"],
                "feature_users": _feature_users(days, low, high)}
        if interval == "day":
            item["dau"] = item["active_users"]
        if (low, high) != (period, period_end(period, interval)):
            item["partial"] = True  # from/to cut this week or month: it is not the whole period
        seen |= active
        series.append(item)
    active = union(days, start_day, end_day)
    totals = _sums(days, start_day, end_day)
    sessions = totals["sessions"]
    return {
        "interval": interval,
        "series": series,
        **_active_counts(days, end_day),
        "active_users": len(active),
        "events": totals["events"],
        "sessions": sessions,
        "sessions_per_user": sessions / len(active) if active else 0.0,
        "avg_session_minutes": totals["seconds"] / sessions / 60 if sessions else 0.0,
        "feature_usage": _feature_usage(days, start_day, end_day, len(active)),
        "stickiness_distribution": {str(window): stickiness_distribution(days, end_day, window)
                                    for window in STICKINESS_WINDOWS},
        "timezone": zone_name(),
        "from": start_day.date().isoformat(),
        "to": end_day.date().isoformat(),
    }


def _sums(days: dict[datetime, Day], low: datetime, high: datetime) -> dict:
    picked = [day for key, day in days.items() if low <= key <= high]
    return {"events": sum(day.events for day in picked), "sessions": sum(day.sessions for day in picked),
            "seconds": sum(day.seconds for day in picked)}


def _features(days: dict[datetime, Day], low: datetime, high: datetime) -> dict[str, list]:
    """Per feature (escaped name): [members who used it in [low, high], events]."""
    found: dict[str, list] = {}
    for key, day in days.items():
        if low <= key <= high:
            for name, (bits, events) in day.features.items():
                entry = found.setdefault(name, [BitMap(), 0])
                entry[0] |= bits
                entry[1] += events
    return found


def _feature_users(days, low, high) -> dict[str, int]:
    """Feature adoption over time: members per feature in the period."""
    return {unescape_key(name): len(bits) for name, (bits, _events) in sorted(_features(days, low, high).items())
            if bits}


def _feature_usage(days, low, high, active: int) -> list[dict]:
    rows = [{"feature": unescape_key(name), "events": events, "users": len(bits),
             "adoption": len(bits) / active if active else 0.0}
            for name, (bits, events) in _features(days, low, high).items() if events or bits]
    return sorted(rows, key=lambda item: (-item["users"], -item["events"], item["feature"]))


def _active_counts(days: dict[datetime, Day], end_day: datetime) -> dict:
    """DAU (the day of `to`), WAU (7 days ending it), MAU (30 days) and stickiness (mean DAU over the 30 days
    divided by MAU)."""
    mau = len(union(days, end_day - 29 * DAY, end_day))
    user_days = sum(len(day.users) for key, day in days.items() if end_day - 29 * DAY <= key <= end_day)
    return {"dau": len(days[end_day].users) if end_day in days else 0,
            "wau": len(union(days, end_day - 6 * DAY, end_day)), "mau": mau,
            "stickiness": user_days / 30 / mau if mau else 0.0}


def day_count_slices(bitmaps: list[BitMap]) -> list[BitMap]:
    """A binary counter over member sets: slice i holds the members whose number of sets has bit i set."""
    slices: list[BitMap] = []
    for bits in bitmaps:
        carry, index = BitMap(bits), 0
        while carry:
            if index == len(slices):
                slices.append(carry)
                break
            slices[index], carry = slices[index] ^ carry, slices[index] & carry
            index += 1
    return slices


def stickiness_distribution(days: dict[datetime, Day], end_day: datetime, window: int) -> list[int]:
    """[n1..n_window]: members active on exactly k of the `window` days ending `end_day` (PostHog's stickiness)."""
    bitmaps = [days[key].users for key in (end_day - n * DAY for n in range(window)) if key in days]
    everyone = BitMap.union(*bitmaps) if bitmaps else BitMap()
    slices = day_count_slices(bitmaps)
    out = []
    for count in range(1, window + 1):
        if count >> len(slices):
            out.append(0)
            continue
        members = BitMap(everyone)
        for index, bits in enumerate(slices):
            members = members & bits if count >> index & 1 else members - bits
        out.append(len(members))
    return out


def period_users(days: dict[datetime, Day], start: datetime, interval: str, pick=lambda day: day.users) -> BitMap:
    """The members of one period (a union over its days)."""
    return union(days, start, add_periods(start, interval, 1) - DAY, pick)
