"""Churn risk: an explainable score from recency against the member's own rhythm, trend and breadth."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from console.blueprints.engagement.metrics import cached
from console.blueprints.engagement.models import ActivityRollup, EngagementCache
from console.blueprints.engagement.periods import as_day
from console.timeutil import as_utc, utcnow

LOOKBACK_DAYS = 84
RECENT_DAYS = 14
BACKTEST_DAYS = 30
WEIGHTS = {"recency": 0.6, "trend": 0.25, "breadth": 0.15}
TIERS = (("high", 0.6), ("medium", 0.35), ("low", 0.0))
MODEL = {
    "name": "rhythm-recency-v1",
    "signals": [
        {"name": "recency", "weight": WEIGHTS["recency"],
         "description": "days since last activity compared with the member's usual gap between active days"},
        {"name": "trend", "weight": WEIGHTS["trend"],
         "description": f"active days per week in the last {RECENT_DAYS // 7} weeks against the weeks before"},
        {"name": "breadth", "weight": WEIGHTS["breadth"],
         "description": "how many different features the member used (fewer means easier to lose)"},
    ],
    "tiers": {"high": ">= 0.6", "medium": ">= 0.35", "low": "< 0.35"},
}


def tier_for(risk: float) -> str:
    return next(name for name, floor in TIERS if risk >= floor)


def activity_by_member(start: datetime, end: datetime, user_ids: list[str] | None = None) -> dict[str, list[dict]]:
    """Per member, their active days in [start, end] with the last time and the features used that day."""
    match: dict = {"day": {"$gte": as_day(start), "$lte": as_day(end)}}
    if user_ids is not None:
        match["user_id"] = {"$in": user_ids}
    rows = ActivityRollup._get_collection().aggregate([
        {"$match": match},
        {"$group": {"_id": "$user_id", "days": {"$push": {
            "d": "$day", "l": "$last_at",
            "f": {"$map": {"input": {"$objectToArray": {"$ifNull": ["$features", {}]}}, "in": "$$this.k"}}}}}},
    ])
    return {row["_id"]: row["days"] for row in rows}


def member_stats(activity: dict[str, list[dict]], as_of: datetime) -> list[dict]:
    """The lookback window before `as_of` of each member active in it: days, last time, features used."""
    end = as_day(as_of)
    start = end - timedelta(days=LOOKBACK_DAYS - 1)
    out = []
    for user_id, entries in activity.items():
        window = [entry for entry in entries if start <= as_utc(entry["d"]) <= end]
        if window:
            features = set().union(*(entry.get("f") or [] for entry in window))
            out.append({"_id": user_id, "days": [entry["d"] for entry in window],
                        "last": max(as_utc(entry["l"]) for entry in window if entry.get("l")),
                        "features": len(features)})
    return out


def score(stats: dict, as_of: datetime) -> dict:
    """Score one member as of `as_of`, with the reasons in words."""
    end = as_day(as_of)
    days = sorted({as_utc(day) for day in stats["days"]})
    first_day, last_day = days[0], days[-1]
    active_days = len(days)
    gap = (last_day - first_day).days / (active_days - 1) if active_days > 1 else 7.0
    gap = max(gap, 1.0)
    silent = (end - last_day).days
    ratio = silent / gap
    recency = 0.0 if ratio <= 1 else 1 - math.exp(-(ratio - 1) / 2)

    recent_start = end - timedelta(days=RECENT_DAYS - 1)
    recent = sum(1 for day in days if day >= recent_start)
    earlier_days = [day for day in days if day < recent_start]
    earlier_weeks = max(1.0, (recent_start - first_day).days / 7) if earlier_days else 0
    earlier_rate = len(earlier_days) / earlier_weeks if earlier_weeks else 0.0
    recent_rate = recent / (RECENT_DAYS / 7)
    trend = max(0.0, min(1.0, 1 - recent_rate / earlier_rate)) if earlier_rate else 0.0

    features = stats.get("features", 0)
    breadth = 1 / (1 + features)
    risk = round(WEIGHTS["recency"] * recency + WEIGHTS["trend"] * trend + WEIGHTS["breadth"] * breadth, 4)

    weeks = max(1, round(((last_day - first_day).days + 1) / 7))
    per_week = active_days / weeks
    if active_days < 3:
        rhythm = f"active on {active_days} day{'s' if active_days != 1 else ''} only"
    elif per_week >= 1:
        rhythm = (f"active {per_week:.0f} day{'s' if round(per_week) != 1 else ''} a week for {weeks} week"
                  f"{'s' if weeks != 1 else ''}")
    else:
        rhythm = f"active about once every {gap:.0f} days for {weeks} weeks"
    reasons = []
    if ratio > 1:
        reasons.append(f"{rhythm}, silent for {silent} days (usually back within {gap:.0f})")
    else:
        reasons.append(f"{rhythm}; last active {silent} day{'s' if silent != 1 else ''} ago, in line with "
                       "their usual rhythm")
    if trend >= 0.3 and recent:
        reasons.append(f"active on {trend * 100:.0f}% fewer days in the last {RECENT_DAYS // 7} weeks than in the "
                       "weeks before")
    if features <= 1:
        reasons.append("uses only one feature" if features == 1 else "has not used any tracked feature")
    last_seen = as_utc(stats.get("last"))
    return {"user_id": stats["_id"], "risk": risk, "tier": tier_for(risk), "reasons": reasons,
            "last_seen": last_seen, "days_inactive": (as_utc(as_of) - last_seen).days if last_seen else None,
            "signals": {"recency": round(recency, 4), "trend": round(trend, 4), "breadth": round(breadth, 4),
                        "usual_gap_days": round(gap, 2), "active_days": active_days, "features": features}}


def score_all(activity: dict[str, list[dict]], as_of: datetime) -> list[dict]:
    items = [score(stats, as_of) for stats in member_stats(activity, as_of)]
    items.sort(key=lambda item: (-item["risk"], item["user_id"]))
    return items


def backtest(activity: dict[str, list[dict]], now: datetime) -> dict:
    """Score everyone as of 30 days ago and compare the high tier with who actually went silent since."""
    as_of = now - timedelta(days=BACKTEST_DAYS)
    scored = score_all(activity, as_of)
    after = as_day(as_of)
    silent = {item["user_id"] for item in scored
              if not any(as_utc(entry["d"]) > after for entry in activity[item["user_id"]])}
    high = {item["user_id"] for item in scored if item["tier"] == "high"}
    hits = len(high & silent)
    return {"as_of": as_of, "scored": len(scored), "went_silent": len(silent), "high_tier": len(high),
            "true_positives": hits, "precision": hits / len(high) if high else None,
            "recall": hits / len(silent) if silent else None,
            "base_rate": len(silent) / len(scored) if scored else None,
            "definition": f"silent = no activity in the {BACKTEST_DAYS} days after the scoring date"}


def churn_report(now: datetime | None = None) -> dict:
    """Everyone active in the lookback window, riskiest first, with the model and its backtest (one query)."""
    now = now or utcnow()
    today = as_day(now)
    start = today - timedelta(days=LOOKBACK_DAYS + BACKTEST_DAYS)

    def compute():
        activity = activity_by_member(start, today)
        return {"generated_at": now, "model": {**MODEL, "backtest": backtest(activity, now)},
                "items": score_all(activity, now)}

    return cached(EngagementCache, f"churn:{today.date()}:{now.hour}", start, today, compute)


def risk_for(user_id: str, now: datetime | None = None) -> dict | None:
    now = now or utcnow()
    stats = member_stats(activity_by_member(now - timedelta(days=LOOKBACK_DAYS), now, [user_id]), now)
    return score(stats[0], now) if stats else None
