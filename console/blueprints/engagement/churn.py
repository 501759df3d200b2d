"""Churn risk: scored by a job, stored per member, with an honest backtest against the "days since last seen" rule.

Only members still here are scored: those active within CHURN_AFTER_DAYS. Longer-silent members are churned
and belong on the win-back (inactive) list, not in a risk tier.
"""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from pymongo import ReplaceOne

from console.blueprints.engagement.lifecycle import churn_after_days
from console.blueprints.engagement.models import ActivityRollup, ChurnRun, ChurnScore
from console.blueprints.engagement.periods import as_day
from console.timeutil import as_utc, utcnow

LOOKBACK_DAYS = 84
RECENT_DAYS = 14  # the recent window, set against the member's own earlier weeks
LAST_VISITS = 3  # session depth and breadth: the last visits against the earlier ones
BACKTEST_DAYS = 30  # the backtest scores as of this many days ago and watches what happened since
ELIGIBLE_DAYS = 14  # the backtest judges only members active in the 14 days before its cut
NEW_MEMBER_GAP = 7  # the usual gap assumed for a member with fewer than three active days
# Logistic regression weights, fitted on simulated members (regulars, casual members, faders, abrupt leavers,
# vacationers; not the demo's own) and rounded: risk is the chance of no activity in the next BACKTEST_DAYS days.
WEIGHTS = {"overdue": 1.3, "silence": 0.5, "frequency": 1.2, "depth": 1.4, "breadth": 1.1, "new_member": 2.1}
INTERCEPT = -5.0
TIERS = (("high", 0.3), ("medium", 0.12), ("low", 0.0))
MODEL = {
    "name": "own-rhythm-v3",
    "predicts": f"no activity in the next {BACKTEST_DAYS} days",
    "signals": [
        {"name": "overdue", "weight": WEIGHTS["overdue"],
         "description": "log(1 + days silent / the member's median gap between active days)"},
        {"name": "silence", "weight": WEIGHTS["silence"], "description": "log(1 + days since last activity)"},
        {"name": "frequency", "weight": WEIGHTS["frequency"],
         "description": f"drop in the share of active days: the last {RECENT_DAYS} days against the member's "
                        f"earlier weeks (0 to 1)"},
        {"name": "depth", "weight": WEIGHTS["depth"],
         "description": f"drop in events per active day: the last {LAST_VISITS} active days against the earlier "
                        "ones (0 to 1)"},
        {"name": "breadth", "weight": WEIGHTS["breadth"],
         "description": f"drop in features used per active day: the last {LAST_VISITS} against the earlier ones "
                        "(0 to 1)"},
        {"name": "new_member", "weight": WEIGHTS["new_member"], "description": "fewer than three active days"},
    ],
    "risk": f"1 / (1 + exp(-z)), z = {INTERCEPT} + the weighted sum of the signals",
    "tiers": {"high": ">= 0.3", "medium": ">= 0.12", "low": "< 0.12"},
    "tier_floors": dict(TIERS),
}
WRITE_CHUNK = 1000


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
            "d": "$day", "l": "$last_at", "e": "$events",
            "f": {"$map": {"input": {"$objectToArray": {"$ifNull": ["$features", {}]}}, "in": "$$this.k"}}}}}},
    ])
    return {row["_id"]: row["days"] for row in rows}


def member_stats(activity: dict[str, list[dict]], as_of: datetime, max_silence: int | None = None) -> list[dict]:
    """Members active in the lookback before `as_of` (and within `max_silence` days of it): their active days
    (day, events, features) oldest first, last time, how many features in all."""
    end = as_day(as_of)
    start = end - timedelta(days=LOOKBACK_DAYS - 1)
    out = []
    for user_id, entries in activity.items():
        by_day: dict[datetime, dict] = {}
        for entry in entries:
            day = as_utc(entry["d"])
            if start <= day <= end:
                by_day[day] = {"day": day, "events": entry.get("e") or 1, "features": len(entry.get("f") or ())}
        if not by_day:
            continue
        days = sorted(by_day)
        if max_silence is not None and (end - days[-1]).days > max_silence:
            continue
        window = [entry for entry in entries if start <= as_utc(entry["d"]) <= end]
        features = set().union(*(entry.get("f") or [] for entry in window))
        last = [as_utc(entry["l"]) for entry in window if entry.get("l")]
        out.append({"_id": user_id, "days": days, "visits": [by_day[day] for day in days],
                    "last": max(last) if last else days[-1], "features": len(features)})
    return out


