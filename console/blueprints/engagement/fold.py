"""Folding stored events into rollups, day aggregates and members, off the request (ENGAGEMENT_FOLD=worker).

track-activity stores a batch's events and one small `activity_pending` entry naming them (their `_id`s, packed),
and answers 202. The worker folds waiting entries every ENGAGEMENT_FOLD_INTERVAL seconds, many batches at once:
the events are read back by `_id` and go through the same `apply_rollups` and `touch_members` as a request that
folds its own batch (ENGAGEMENT_FOLD=request). A batch costs the request what storing its events costs, however
many member-days it spans, and busy members' days are written once per fold instead of once per batch.

Exactly once: an entry is claimed with a lease (one worker folds it; a worker that dies lets it go when the
lease ends) and deleted after its fold. A fold that is repeated (the worker died between the writes and the
delete) adds nothing twice: rollup writes name the batches they applied (see rollups.apply_rollups).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from bson import Binary, ObjectId
from flask import current_app

from console.db import find_in, get_db
from console.timeutil import as_utc, utcnow

PENDING = "activity_pending"
LEASE = timedelta(minutes=2)
MAX_EVENTS = 20_000  # per fold: the entries claimed together
FIELDS = {"batch": 1, "user_id": 1, "event": 1, "feature": 1, "session_id": 1, "timestamp": 1}


def _pending():
    return get_db()[PENDING]


def deferred() -> bool:
    return deferred_in(current_app)


def defer(stored: list[dict], now: datetime) -> None:
    """Record that these stored events (each with its `_id`) wait to be folded: one small insert."""
    ids = b"".join(doc["_id"].binary for doc in stored)
    _pending().insert_one({"ids": Binary(ids), "n": len(stored), "created_at": now, "lease_until": None})


def fold_pending(max_events: int = MAX_EVENTS, now: datetime | None = None, before: datetime | None = None) -> dict:
    """Claim waiting entries (up to about `max_events` events), fold them, delete them. Returns what it did.

    Nothing is folded while a rebuild runs (see pause), except by the rebuild itself: it folds the entries
    created `before` it started."""
    now = now or utcnow()
    if before is None and paused(now):
        return {"batches": 0, "events": 0}
    entries = _claim(max_events, now, before)
    if not entries:
        return {"batches": 0, "events": 0}
    events = _fold(entries, now)
    _pending().delete_many({"_id": {"$in": [entry["_id"] for entry in entries]}, "token": entries[0]["token"]})
    return {"batches": len(entries), "events": events}


def _fold(entries: list[dict], now: datetime) -> int:
    """Read the entries' events back and fold them; returns how many there were (erased ones are gone)."""
    from console.blueprints.engagement.ingest import touch_members
    from console.blueprints.engagement.models import UserActivity
    from console.blueprints.engagement.rollups import apply_rollups

    ids = [ObjectId(raw[start:start + 12]) for raw in (bytes(entry["ids"]) for entry in entries)
           for start in range(0, len(raw), 12)]
    docs = list(find_in(UserActivity._get_collection(), "_id", ids, FIELDS))
    for doc in docs:
        doc["timestamp"] = as_utc(doc["timestamp"])
    if docs:
        apply_rollups(docs, now=now)
        touch_members(docs, {}, now)
    return len(docs)


