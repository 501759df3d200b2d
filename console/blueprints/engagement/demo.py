"""Demo activity: ~90 days for the demo members, written through the ingestion service so rollups are right."""

from __future__ import annotations

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


def _member_plan(rng: random.Random, index: int) -> dict:
    kind = rng.random()
    return {
        "join": int((DAYS - 1) * (1 - rng.random() ** 1.5)),  # days ago: most joined early, some keep arriving
        "rate": rng.uniform(0.15, 0.75) if kind > 0.15 else rng.uniform(0.05, 0.15),
        "drift": rng.randint(12, 60) if kind < 0.3 else None,  # stops gradually this many days ago
        "features": rng.sample(list(FEATURES), rng.randint(1, 4)),
        "weekend": rng.uniform(0.3, 1.3),
        "sessions_ids": rng.random() < 0.5,
        "silent": index % 23 == 0,  # a few members never show up
    }


def demo_events(rng: random.Random, now: datetime, user_ids: list[str]) -> list[dict]:
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    events = []
    for index, user_id in enumerate(user_ids):
        plan = _member_plan(rng, index)
        if plan["silent"]:
            continue
        for days_ago in range(min(plan["join"], DAYS - 1), -1, -1):
            day = today - timedelta(days=days_ago)
            chance = plan["rate"] * (plan["weekend"] if day.weekday() >= 5 else 1.0)
            if plan["drift"] is not None and days_ago < plan["drift"]:
                chance *= 0.25 ** ((plan["drift"] - days_ago) / 4)
            if days_ago == plan["join"] or rng.random() < chance:
                start = day + timedelta(hours=rng.choice([7, 8, 12, 13, 18, 19, 20, 21]), minutes=rng.randint(0, 59))
                for session in range(1 if rng.random() < 0.75 else 2):
                    moment = start + timedelta(hours=3 * session)
                    for n in range(rng.randint(1, 3)):
                        feature = rng.choice(plan["features"])
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
