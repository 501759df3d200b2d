"""Engagement: ingestion over HTTP against raw insert_many; the analytics endpoints at 2,000 and 20,000 members
(same activity per member, 90 days) against each other and against a straightforward aggregation over the raw
events; and the overview page under live ingestion against /healthz.

Starts its own SecantusDB and Redis. HTTP figures go through a threaded werkzeug server on loopback (what
`make run` serves); endpoint timings use the in-process client. Nothing is cached between calls: the dashboards
read the day aggregates (and the churn report's cache is emptied before each call).
Environment: BENCH_ENGAGEMENT_MEMBERS ("2000,20000"), BENCH_ENGAGEMENT_DAYS (90), BENCH_ENGAGEMENT_REPEATS (5),
BENCH_ENGAGEMENT_RAW_REPEATS (1), BENCH_ENGAGEMENT_PARTS ("ingestion,scaling,live,raw": which parts run).
`python -m bench engagement` runs only this module.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta

from bench import Row, embedded_servers

INGEST_KEY = "bench-ingest-key-0123456789abcdef"
BASE = "/api/phase14/engagement"
SMALL, LARGE = (int(n) for n in os.environ.get("BENCH_ENGAGEMENT_MEMBERS", "2000,20000").split(","))
DAYS = int(os.environ.get("BENCH_ENGAGEMENT_DAYS", "90"))
REPEATS = int(os.environ.get("BENCH_ENGAGEMENT_REPEATS", "5"))
RAW_REPEATS = int(os.environ.get("BENCH_ENGAGEMENT_RAW_REPEATS", "1"))  # the raw anchor takes minutes at 20,000
EVENTS_PER_DAY = 5  # per active member-day
ACTIVE_SHARE = 200_000 / (2000 * 90 * EVENTS_PER_DAY)  # the same activity per member at every size
FEATURES = ["blog_read", "event_rsvp", "volunteer_signup", "comment", "search", "profile_update"]
ROUNDS = 9  # ingestion rounds; the median is reported
PARTS = set(os.environ.get("BENCH_ENGAGEMENT_PARTS", "ingestion,scaling,live,raw").split(","))


def _config(mongo_uri: str, redis_url: str) -> dict:
    return {"TESTING": False, "SECRET_KEY": "bench-" + "k" * 48, "MONGODB_URI": mongo_uri, "REDIS_URL": redis_url,
            "INGEST_KEYS": INGEST_KEY, "TELEMETRY_ENABLED": False, "RATELIMIT_ENABLED": False,
            "LOG_LEVEL": "WARNING"}


def _serve(app):
    from werkzeug.serving import make_server

    from devtools.services import free_port

    port = free_port()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


def _post(conn: http.client.HTTPConnection, events: list[dict]) -> dict:
    conn.request("POST", f"{BASE}/track-activity", json.dumps({"events": events}),
                 {"X-Ingest-Key": INGEST_KEY, "Content-Type": "application/json"})
    response = conn.getresponse()
    body = json.loads(response.read())
    assert response.status == 202, body
    return body


# --- ingestion -----------------------------------------------------------------------------------------------

def _batch(rng: random.Random, round_no: int, now: datetime, spread: bool) -> list[dict]:
    """1000 events. Spread: 500 members over the last 30 days, as a backfill or a busy platform sends them;
    otherwise the friendly batch (100 members, the last hours)."""
    members, minutes = (500, 30 * 24 * 60) if spread else (100, 600)
    events = []
    for n in range(1000):
        user = rng.randrange(members)
        stamp = now - timedelta(minutes=rng.randrange(minutes))
        event = {"user_id": f"live{user:04d}", "event": rng.choice(["page_view", "page_view", "signup"]),
                 "feature": rng.choice(FEATURES), "timestamp": stamp.isoformat(),
                 "event_id": f"{'s' if spread else 'f'}{round_no}-{n}",
                 "properties": {"path": f"/p/{rng.randrange(50)}"}}
        if user % 2:
            event["session_id"] = f"s{user}-{round_no}"
        events.append(event)
    return events


def ingestion_rows(app) -> list[Row]:
    """Each round posts one batch over HTTP and inserts the same documents raw (order alternating); the median
    round is reported, every round's ratio printed (the machine is shared and noisy). The request stores the events
    (ENGAGEMENT_FOLD=worker, the default); folding them, the worker's part, is timed after the rounds, its own row."""
    from console.blueprints.engagement import fold
    from console.blueprints.engagement.ingest import TrackEvent, build_document
    from console.db import get_db

    database = get_db()
    indexed, bare = database["bench_raw_indexed"], database["bench_raw"]
    indexed.create_index("event_id", unique=True)
    indexed.create_index([("user_id", 1), ("timestamp", -1)])
    server, port = _serve(app)
    rows = []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for spread in (True, False):
            rng = random.Random(7 if spread else 8)
            now = datetime.now(UTC)
            _post(conn, _batch(rng, -1, now, spread))  # warm up: first members, first days
            rounds = []
            for round_no in range(ROUNDS):
                batch = _batch(rng, round_no, now, spread)
                docs = [build_document(TrackEvent.model_validate(event), now) for event in batch]
                steps = [("endpoint", lambda b=batch: _post(conn, b)),
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
                        assert result["accepted"] == 1000, result
                rounds.append(spent)
            started = time.perf_counter()
            folded = fold.drain()["events"]  # what the worker does with them: every round's batch, in folds
            folding = folded / (time.perf_counter() - started)
            raw_rate = 1000 * len(rounds) / sum(r["indexed"] for r in rounds)
            ratios = sorted((r["indexed"] / r["endpoint"], index) for index, r in enumerate(rounds))
            middle = rounds[ratios[len(ratios) // 2][1]]
            kind = "500 members over 30 days" if spread else "100 members, the last hours"
            print(f"   ingestion ({kind}) vs raw insert_many per round: {', '.join(f'{r:.2f}' for r, _ in ratios)}",
                  flush=True)
            rate = {name: 1000 / seconds for name, seconds in middle.items()}
            rows.append(Row(f"ingestion over HTTP, 1000-event batches of {kind}, median round (events/s)",
                            rate["endpoint"], "raw insert_many, same docs, same indexes (unique event_id, "
                            "user_id+timestamp) (events/s)", rate["indexed"], ">= 0.6" if spread else "info"))
            rows.append(Row(f"folding those batches into rollups, aggregates and members (the worker, "
                            f"{folded:,} events) (events/s)", folding, "raw insert_many, same docs, same indexes, "
                            "all rounds (events/s)", raw_rate, "info"))
        rows.append(Row("ingestion over HTTP, friendly batches (events/s)", rows[-2].value,
                        "raw insert_many, no secondary index (events/s)", 1000 / middle["bare"], "info"))
    finally:
        server.shutdown()
    return rows


# --- datasets ------------------------------------------------------------------------------------------------

def _member_days(rng: random.Random, today: datetime, members: int):
    """(user_id, day) pairs with activity: each member has a rate and joined at some point in the days."""
    for index in range(members):
        rate = min(1.0, ACTIVE_SHARE * rng.uniform(0.3, 1.7) * 2)  # members are around for half the days
        joined = rng.randrange(DAYS)
        for days_ago in range(joined, -1, -1):
            if rng.random() < rate:
                yield f"b{index:06d}", today - timedelta(days=days_ago)


def _events(rng: random.Random, user_id: str, day: datetime, count: int) -> list[dict]:
    """A member uses the same few features day after day."""
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


def _dataset(members: int):
    """The dataset's events in chunks of about 20,000 that hold whole members (sessions cross days); the same
    events every time (fixed seeds), so the raw anchor can store exactly what the rollups were built from."""
    rng, event_rng = random.Random(2026), random.Random(99)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    chunk, current = [], None
    for user_id, day in _member_days(rng, today, members):
        if user_id != current and len(chunk) >= 20_000:
            yield chunk
            chunk = []
        current = user_id
        chunk.extend(_events(event_rng, user_id, day, EVENTS_PER_DAY))
    if chunk:
        yield chunk


def load_dataset(members: int) -> int:
    """Rollups, day aggregates and members in the app's database (no raw events: see raw_rows)."""
    from console.blueprints.engagement import aggregates
    from console.blueprints.engagement.models import ActivityRollup
    from console.blueprints.engagement.rollups import rollup_documents
    from console.members import Member

    total, seen = 0, {}
    for chunk in _dataset(members):
        ActivityRollup._get_collection().insert_many(rollup_documents(chunk), ordered=False)
        total += len(chunk)
        for event in chunk:
            first, last = seen.get(event["user_id"], (event["timestamp"], event["timestamp"]))
            seen[event["user_id"]] = (min(first, event["timestamp"]), max(last, event["timestamp"]))
    Member._get_collection().insert_many([
        {"user_id": uid, "email": f"{uid}@example.org", "created_at": first - timedelta(hours=1),
         "first_seen": first, "last_seen": last} for uid, (first, last) in seen.items()])
    aggregates.rebuild(everything=True)
    return total


def _raw_pipelines(today: datetime) -> dict[str, tuple[str, list[dict]]]:
    """What one would write without rollups or aggregates: the same questions straight over user_activities."""
    day = {"$dateTrunc": {"date": "$timestamp", "unit": "day", "timezone": "UTC"}}
    week = {"$dateTrunc": {"date": "$timestamp", "unit": "week", "startOfWeek": "monday", "timezone": "UTC"}}
    since30 = today - timedelta(days=29)
    metrics = ("user_activities", [
        {"$match": {"timestamp": {"$gte": since30}}},
        {"$facet": {
            "series": [{"$group": {"_id": {"d": day, "u": "$user_id"}, "n": {"$sum": 1}}},
                       {"$group": {"_id": "$_id.d", "active": {"$sum": 1}, "events": {"$sum": "$n"}}}],
            "users": [{"$group": {"_id": "$user_id", "last": {"$max": day}, "days": {"$addToSet": day}}},
                      {"$group": {"_id": None, "mau": {"$sum": 1}, "user_days": {"$sum": {"$size": "$days"}}}}],
            "features": [{"$group": {"_id": {"f": "$feature", "u": "$user_id"}, "n": {"$sum": 1}}},
                         {"$group": {"_id": "$_id.f", "users": {"$sum": 1}, "events": {"$sum": "$n"}}}],
        }}])
    return {
        "metrics": metrics,
        "overview page": metrics,
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
            {"$match": {"timestamp": {"$gte": today - timedelta(days=84 + 30)}}},
            {"$group": {"_id": "$user_id", "days": {"$addToSet": day}, "last": {"$max": "$timestamp"},
                        "features": {"$addToSet": "$feature"}}}]),
        "inactive-users": ("user_activities", [
            {"$group": {"_id": "$user_id", "last": {"$max": "$timestamp"}}},
            {"$match": {"last": {"$lte": today - timedelta(days=30)}}}, {"$sort": {"last": 1}}, {"$limit": 50}]),
    }


ENDPOINTS = {
    "metrics": f"{BASE}/metrics",
    "overview page": "/engagement",
    "retention-analysis": f"{BASE}/retention-analysis?period=week&cohorts=8",
    "lifecycle": f"{BASE}/lifecycle?interval=week&periods=12",
    "churn-prediction": f"{BASE}/churn-prediction?limit=50",
    "inactive-users": f"{BASE}/inactive-users?days=30",
}


def _client(app):
    """(a test client signed in as an analyst for the pages, bearer headers for the API)."""
    import re

    from console.blueprints.roles.admins import upsert_admin
    from console.security import issue_token

    password = "bench-engagement-pass-1"
    admin, _created = upsert_admin("analyst@bench.example.com", ["analyst"], password)
    token, _ = issue_token(admin)
    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)
    answer = client.post("/login", data={"email": admin.email, "password": password, "csrf_token": csrf})
    assert answer.status_code == 302, answer.status_code
    return client, {"Authorization": f"Bearer {token}"}


