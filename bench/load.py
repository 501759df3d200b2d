"""`make load`: 32 concurrent clients drive ingestion for 60 s while admins load dashboards.

Starts its own SecantusDB and Redis (devtools.services), the app under gunicorn and one worker (it folds what is
ingested: ENGAGEMENT_FOLD=worker), all on loopback; the checks run once the worker has folded everything.
Pass means: no 5xx, no timeouts beyond the client's limit, the stored event count equals the accepted count
the responses reported (nothing lost, nothing doubled), and the rollups, day aggregates and members written under
all that concurrency agree with the stored events (events per member-day, first and last seen per member; per day
the exact sets of members active, per feature and per event, and the counters). Prints
throughput and latency.
Environment: LOAD_CLIENTS (32), LOAD_SECONDS (60), LOAD_TIMEOUT (30 s per request). A request that times out
is retried with the same body (event ids make that safe), so "stored == accepted" still holds.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from devtools import services

ROOT = Path(__file__).resolve().parent.parent
INGEST_KEY = "load-test-ingest-key"
PASSWORD = "steady-river-4821"


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = {"ingest": [], "dashboard": []}
        self.statuses: dict[int, int] = {}
        self.accepted = 0
        self.duplicates = 0
        self.rejected = 0
        self.timeouts = 0
        self.errors: list[str] = []

    def add(self, kind: str, status: int, seconds: float, body: dict | None) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if kind == "ingest" and status == 202 and body:
                self.accepted += body["accepted"]
                self.duplicates += body["duplicates"]
                self.rejected += len(body["rejected"])
            if status >= 500 and len(self.errors) < 5:
                self.errors.append(f"{status}: {body}")


def _event(rng: random.Random, sent_ids: list[str]) -> dict:
    if sent_ids and rng.random() < 0.1:
        return {"user_id": f"load-{rng.randrange(2000)}", "event": "page_view", "event_id": rng.choice(sent_ids)}
    if rng.random() < 0.05:
        return {"user_id": "", "event": 42}  # invalid on purpose
    event_id = uuid.uuid4().hex
    sent_ids.append(event_id)
    return {"user_id": f"load-{rng.randrange(2000)}", "event": rng.choice(["page_view", "blog_read", "comment"]),
            "feature": rng.choice(["blog", "events", "volunteers", None]), "event_id": event_id,
            "session_id": f"s-{rng.randrange(5000)}"}


def _client(port: int, token: str, stats: Stats, deadline: float, seed: int, timeout: float) -> None:
    rng = random.Random(seed)
    sent_ids: list[str] = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    while time.monotonic() < deadline:
        roll = rng.random()
        if roll < 0.1:
            kind, method, path, body = "dashboard", "GET", "/api/phase14/engagement/metrics?interval=day", None
            headers = {"Authorization": f"Bearer {token}"}
        else:
            kind, method, path = "ingest", "POST", "/api/phase14/engagement/track-activity"
            payload = _event(rng, sent_ids) if roll < 0.7 else {"events": [_event(rng, sent_ids) for _ in range(50)]}
            body = json.dumps(payload)
            headers = {"X-Ingest-Key": INGEST_KEY, "Content-Type": "application/json"}
        for _attempt in range(3):  # a timed-out request may have been stored: retry the same body, as clients do
            started = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                elapsed = time.perf_counter() - started
                parsed = json.loads(raw) if raw and response.getheader("Content-Type", "").endswith("json") else None
                stats.add(kind, response.status, elapsed, parsed)
                break
            except TimeoutError:
                with stats.lock:
                    stats.timeouts += 1
            except (ConnectionError, http.client.HTTPException) as error:
                with stats.lock:
                    stats.errors.append(repr(error))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))] * 1000


def run(clients: int, seconds: float, timeout: float) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="console-load-"))
    mongo_port, redis_port, web_port = services.free_port(), services.free_port(), services.free_port()
    mongo = services.mongo(mongo_port, ":memory:", tmp / "mongo.log").start(timeout=120)
    redis = services.redis(redis_port, log_path=tmp / "redis.log").start()
    env = {**os.environ, "MONGODB_URI": f"mongodb://127.0.0.1:{mongo_port}/load", "SEED_DEMO": "0",
           "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "INGEST_KEYS": INGEST_KEY,
           "SECRET_KEY": "load-secret-" + uuid.uuid4().hex, "INGEST_RATE_LIMIT": "1000000 per minute",
           "TOKEN_RATE_LIMIT": "1000 per minute", "LOG_LEVEL": "WARNING"}
    bin_dir = Path(sys.executable).parent
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    web = worker = None
    try:
        subprocess.run([*flask, "init-db"], env=env, cwd=ROOT, check=True, capture_output=True)
        subprocess.run([*flask, "create-admin", "load@example.com", "--role", "analyst", "--password", PASSWORD],
                       env=env, cwd=ROOT, check=True, capture_output=True)
        web = subprocess.Popen([str(bin_dir / "gunicorn"), "-w", "2", "-k", "gthread", "--threads", "16",
                                "-b", f"127.0.0.1:{web_port}", "--log-level", "warning", "wsgi:app"],
                               env=env, cwd=ROOT)
        worker = subprocess.Popen([sys.executable, "worker.py"], env=env, cwd=ROOT)  # folds what is ingested
        services.wait_for_port(web_port, timeout=60, proc=web)
        conn = http.client.HTTPConnection("127.0.0.1", web_port, timeout=10)
        conn.request("POST", "/api/auth/token", json.dumps({"email": "load@example.com", "password": PASSWORD}),
                     {"Content-Type": "application/json"})
        token = json.loads(conn.getresponse().read())["token"]

        stats = Stats()
        deadline = time.monotonic() + seconds
        threads = [threading.Thread(target=_client, args=(web_port, token, stats, deadline, seed, timeout))
                   for seed in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started

        import pymongo

        database = pymongo.MongoClient(env["MONGODB_URI"]).get_default_database()
        waited = _wait_for_folding(database)
        stored = database.user_activities.count_documents({})
        wrong_days, wrong_members = _disagreements(database)
        wrong_aggregates = _aggregate_disagreements(database)
        time.sleep(6)  # the app flushes its recorded errors every few seconds
        recorded = [f"{row.get('message')} at {row.get('endpoint')} ({' < '.join((row.get('frames') or [])[-3:])})"
                    for row in database.error_events.find().limit(5)]
    finally:
        if worker:
            worker.terminate()
            worker.wait(20)
        if web:
            web.terminate()
            try:
                web.wait(20)
            except subprocess.TimeoutExpired:  # requests still running past the deadline: report, do not hang
                web.kill()
                web.wait()
        redis.stop()
        mongo.stop()

    ingest, dashboards = stats.latencies["ingest"], stats.latencies["dashboard"]
    server_errors = sum(count for status, count in stats.statuses.items() if status >= 500)
    print(f"clients {clients}, {elapsed:.0f} s; statuses {dict(sorted(stats.statuses.items()))}")
    print(f"ingestion: {len(ingest) / elapsed:.0f} req/s, {stats.accepted / elapsed:.0f} events/s accepted; "
          f"p50 {_percentile(ingest, 50):.0f} ms, p95 {_percentile(ingest, 95):.0f} ms, "
          f"p99 {_percentile(ingest, 99):.0f} ms")
    mean = statistics.fmean(dashboards) * 1000 if dashboards else 0
    print(f"dashboards: {len(dashboards)} loads; p50 {_percentile(dashboards, 50):.0f} ms, "
          f"p95 {_percentile(dashboards, 95):.0f} ms, mean {mean:.0f} ms")
    print(f"accepted {stats.accepted}, duplicates {stats.duplicates}, rejected items {stats.rejected}, "
          f"stored {stored}; 5xx {server_errors}; timeouts {stats.timeouts}; transport errors {len(stats.errors)}")
    print(f"the worker's fold caught up {waited:.1f} s after the last request")
    print(f"rollups disagreeing with the stored events: {wrong_days} member-days, {wrong_members} members")
    print(f"day aggregates disagreeing with the stored events and rollups: {wrong_aggregates or 'none'}")
    ok = (server_errors == 0 and stats.timeouts == 0 and stored == stats.accepted and not stats.errors
          and wrong_days == 0 and wrong_members == 0 and not wrong_aggregates)
    if recorded:
        print(f"errors the app recorded: {recorded}")
    print("PASS" if ok else f"FAIL {stats.errors[:5]}")
    return 0 if ok else 1


def _wait_for_folding(database, limit: float = 300) -> float:
    """Seconds until the worker has folded everything the requests stored (ENGAGEMENT_FOLD=worker)."""
    started = time.monotonic()
    while database.activity_pending.count_documents({}) and time.monotonic() - started < limit:
        time.sleep(0.2)
    return time.monotonic() - started


def _disagreements(database) -> tuple[int, int]:
    """Member-days whose rollup event count differs from the stored events, and members whose first/last seen do."""
    from console.db import find_in

    day = {"$dateTrunc": {"date": "$timestamp", "unit": "day", "timezone": "UTC"}}
    events = {(row["_id"]["u"], row["_id"]["d"]): row["n"] for row in database.user_activities.aggregate(
        [{"$group": {"_id": {"u": "$user_id", "d": day}, "n": {"$sum": 1}}}])}
    rolled = {(row["user_id"], row["day"]): row["events"]
              for row in database.activity_rollups.find({}, {"user_id": 1, "day": 1, "events": 1})}
    spans = {row["_id"]: (row["first"], row["last"]) for row in database.user_activities.aggregate(
        [{"$group": {"_id": "$user_id", "first": {"$min": "$timestamp"}, "last": {"$max": "$timestamp"}}}])}
    members = {row["user_id"]: (row.get("first_seen"), row.get("last_seen"))
               for row in find_in(database.users, "user_id", spans, {"user_id": 1, "first_seen": 1, "last_seen": 1})}
    wrong_days = sum(1 for key in set(events) | set(rolled) if events.get(key) != rolled.get(key))
    return wrong_days, sum(1 for user, span in spans.items() if members.get(user) != span)


def _aggregate_disagreements(database) -> list[str]:
    """Days whose aggregates differ from the stored events (members active, per feature and per event name, and
    event counts) or from their rollups (sessions, session seconds). The server runs in UTC (the default zone)."""
    from pyroaring import BitMap

    from console.blueprints.engagement.rollups import escape_key

    day = {"$dateTrunc": {"date": "$timestamp", "unit": "day", "timezone": "UTC"}}
    ordinals = {row["_id"]: row["o"] for row in database.member_ordinals.find({}, {"o": 1})}
    truth: dict = {}
    for row in database.user_activities.aggregate([{"$group": {
            "_id": {"d": day, "u": "$user_id", "e": "$event", "f": "$feature"}, "n": {"$sum": 1}}}]):
        key = row["_id"]
        entry = truth.setdefault(f"{key['d']:%Y-%m-%d}", {"users": set(), "events": 0, "f": {}, "n": {}})
        number = ordinals.get(key["u"], -1)
        entry["users"].add(number)
        entry["events"] += row["n"]
        entry["n"].setdefault(key["e"], set()).add(number)
        if key.get("f"):
            entry["f"].setdefault(key["f"], set()).add(number)
    sessions = {f"{row['_id']:%Y-%m-%d}": (row["s"], row["t"]) for row in database.activity_rollups.aggregate(
        [{"$group": {"_id": "$day", "s": {"$sum": "$sessions"}, "t": {"$sum": "$session_seconds"}}}])}

    def bits(entry) -> set:
        out = BitMap.deserialize(bytes(entry["b"])) if entry.get("b") else BitMap()
        for chunk in entry.get("p") or []:  # pending: small serialized bitmaps, one per batch
            out |= BitMap.deserialize(bytes(chunk))
        return set(out)

    wrong = []
    stored = {row["_id"]: row for row in database.activity_days.find()}
    for key in sorted(set(truth) | set(stored)):
        want, have = truth.get(key), stored.get(key, {})
        if want is None:
            if bits(have) or have.get("events"):
                wrong.append(f"{key}: aggregates without events")
            continue
        if bits(have) != want["users"] or have.get("events") != want["events"]:
            wrong.append(f"{key}: members or events")
        for prefix in ("f", "n"):
            for name, members in want[prefix].items():
                if bits((have.get(prefix) or {}).get(escape_key(name), {})) != members:
                    wrong.append(f"{key}: {prefix} {name}")
        if (have.get("sessions") or 0, have.get("seconds") or 0) != sessions.get(key):
            wrong.append(f"{key}: sessions {have.get('sessions')}/{have.get('seconds')} vs rollups {sessions.get(key)}")
    return wrong


if __name__ == "__main__":
    sys.exit(run(int(os.environ.get("LOAD_CLIENTS", "32")), float(os.environ.get("LOAD_SECONDS", "60")),
                 float(os.environ.get("LOAD_TIMEOUT", "30"))))
