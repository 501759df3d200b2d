"""Engagement: batch ingestion through the endpoint against raw insert_many, and the analytics endpoints
(computed from daily rollups) against a straightforward aggregation over the raw events, then at 10x the
events on the same member-days.

Starts its own SecantusDB and Redis and drives the app in-process (Flask test client). Analytics are timed
with their caches emptied before every call, so the figure is the computation, not a cache hit.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from bench import Row, embedded_servers

INGEST_KEY = "bench-ingest-key-0123456789abcdef"
BASE = "/api/phase14/engagement"
MEMBERS = 2000
DAYS = 90
EVENTS_PER_DAY = 5  # per active member-day; 10x in the growth run
ACTIVE_SHARE = 200_000 / (MEMBERS * DAYS * EVENTS_PER_DAY)  # ~200,000 events in all
FEATURES = ["blog_read", "event_rsvp", "volunteer_signup", "comment", "search", "profile_update"]
ROUNDS = 9  # ingestion rounds; the median is reported
REPEATS = 5


def _config(mongo_uri: str, redis_url: str) -> dict:
    return {"TESTING": False, "SECRET_KEY": "bench-" + "k" * 48, "MONGODB_URI": mongo_uri, "REDIS_URL": redis_url,
            "INGEST_KEYS": INGEST_KEY, "TELEMETRY_ENABLED": False, "RATELIMIT_ENABLED": False,
            "LOG_LEVEL": "WARNING"}


# --- ingestion -----------------------------------------------------------------------------------------------

def _batch(rng: random.Random, round_no: int, now: datetime) -> list[dict]:
    """1000 events from 100 members over the last hours, half of them with session ids."""
    events = []
    for n in range(1000):
        user = rng.randrange(100)
        event = {"user_id": f"live{user:03d}", "event": "page_view", "feature": rng.choice(FEATURES),
                 "timestamp": (now - timedelta(minutes=rng.randrange(600))).isoformat(),
                 "event_id": f"r{round_no}-{n}", "properties": {"path": f"/p/{rng.randrange(50)}"}}
        if user % 2:
            event["session_id"] = f"s{user}-{round_no}"
        events.append(event)
    return events


def ingestion_rows(app) -> list[Row]:
    """Each round posts one batch and inserts the same documents raw (order alternating); each round gives a
    ratio, and the median round is reported with every round's ratio printed (the machine is shared and
    noisy: a spike in one round should not decide the figure)."""
    from console.blueprints.engagement.ingest import TrackEvent, build_document
    from console.db import get_db

    database = get_db()
    indexed, bare = database["bench_raw_indexed"], database["bench_raw"]
    indexed.create_index("event_id", unique=True)
    indexed.create_index([("user_id", 1), ("timestamp", -1)])
    client = app.test_client()
    rng = random.Random(7)
    now = datetime.now(UTC)
    rounds = []
    client.post(f"{BASE}/track-activity", json={"events": _batch(rng, -1, now)}, headers={"X-Ingest-Key": INGEST_KEY})
    for round_no in range(ROUNDS):
        batch = _batch(rng, round_no, now)
        docs = [build_document(TrackEvent.model_validate(event), now) for event in batch]
        steps = [("endpoint", lambda b=batch: client.post(f"{BASE}/track-activity", json={"events": b},
                                                          headers={"X-Ingest-Key": INGEST_KEY})),
                 ("indexed", lambda d=docs: indexed.insert_many([dict(x) for x in d], ordered=False)),
                 ("bare", lambda d=docs: bare.insert_many([dict(x) for x in d], ordered=False))]
        if round_no % 2:
            steps.reverse()
        spent = {}
        for name, step in steps:
            started = time.perf_counter()
            result = step()
            spent[name] = time.perf_counter() - started
            if name == "endpoint":
                assert result.status_code == 202 and result.get_json()["accepted"] == 1000, result.get_data()
        rounds.append(spent)
    ratios = sorted((r["indexed"] / r["endpoint"], index) for index, r in enumerate(rounds))
    middle = rounds[ratios[len(ratios) // 2][1]]
    print(f"   ingestion vs raw insert_many per round: {', '.join(f'{r:.2f}' for r, _ in ratios)} "
          f"(median {ratios[len(ratios) // 2][0]:.2f})", flush=True)
    rate = {name: 1000 / seconds for name, seconds in middle.items()}
    return [
        Row("ingestion through track-activity, 1000-event batches, median round (events/s)", rate["endpoint"],
            "raw insert_many, same docs, same indexes (unique event_id, user_id+timestamp) (events/s)",
            rate["indexed"], ">= 0.6"),
        Row("ingestion through track-activity, 1000-event batches, median round (events/s)", rate["endpoint"],
            "raw insert_many, same docs, no secondary index (events/s)", rate["bare"], "info"),
    ]


# --- dashboards ----------------------------------------------------------------------------------------------

def _member_days(rng: random.Random, today: datetime):
    """(user_id, day) pairs with activity: each member has a rate and joined at some point in the 90 days."""
    for index in range(MEMBERS):
        rate = min(1.0, ACTIVE_SHARE * rng.uniform(0.3, 1.7) * 2)  # members are around for half the days
        joined = rng.randrange(DAYS)
        for days_ago in range(joined, -1, -1):
            if rng.random() < rate:
                yield f"b{index:05d}", today - timedelta(days=days_ago)


def _events(rng: random.Random, user_id: str, day: datetime, count: int) -> list[dict]:
    """A member uses the same few features day after day; a busier day is more of the same."""
    own = random.Random(user_id)
    favourites = own.sample(FEATURES, own.randint(1, 3))
    start = day + timedelta(hours=rng.randrange(7, 22), minutes=rng.randrange(60))
    with_session = rng.random() < 0.5
    out = []
    for n in range(count):
        stamp = start + timedelta(minutes=n * rng.choice((1, 2, 3, 40)) % 120)
        doc = {"event_id": f"{user_id}-{day:%Y%m%d}-{n}", "user_id": user_id, "event": "page_view",
               "feature": rng.choice(favourites), "timestamp": stamp, "received_at": stamp, "clamped": False}
        if with_session:
            doc["session_id"] = f"{user_id}-{day:%Y%m%d}"
        out.append(doc)
    return out


def load_dataset(per_day: int, store_events: bool) -> int:
    """Rollups (and, if asked, raw events, then also the members) for the same member-days."""
    from console.blueprints.engagement.ingest import rollup_documents
    from console.blueprints.engagement.models import ActivityRollup, UserActivity
    from console.members import Member

    rng = random.Random(2026)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    chunk, total, seen = [], 0, {}
    days_by_user: dict[str, list[datetime]] = {}
    for user_id, day in _member_days(rng, today):
        days_by_user.setdefault(user_id, []).append(day)

    def flush():
        nonlocal chunk, total
        if store_events:
            UserActivity._get_collection().insert_many(chunk, ordered=False)
        ActivityRollup._get_collection().insert_many(rollup_documents(chunk), ordered=False)
        total += len(chunk)
        chunk = []

    event_rng = random.Random(99)
    for user_id, days in days_by_user.items():
        for day in days:
            events = _events(event_rng, user_id, day, per_day)
            chunk.extend(events)
            stamps = [event["timestamp"] for event in events]
            first, last = seen.get(user_id, (stamps[0], stamps[0]))
            seen[user_id] = (min(first, *stamps), max(last, *stamps))
        if len(chunk) >= 20_000:
            flush()
    if chunk:
        flush()
    if store_events:
        Member._get_collection().insert_many([
            {"user_id": uid, "email": f"{uid}@example.org", "created_at": first - timedelta(hours=1),
             "first_seen": first, "last_seen": last} for uid, (first, last) in seen.items()])
    return total


def _raw_pipelines(today: datetime) -> dict[str, tuple[str, list[dict]]]:
    """What one would write without rollups: the same questions straight over user_activities."""
    day = {"$dateTrunc": {"date": "$timestamp", "unit": "day", "timezone": "UTC"}}
    week = {"$dateTrunc": {"date": "$timestamp", "unit": "week", "startOfWeek": "monday", "timezone": "UTC"}}
    since30 = today - timedelta(days=29)
    return {
        "metrics": ("user_activities", [
            {"$match": {"timestamp": {"$gte": since30}}},
            {"$facet": {
                "series": [{"$group": {"_id": {"d": day, "u": "$user_id"}, "n": {"$sum": 1}}},
                           {"$group": {"_id": "$_id.d", "active": {"$sum": 1}, "events": {"$sum": "$n"}}}],
                "users": [{"$group": {"_id": "$user_id", "last": {"$max": day}, "days": {"$addToSet": day}}},
                          {"$group": {"_id": None, "mau": {"$sum": 1}, "user_days": {"$sum": {"$size": "$days"}}}}],
                "features": [{"$group": {"_id": {"f": "$feature", "u": "$user_id"}, "n": {"$sum": 1}}},
                             {"$group": {"_id": "$_id.f", "users": {"$sum": 1}, "events": {"$sum": "$n"}}}],
            }}]),
        "retention-analysis": ("user_activities", [
            {"$group": {"_id": {"u": "$user_id", "w": week}}},
            {"$group": {"_id": "$_id.u", "weeks": {"$push": "$_id.w"}, "first": {"$min": "$_id.w"}}},
            {"$match": {"first": {"$gte": today - timedelta(weeks=8)}}},
            {"$unwind": "$weeks"},
            {"$group": {"_id": {"c": "$first", "w": "$weeks"}, "n": {"$sum": 1}}}]),
        "lifecycle": ("user_activities", [
            {"$group": {"_id": {"u": "$user_id", "p": week}}},
            {"$setWindowFields": {"partitionBy": "$_id.u", "sortBy": {"_id.p": 1},
                                  "output": {"prev": {"$shift": {"output": "$_id.p", "by": -1}}}}},
            {"$group": {"_id": {"p": "$_id.p", "returning": {"$ne": ["$prev", None]}}, "n": {"$sum": 1}}}]),
        "churn-prediction": ("user_activities", [
            {"$match": {"timestamp": {"$gte": today - timedelta(days=84 + 30)}}},  # now and 30 days ago
            {"$group": {"_id": "$user_id", "days": {"$addToSet": day}, "last": {"$max": "$timestamp"},
                        "features": {"$addToSet": "$feature"}}}]),
        "inactive-users": ("user_activities", [
            {"$group": {"_id": "$user_id", "last": {"$max": "$timestamp"}}},
            {"$match": {"last": {"$lte": today - timedelta(days=30)}}}, {"$sort": {"last": 1}}, {"$limit": 50}]),
    }


ENDPOINTS = {
    "metrics": f"{BASE}/metrics",
    "retention-analysis": f"{BASE}/retention-analysis?period=week&cohorts=8",
    "lifecycle": f"{BASE}/lifecycle?interval=week&periods=12",
    "churn-prediction": f"{BASE}/churn-prediction?limit=50",
    "inactive-users": f"{BASE}/inactive-users?days=30",
}


def dashboard_rows(app) -> list[Row]:
    """Load 1x (events and rollups) and 10x (rollups) side by side, then time ours at 1x, ours at 10x and the
    raw aggregation in alternation, so the machine's drift hits all three alike; medians of REPEATS."""
    from console.accounts import Admin
    from console.blueprints.engagement.models import ActivityRollup
    from console.db import get_db
    from console.security import hash_password, issue_token

    database = get_db()
    total = load_dataset(EVENTS_PER_DAY, store_events=True)
    database.activity_rollups.rename("rollups_1x")
    ActivityRollup.ensure_indexes()
    total10 = load_dataset(EVENTS_PER_DAY * 10, store_events=False)
    database.activity_rollups.rename("rollups_10x")
    database.user_activities.create_index("timestamp")  # the raw baseline gets the index it needs
    admin = Admin(email="bench@example.com", roles=["super_admin"], password_hash=hash_password("bench-pw-123")).save()
    token, _ = issue_token(admin)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    raw_pipelines = _raw_pipelines(datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0))

    def ours(path: str, rollups: str) -> float:
        database[rollups].rename("activity_rollups")
        try:
            for name in ("engagement_metrics", "retention_cohorts"):
                database[name].delete_many({})
            started = time.perf_counter()
            response = client.get(path)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, response.get_data()[:300]
            return elapsed * 1000
        finally:
            database.activity_rollups.rename(rollups)

    def raw(name: str) -> float:
        collection, pipeline = raw_pipelines[name]
        started = time.perf_counter()
        list(database[collection].aggregate(pipeline, allowDiskUse=True))
        return (time.perf_counter() - started) * 1000

    samples = {name: {"1x": [], "10x": [], "raw": []} for name in ENDPOINTS}
    for repeat in range(REPEATS):
        for name, path in ENDPOINTS.items():
            steps = [("1x", lambda p=path: ours(p, "rollups_1x")), ("10x", lambda p=path: ours(p, "rollups_10x")),
                     ("raw", lambda n=name: raw(n))]
            for label, step in (steps if repeat % 2 == 0 else list(reversed(steps))):
                samples[name][label].append(step())
    median = {name: {label: statistics.median(values) for label, values in by.items()}
              for name, by in samples.items()}
    rows = [Row(f"GET {name}, {total:,} events / {MEMBERS:,} members / {DAYS} days, uncached (ms)",
                median[name]["1x"], "straightforward aggregation over raw events (ms)", median[name]["raw"], "<= 0.5",
                higher_is_better=False) for name in ENDPOINTS]
    rows += [Row(f"GET {name} at 10x events on the same member-days ({total10:,} events) (ms)", median[name]["10x"],
                 f"same endpoint at 1x ({total:,} events) (ms)", median[name]["1x"], "<= 1.3", higher_is_better=False)
             for name in ENDPOINTS]
    return rows


def main() -> list[Row]:
    from console import create_app
    from console.cli import prepare_database

    with embedded_servers("engagement") as env:
        uri, redis_url = env.mongo_uri, env.redis_url
        app = create_app(_config(uri, redis_url))
        with app.app_context():
            prepare_database()
            rows = ingestion_rows(app)
            print("   ingestion done", flush=True)
            rows += dashboard_rows(app)
        return rows