def _ours(app, client, headers, path: str) -> float:
    """One uncached call of ours (ms): the churn report's cache emptied first."""
    from console.db import get_db

    get_db()["engagement_metrics"].delete_many({})
    api = path.startswith("/api")
    started = time.perf_counter()
    response = (app.test_client() if api else client).get(path, headers=headers if api else {})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.get_data()[:300]
    return elapsed * 1000


def scaling_rows(app, large_medians: dict) -> list[Row]:
    """The small dataset, then the large one in the same database (mongoengine holds one connection per process,
    so two apps cannot keep two databases apart); medians of REPEATS. The large one stays for the live part and
    the raw anchor (`large_medians` gets its medians)."""
    from console.db import get_db

    database = get_db()
    totals: dict[str, int] = {}
    samples = {name: {"small": [], "large": []} for name in ENDPOINTS}
    client, headers = _client(app)
    for size, members in (("small", SMALL), ("large", LARGE)):
        for name in ("user_activities", "activity_rollups", "activity_days", "member_ordinals", "counters"):
            database[name].delete_many({})
        database["users"].delete_many({})
        started = time.perf_counter()
        totals[size] = load_dataset(members)
        print(f"   {size}: {members:,} members, {totals[size]:,} events of rollups and aggregates loaded in "
              f"{time.perf_counter() - started:.0f}s", flush=True)
        for _repeat in range(REPEATS):
            for name, path in ENDPOINTS.items():
                samples[name][size].append(_ours(app, client, headers, path))
        print("   " + ", ".join(f"{name} {statistics.median(samples[name][size]):,.0f} ms" for name in ENDPOINTS),
              flush=True)
    median = {name: {label: statistics.median(values) for label, values in by.items()}
              for name, by in samples.items()}
    large_medians.update({name: median[name]["large"] for name in ENDPOINTS}, events=totals["large"])
    return [Row(f"GET {name} at {LARGE:,} members ({totals['large']:,} events, {DAYS} days) (ms)",
                median[name]["large"], f"same at {SMALL:,} members ({totals['small']:,} events) (ms)",
                median[name]["small"], "<= 1.3", higher_is_better=False) for name in ENDPOINTS]