def _claim(max_events: int, now: datetime, before: datetime | None = None) -> list[dict]:
    """Entries this call holds: the oldest unclaimed ones (or ones whose lease ran out), one conditional write
    each, so two workers never fold the same entry at once."""
    token, wanted, events = uuid.uuid4().hex, [], 0
    claimable = {"$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}]}
    created = {"created_at": {"$lt": before}} if before else {}
    for row in _pending().find({**claimable, **created}, {"_id": 1, "n": 1}).sort("_id", 1).limit(500):
        if wanted and events + row.get("n", 0) > max_events:
            break
        wanted.append(row["_id"])
        events += row.get("n", 0)
    if not wanted:
        return []
    # Each entry's update is atomic and re-checks that it is claimable: of two workers, one takes it.
    lease = {"$set": {"lease_until": now + LEASE, "token": token}}
    _pending().update_many({"_id": {"$in": wanted}, **claimable}, lease)
    return list(_pending().find({"_id": {"$in": wanted}, "token": token}, {"ids": 1, "token": 1}))


def drain(now: datetime | None = None, before: datetime | None = None) -> dict:
    """Fold until nothing waits (the worker's tick, a rebuild, tests)."""
    total = {"batches": 0, "events": 0}
    while True:
        done = fold_pending(now=now, before=before)
        if not done["batches"]:
            return total
        total = {key: total[key] + done[key] for key in total}


def waiting_since(now: datetime | None = None) -> float:
    """Seconds the oldest waiting entry has waited (0 when none): one indexed read, for hot pages."""
    oldest = _pending().find_one({}, {"created_at": 1}, sort=[("created_at", 1)])
    return max(0.0, ((now or utcnow()) - as_utc(oldest["created_at"])).total_seconds()) if oldest else 0.0


def backlog(now: datetime | None = None) -> dict:
    """What waits to be folded: entries, events, and the age of the oldest (seconds; 0 when none)."""
    now = now or utcnow()
    rows = list(_pending().aggregate([{"$group": {"_id": None, "batches": {"$sum": 1}, "events": {"$sum": "$n"},
                                                  "oldest": {"$min": "$created_at"}}}]))
    if not rows:
        return {"batches": 0, "events": 0, "oldest_seconds": 0.0}
    row = rows[0]
    return {"batches": row["batches"], "events": row["events"],
            "oldest_seconds": max(0.0, (now - as_utc(row["oldest"])).total_seconds())}


STALE_BACKLOG_SECONDS = 120


def check_backlog() -> dict:
    """The health answer's view of folding: DEGRADED while batches wait longer than two minutes (no worker
    folds, or it cannot keep up); the dashboards then trail the stored events."""
    waiting = backlog()
    late = deferred() and waiting["oldest_seconds"] > STALE_BACKLOG_SECONDS
    summary = (f"{waiting['events']:,} events in {waiting['batches']:,} batches waiting, oldest "
               f"{waiting['oldest_seconds']:,.1f} s" if waiting["batches"] else "nothing waiting")
    if not deferred():
        summary += " · each request folds its own batch"
    return {"status": "DEGRADED" if late else "UP", "label": "Activity folding", "summary": summary,
            "mode": current_app.config["ENGAGEMENT_FOLD"],
            "waiting_batches": waiting["batches"], "waiting_events": waiting["events"],
            "oldest_waiting_s": round(waiting["oldest_seconds"], 1),
            "detail": "activity waits to be counted: is a worker running?" if late else None}


def forget_before(moment: datetime) -> int:
    """Drop entries created before `moment` (a full rebuild replays their events from the stored events)."""
    return _pending().delete_many({"created_at": {"$lt": moment}}).deleted_count


# --- while a rebuild runs -----------------------------------------------------------------------------------------
# A rebuild replays the events received before it started (T0) into fresh rollups. Meanwhile nobody folds (the
# rollups are being rewritten) and requests of ENGAGEMENT_FOLD=request defer their batches too; the entries created
# since T0 hold exactly the events received since T0 (an entry and its events share the request's clock), so
# folding them after the rebuild counts each event once. A rebuild that dies lets folding resume when its pause
# runs out.

PAUSE = "analytics_rebuild"
PAUSE_FOR = timedelta(minutes=10)


def pause(now: datetime | None = None) -> None:
    """Hold folding for PAUSE_FOR from now (a running rebuild renews it as it goes)."""
    get_db()["counters"].update_one({"_id": PAUSE}, {"$set": {"until": (now or utcnow()) + PAUSE_FOR}}, upsert=True)


def resume() -> None:
    get_db()["counters"].delete_one({"_id": PAUSE})


def paused(now: datetime | None = None) -> bool:
    row = get_db()["counters"].find_one({"_id": PAUSE}, {"until": 1})
    return bool(row) and as_utc(row["until"]) > (now or utcnow())


def start_folding(app):
    """Worker startup hook: fold waiting batches every ENGAGEMENT_FOLD_INTERVAL seconds (the returned event, set,
    stops it)."""
    from console.queues import run_every

    seconds = float(app.config.get("ENGAGEMENT_FOLD_INTERVAL") or 0) if deferred_in(app) else 0
    return run_every(app, seconds, "engagement-fold", drain)


def deferred_in(app) -> bool:
    return app.config.get("ENGAGEMENT_FOLD") == "worker"
