"""Demo activity: ~90 days for the demo members, written through the ingestion service so rollups are right.

Members behave as real ones do, so the churn backtest has something to tell apart: regulars, casual members on a
slow rhythm who stay, members who fade over weeks before they stop, a few who stop abruptly, and vacationers who
come back after a gap."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

from pymongo import UpdateOne

from console.blueprints.engagement.ingest import backfill
from console.blueprints.engagement.models import UserActivity
from console.members import Member

DAYS = 90
FEATURES = {
    "blog_read": ("blog_viewed", "blog_finished"),
    "event_rsvp": ("event_viewed", "rsvp_created"),
    "volunteer_signup": ("shift_viewed", "volunteer_signed_up"),
    "comment": ("comment_posted",),
    "search": ("search_performed",),
    "profile_update": ("profile_updated",),
}
CITIES = ["Lisbon", "Berlin", "Nairobi", "Osaka", "Toronto", "Lima", "Pune", "Oslo"]
CHUNK = 5000


KINDS = (  # share of members, what they do
    (0.36, "regular"),  # on their habitual weekdays, steady
    (0.24, "casual"),  # about once every week or two, on their own rhythm, and they stay
    (0.22, "fading"),  # slow down over weeks (fewer days, shorter sessions, fewer features), then stop
    (0.06, "abrupt"),  # a regular who stops one day without warning
    (0.12, "vacation"),  # a regular with a gap of two or three weeks who comes back
)


def _member_plan(rng: random.Random, index: int) -> dict:
    pick, kind = rng.random(), KINDS[-1][1]
    for share, name in KINDS:
        if pick < share:
            kind = name
            break
        pick -= share
    plan = {
        "kind": kind,
        "join": int((DAYS - 1) * (1 - rng.random() ** 1.5)),  # days ago: most joined early, some keep arriving
        "habit": set(rng.sample(range(7), rng.randint(2, 6))),  # the weekdays they usually come
        "every": rng.randint(6, 14),  # a casual member's usual gap in days
        "depth": rng.randint(2, 5),  # events per session
        "features": rng.sample(list(FEATURES), rng.randint(2, 4)),
        "sessions_ids": rng.random() < 0.5,
        "silent": index % 23 == 0,  # a few members never show up
        "stop": rng.randint(-14, DAYS - 10),  # fading/abrupt: the last active day (days ago; < 0: still to come)
        "fade": rng.randint(14, 42),  # fading: how many days the slowdown takes
        "away": rng.randint(0, DAYS - 20), "away_for": rng.randint(12, 24),  # vacation: from (days ago), days
    }
    plan["stop"] = min(plan["stop"], plan["join"] - 7)  # they were here for a week at least
    if kind == "casual":
        plan["depth"], plan["features"] = rng.randint(1, 3), plan["features"][:2]
    return plan


def _day_plan(plan: dict, days_ago: int, weekday: int) -> tuple[float, int, list[str]]:
    """The chance of activity on the day, the session depth and the features in use."""
    kind, depth, features = plan["kind"], plan["depth"], plan["features"]
    if kind == "casual":
        due = (days_ago % plan["every"]) == (plan["join"] % plan["every"])
        return (0.85 if due else 0.02), depth, features
    chance = 0.8 if weekday in plan["habit"] else 0.06
    if kind in ("fading", "abrupt") and days_ago < plan["stop"]:
        return 0.0, depth, features
    if kind == "fading" and days_ago < plan["stop"] + plan["fade"]:
        left = (days_ago - plan["stop"]) / plan["fade"]  # 1 when the slowdown starts, 0 at the last day
        chance = max(0.08, chance * left ** 1.5)
        depth = max(1, round(depth * left))
        features = features[:max(1, math.ceil(len(features) * left))]
    if kind == "vacation" and plan["away"] - plan["away_for"] < days_ago <= plan["away"]:
        return 0.0, depth, features
    return chance, depth, features


def demo_events(rng: random.Random, now: datetime, user_ids: list[str]) -> list[dict]:
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    events = []
    for index, user_id in enumerate(user_ids):
        plan = _member_plan(rng, index)
        if plan["silent"]:
            continue
        for days_ago in range(min(plan["join"], DAYS - 1), -1, -1):
            day = today - timedelta(days=days_ago)
            chance, depth, features = _day_plan(plan, days_ago, day.weekday())
            if (days_ago == plan["join"] and chance > 0) or rng.random() < chance:
                start = day + timedelta(hours=rng.choice([7, 8, 12, 13, 18, 19, 20, 21]), minutes=rng.randint(0, 59))
                for session in range(1 if rng.random() < 0.75 else 2):
                    moment = start + timedelta(hours=3 * session)
                    for n in range(rng.randint(1, depth)):
                        feature = rng.choice(features)
                        moment += timedelta(minutes=rng.randint(1, 12))
                        if moment > now:
                            break
                        event = {"event_id": f"demo-{user_id}-{days_ago}-{session}-{n}", "user_id": user_id,
                                 "event": rng.choice(FEATURES[feature]), "feature": feature,
                                 "timestamp": moment.isoformat()}
                        if plan["sessions_ids"]:
                            event["session_id"] = f"s-{user_id}-{days_ago}-{session}"
                        if days_ago == plan["join"] and session == 0 and n == 0:
                            event["traits"] = {"city": CITIES[index % len(CITIES)]}
                        events.append(event)
    return events


def seed_activity(rng: random.Random, now: datetime) -> str:
    """Idempotent: demo events have deterministic ids and the whole set is written once."""
    if UserActivity._get_collection().find_one({"event_id": {"$regex": "^demo-"}}, {"_id": 1}):
        return "already seeded"
    user_ids = [doc["user_id"] for doc in Member._get_collection().find(
        {"user_id": {"$regex": "^m[0-9]{4}$"}}, {"user_id": 1}).sort("user_id", 1)]
    events = demo_events(rng, now, user_ids)
    accepted, chunk = 0, []
    for index, event in enumerate(events):  # chunks hold whole members, so each gets its rollups in one insert
        chunk.append(event)
        last = index + 1 == len(events)
        if last or (len(chunk) >= CHUNK and events[index + 1]["user_id"] != event["user_id"]):
            accepted += backfill(chunk, now=now)["accepted"]
            chunk = []
    joined = {}
    for event in events:
        joined.setdefault(event["user_id"], event["timestamp"])
    Member._get_collection().bulk_write([
        UpdateOne({"user_id": uid}, {"$min": {"created_at": datetime.fromisoformat(stamp) - timedelta(hours=1)}})
        for uid, stamp in joined.items()], ordered=False) if joined else None
    return f"{accepted:,} events for {len(joined)} members over {DAYS} days"


def seed_churn_scores(rng: random.Random, now: datetime) -> str:
    """Score the demo members now, so the At-risk page has a list before the first daily run."""
    from console.blueprints.engagement.churn import rescore

    result = rescore(now)
    return f"{result['scored']} members scored ({result['tiers']['high']} high risk), {result['churned']} churned"