def raw_rows(app, large_medians: dict) -> list[Row]:
    """The raw anchor at the large size: the same events stored raw (regenerated from the same seeds), without a
    secondary index (SecantusDB answered "internal server error" inserting them with a timestamp index, and
    building one afterwards), and the straightforward aggregations over them, RAW_REPEATS times."""
    from console.blueprints.engagement.models import UserActivity
    from console.db import get_db

    database = get_db()
    database.user_activities.drop_indexes()
    database.user_activities.delete_many({})
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    started, stored = time.perf_counter(), 0
    for chunk in _dataset(LARGE):
        UserActivity._get_collection().insert_many(chunk, ordered=False)
        stored += len(chunk)
    assert stored == large_medians["events"], (stored, large_medians["events"])
    print(f"   raw: {stored:,} events stored in {time.perf_counter() - started:.0f}s", flush=True)
    pipelines = _raw_pipelines(today)
    raw = {}
    for name in ENDPOINTS:
        if name == "overview page":
            raw[name] = raw["metrics"]
            continue
        collection, pipeline = pipelines[name]
        times = []
        for _repeat in range(RAW_REPEATS):
            began = time.perf_counter()
            list(database[collection].aggregate(pipeline, allowDiskUse=True))
            times.append((time.perf_counter() - began) * 1000)
        raw[name] = statistics.median(times)
        print(f"   raw {name}: {raw[name]:,.0f} ms", flush=True)
    return [Row(f"GET {name} at {LARGE:,} members (ms)", large_medians[name],
                "straightforward aggregation over the raw events, no secondary index (ms)", raw[name], "<= 0.05",
                higher_is_better=False) for name in ENDPOINTS]