def _drop(recent: float, earlier: float) -> float:
    """How far `recent` fell below `earlier`, 0 (no fall) to 1 (to nothing)."""
    return max(0.0, min(1.0, 1 - recent / earlier)) if earlier > 0 else 0.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def signals(days: list[datetime], end: datetime, visits: list[dict] | None = None) -> dict:
    """The model's inputs from a member's sorted active days up to `end` (a UTC midnight), measured against the
    member's own rhythm: the silence in their usual gaps, and the recent frequency, depth and breadth against
    their earlier weeks."""
    visits = visits or [{"day": day, "events": 1, "features": 1} for day in days]
    silent = (end - days[-1]).days
    gaps = sorted((later - earlier).days for earlier, later in itertools.pairwise(days))
    usual_gap = float(gaps[len(gaps) // 2]) if len(gaps) >= 2 else float(NEW_MEMBER_GAP)
    overdue = silent / max(usual_gap, 1.0)
    span = (end - days[0]).days + 1
    recent_days = sum(1 for day in days if (end - day).days < RECENT_DAYS)
    recent_rate = recent_days / min(RECENT_DAYS, span)
    earlier_span = span - RECENT_DAYS
    earlier_rate = (len(days) - recent_days) / earlier_span if earlier_span >= RECENT_DAYS else recent_rate
    frequency = _drop(recent_rate, earlier_rate)
    last, before = visits[-LAST_VISITS:], visits[:-LAST_VISITS]
    enough = len(before) >= LAST_VISITS
    depth = _drop(_mean([v["events"] for v in last]), _mean([v["events"] for v in before])) if enough else 0.0
    breadth = _drop(_mean([v["features"] for v in last]), _mean([v["features"] for v in before])) if enough else 0.0
    new_member = 1.0 if len(days) < 3 else 0.0
    z = (INTERCEPT + WEIGHTS["overdue"] * math.log1p(overdue) + WEIGHTS["silence"] * math.log1p(silent)
         + WEIGHTS["frequency"] * frequency + WEIGHTS["depth"] * depth + WEIGHTS["breadth"] * breadth
         + WEIGHTS["new_member"] * new_member)
    return {"silent_days": silent, "usual_gap": usual_gap, "overdue": overdue, "rate": len(days) / min(span, 28 * 3),
            "recent_rate": recent_rate, "earlier_rate": earlier_rate, "frequency": frequency, "depth": depth,
            "breadth": breadth, "trend": frequency, "risk": round(1 / (1 + math.exp(-z)), 4)}


def score(stats: dict, as_of: datetime) -> dict:
    """Score one member as of `as_of`, with the reasons in words."""
    end = as_day(as_of)
    days = stats["days"]
    s = signals(days, end, stats.get("visits"))
    silent, gap = s["silent_days"], s["usual_gap"]
    per_week = 7 / gap if gap else 0
    if len(days) < 3:
        rhythm = f"active on {len(days)} day{'s' if len(days) != 1 else ''} only"
    elif per_week >= 1:
        rhythm = f"usually back within {gap:.0f} day{'s' if gap != 1 else ''}"
    else:
        rhythm = f"active about once every {gap:.0f} days"
    reasons = []
    if silent > max(1.5 * gap, 2):
        reasons.append(f"{rhythm}, silent for {silent} days ({s['overdue']:.0f} times their usual gap)")
    else:
        reasons.append(f"{rhythm}; last active {silent} day{'s' if silent != 1 else ''} ago, in line with their "
                       "usual rhythm")
    if s["frequency"] >= 0.3:
        reasons.append(f"active on {s['recent_rate']:.0%} of the last {RECENT_DAYS} days, down from "
                       f"{s['earlier_rate']:.0%}")
    if s["depth"] >= 0.3:
        reasons.append(f"visits {s['depth']:.0%} shorter lately")
    if s["breadth"] >= 0.3:
        reasons.append(f"{s['breadth']:.0%} fewer features a visit lately")
    features = stats.get("features", 0)
    if features <= 1:
        reasons.append("uses only one feature" if features == 1 else "has not used any tracked feature")
    last_seen = as_utc(stats.get("last"))
    return {"user_id": stats["_id"], "risk": s["risk"], "tier": tier_for(s["risk"]), "reasons": reasons,
            "last_seen": last_seen, "days_inactive": (as_utc(as_of) - last_seen).days if last_seen else None,
            "signals": {"silent_days": silent, "usual_gap_days": gap, "overdue": round(s["overdue"], 4),
                        "active_day_rate": round(s["rate"], 4), "recent_rate": round(s["recent_rate"], 4),
                        "earlier_rate": round(s["earlier_rate"], 4), "frequency_drop": round(s["frequency"], 4),
                        "depth_drop": round(s["depth"], 4), "breadth_drop": round(s["breadth"], 4),
                        "trend": round(s["trend"], 4), "active_days": len(days), "features": features}}


def score_all(activity: dict[str, list[dict]], as_of: datetime, max_silence: int | None = None) -> list[dict]:
    items = [score(stats, as_of) for stats in member_stats(activity, as_of, max_silence)]
    items.sort(key=lambda item: (-item["risk"], item["user_id"]))
    return items


def _figures(flagged: float, hits: float, positives: int, population: int) -> dict:
    precision = hits / flagged if flagged else None
    base_rate = positives / population if population else None
    return {"flagged": flagged, "true_positives": round(hits, 2), "precision": precision,
            "recall": hits / positives if positives else None,
            "lift": precision / base_rate if precision is not None and base_rate else None}


def baseline_hits(silences: list[tuple[int, bool]], flagged: int) -> float:
    """The rule "flag the longest silent": ties at the cut-off share the remaining places (their expected hits)."""
    by_silence: dict[int, list[bool]] = {}
    for silent, positive in silences:
        by_silence.setdefault(silent, []).append(positive)
    hits, taken = 0.0, 0
    for silent in sorted(by_silence, reverse=True):
        group = by_silence[silent]
        room = flagged - taken
        if room <= 0:
            break
        take = min(room, len(group))
        hits += take * sum(group) / len(group)
        taken += take
    return hits


def backtest(activity: dict[str, list[dict]], now: datetime) -> dict:
    """Score as of BACKTEST_DAYS ago with only the data before, judge members active in the ELIGIBLE_DAYS before
    that cut, and compare the high tier with the rule "days since last seen" flagging as many members."""
    cut = as_day(now) - timedelta(days=BACKTEST_DAYS)
    before = {uid: [entry for entry in entries if as_utc(entry["d"]) <= cut] for uid, entries in activity.items()}
    scored = score_all(before, cut, max_silence=ELIGIBLE_DAYS - 1)
    came_back = {uid for uid, entries in activity.items() if any(as_utc(entry["d"]) > cut for entry in entries)}
    positives = {item["user_id"] for item in scored if item["user_id"] not in came_back}
    high = [item for item in scored if item["tier"] == "high"]
    model_hits = sum(1 for item in high if item["user_id"] in positives)
    silences = [(item["signals"]["silent_days"], item["user_id"] in positives) for item in scored]
    model = _figures(len(high), model_hits, len(positives), len(scored))
    baseline = _figures(len(high), baseline_hits(silences, len(high)), len(positives), len(scored))
    beats = (model["recall"] is not None and baseline["recall"] is not None and len(high) > 0
             and model["recall"] > baseline["recall"])
    return {"as_of": cut, "scored": len(scored), "went_silent": len(positives), "high_tier": len(high),
            "true_positives": model_hits, "precision": model["precision"], "recall": model["recall"],
            "lift": model["lift"], "base_rate": len(positives) / len(scored) if scored else None,
            "model": model, "baseline": {**baseline, "rule": "days since last seen, longest first"},
            "model_beats_baseline": beats,
            "definition": (f"members active in the {ELIGIBLE_DAYS} days before {cut.date()}, scored with data up "
                           f"to then; silent = no activity in the {BACKTEST_DAYS} days after")}


def rescore(now: datetime | None = None, job_id: str | None = None,
            progress: Callable[[float], None] | None = None) -> dict:
    """Score every member still here, store the scores (replacing the last run's) and the run's backtest."""
    now = now or utcnow()
    progress = progress or (lambda percent: None)
    today = as_day(now)
    activity = activity_by_member(today - timedelta(days=LOOKBACK_DAYS + BACKTEST_DAYS), today)
    progress(20)
    keep = churn_after_days()
    items = score_all(activity, now, max_silence=keep)
    churned = sum(1 for entries in activity.values()
                  if (today - max(as_day(as_utc(entry["d"])) for entry in entries)).days > keep)
    progress(50)
    run_id = secrets.token_hex(8)
    collection = ChurnScore._get_collection()
    for start in range(0, len(items), WRITE_CHUNK):
        collection.bulk_write([ReplaceOne({"user_id": item["user_id"]},
                                          {**item, "run_id": run_id, "computed_at": now}, upsert=True)
                               for item in items[start:start + WRITE_CHUNK]], ordered=False)
        progress(50 + 35 * min(1.0, (start + WRITE_CHUNK) / max(1, len(items))))
    collection.delete_many({"run_id": {"$ne": run_id}})
    tiers = {name: 0 for name, _ in TIERS}
    for item in items:
        tiers[item["tier"]] += 1
    run = {"run_id": run_id, "computed_at": now, "job_id": job_id, "scored": len(items), "tiers": tiers,
           "churned": churned, "churn_after_days": keep, "model": {**MODEL, "backtest": backtest(activity, now)}}
    ChurnRun._get_collection().insert_one(dict(run))
    ChurnRun._get_collection().delete_many({"computed_at": {"$lt": now - timedelta(days=30)}})
    progress(100)
    return {"run_id": run_id, "scored": len(items), "tiers": tiers, "churned": churned}


def latest_run() -> dict | None:
    return ChurnRun._get_collection().find_one({}, {"_id": 0}, sort=[("computed_at", -1)])


def _filter(tier: str | None, min_risk: float | None) -> dict:
    query: dict = {}
    if tier:
        query["tier"] = tier
    if min_risk is not None:
        query["risk"] = {"$gte": min_risk}
    return query


def stored_scores(*, tier: str | None = None, min_risk: float | None = None, limit: int = 50,
                  after: list | None = None, count: bool = True) -> dict:
    """Stored scores, riskiest first; `after` is the (risk, user_id) of the previous page's last row."""
    collection = ChurnScore._get_collection()
    query = _filter(tier, min_risk)
    total = collection.count_documents(query) if count else None
    if after:
        risk, user_id = after
        query = {"$and": [query, {"$or": [{"risk": {"$lt": risk}}, {"risk": risk, "user_id": {"$gt": user_id}}]}]}
    cursor = collection.find(query, {"_id": 0, "run_id": 0}).sort([("risk", -1), ("user_id", 1)])
    rows = [{**row, "last_seen": as_utc(row.get("last_seen")), "computed_at": as_utc(row.get("computed_at"))}
            for row in (cursor.limit(limit + 1) if limit else cursor)]
    more = bool(limit) and len(rows) > limit
    rows = rows[:limit] if limit else rows
    return {"total": total, "items": rows, "after": [rows[-1]["risk"], rows[-1]["user_id"]] if more else None}


def iter_scores(*, tier: str | None = None, min_risk: float | None = None):
    """Every stored score matching the filters, riskiest first, read from the cursor as it is consumed."""
    cursor = ChurnScore._get_collection().find(_filter(tier, min_risk), {"_id": 0, "run_id": 0}) \
        .sort([("risk", -1), ("user_id", 1)]).batch_size(1000)
    for row in cursor:
        yield {**row, "last_seen": as_utc(row.get("last_seen")), "computed_at": as_utc(row.get("computed_at"))}


def user_ids_at_risk(min_risk: float) -> set[str]:
    return {row["user_id"] for row in ChurnScore._get_collection().find({"risk": {"$gte": min_risk}},
                                                                       {"user_id": 1})}


def risk_for(user_id: str) -> dict | None:
    """The member's stored score, or None when they were not scored (new since, or churned)."""
    row = ChurnScore._get_collection().find_one({"user_id": user_id}, {"_id": 0, "run_id": 0})
    if row:
        row["last_seen"], row["computed_at"] = as_utc(row.get("last_seen")), as_utc(row.get("computed_at"))
    return row