# --- live ingestion ------------------------------------------------------------------------------------------

def _start_worker(app):
    """worker.py on the bench's servers (it folds every ENGAGEMENT_FOLD_INTERVAL seconds)."""
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "MONGODB_URI": app.config["MONGODB_URI"], "REDIS_URL": app.config["REDIS_URL"],
           "SECRET_KEY": app.config["SECRET_KEY"], "INGEST_KEYS": INGEST_KEY, "ENGAGEMENT_FOLD": "worker",
           "TELEMETRY_ENABLED": "0", "LOG_LEVEL": "WARNING", "SEED_DEMO": "0"}
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen([sys.executable, "worker.py"], env=env, cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def live_rows(app) -> list[Row]:
    """20 viewers load the overview page while a writer posts a 100-event batch every 200 ms and a worker process
    folds them; /healthz measured under the same load, in alternation."""
    import subprocess

    from bench import bench_console
    from bench.bench_console import CLIENTS, _load, _p95, _sign_in
    from console.blueprints.roles.admins import upsert_admin

    with app.app_context():
        upsert_admin("analyst@bench.example.com", ["analyst"], bench_console.PASSWORD)
    server, port = _serve(app)
    stop, posted = threading.Event(), [0]

    def writer() -> None:
        rng = random.Random(11)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not stop.is_set():
            now = datetime.now(UTC)
            _post(conn, [{"user_id": f"b{rng.randrange(LARGE):06d}", "event": "page_view",
                          "feature": rng.choice(FEATURES),
                          "timestamp": (now - timedelta(seconds=rng.randrange(3600))).isoformat()}
                         for _ in range(100)])
            posted[0] += 1
            stop.wait(0.2)

    worker = _start_worker(app)  # the worker's fold, in its own process as in production
    thread = threading.Thread(target=writer, daemon=True)
    try:
        cookies = [_sign_in(port) for _ in range(CLIENTS)]
        thread.start()
        results: dict[str, list[float]] = {}
        for path in ("/healthz", "/engagement", "/healthz", "/engagement"):
            results.setdefault(path, []).extend(_load(port, path, cookies))
    finally:
        stop.set()
        thread.join(timeout=60)
        server.shutdown()
        worker.terminate()  # a warm shutdown; a fold in progress may hold it, and the figures are taken
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    with app.app_context():
        from console.blueprints.engagement import fold

        waiting = fold.backlog()["events"]
    print(f"   live ingestion: {posted[0]} batches of 100 posted during the viewers' run, "
          f"{posted[0] * 100 - waiting:,} events folded by the worker meanwhile", flush=True)
    page, probe = results["/engagement"], results["/healthz"]
    return [
        Row(f"overview page, {CLIENTS} viewers, under live ingestion, {LARGE:,} members, p95 (ms)", _p95(page),
            f"/healthz, {CLIENTS} clients, same load, p95 (ms)", _p95(probe), "<= 3", higher_is_better=False),
        Row(f"overview page, {CLIENTS} viewers, under live ingestion, median (ms)", statistics.median(page),
            "/healthz, same load, median (ms)", statistics.median(probe), "info", higher_is_better=False),
    ]


def main() -> list[Row]:
    from console import create_app
    from console.cli import prepare_database

    with embedded_servers("engagement") as env:
        app = create_app(_config(env.mongo_uri, env.redis_url))
        with app.app_context():
            prepare_database()
        rows, large = [], {}
        if "ingestion" in PARTS:
            with app.app_context():
                rows += ingestion_rows(app)
            print("   ingestion done", flush=True)
        if "scaling" in PARTS:
            with app.app_context():
                rows += scaling_rows(app, large)
            print("   scaling done", flush=True)
        if "live" in PARTS:
            if "scaling" not in PARTS:  # the viewers look at the large community
                with app.app_context():
                    events = load_dataset(LARGE)
                    print(f"   large: {LARGE:,} members, {events:,} events loaded", flush=True)
            rows += live_rows(app)
        if "raw" in PARTS and large:  # last: it takes longest, and the embedded server may not hold 2M raw events
            try:
                with app.app_context():
                    rows += raw_rows(app, large)
            except Exception as error:  # the other figures still go to the table
                print(f"   raw anchor failed: {type(error).__name__}: {str(error)[:200]}", flush=True)
        return rows
