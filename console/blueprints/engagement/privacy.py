"""Members' data rights: export everything held about a member (JSON), erase a member, and the retention limit
of raw events (RAW_EVENT_TTL_DAYS; the aggregates keep their history).

An erase removes the member's events, rollups and every aggregate contribution (aggregates.forget_member when
the day aggregates exist), cached dashboard results, queued and past mail with its tracking, notification
history, preferences, churn scores and campaign memberships, then the member document — leaving an audit entry
(no personal data) and a suppression of the address so nothing is sent to it again.
Communication's part (mail, tracking, preferences, history, the suppression) is `communication.member_data`.
"""

from __future__ import annotations

from datetime import timedelta

from bson import ObjectId
from flask import current_app

from console.audit import record
from console.blueprints.communication.member_data import erase_member as erase_communication
from console.blueprints.communication.member_data import export_member as export_communication
from console.blueprints.engagement.ingest import unescape_key
from console.blueprints.engagement.models import ActivityRollup, Campaign, UserActivity
from console.db import get_db
from console.errors import ApiError
from console.maintenance import Task
from console.members import Member
from console.timeutil import as_utc, utcnow

EXPORT_VERSION = 1
CACHE_COLLECTIONS = ("engagement_metrics", "retention_cohorts")  # cached dashboard results hold every member
KEYED_COLLECTIONS = ("churn_scores",)  # stored per member by other parts of engagement (absent is fine)
def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if k != "_id"}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, bytes):
        return None  # packed internals (session hashes, seconds): not the member's data
    if hasattr(value, "isoformat"):
        return as_utc(value).isoformat().replace("+00:00", "Z") if hasattr(value, "tzinfo") else value.isoformat()
    return value


def _member_or_404(user_id: str) -> dict:
    member = Member._get_collection().find_one({"user_id": user_id}) if len(user_id) <= 200 else None
    if member is None and not UserActivity._get_collection().find_one({"user_id": user_id}, {"_id": 1}):
        raise ApiError(404, f"No member has the user_id {user_id}.")
    return member or {"user_id": user_id}


def export_member(user_id: str) -> dict:
    """Everything held about one member: profile, activity, aggregates, mail (with tracking), preferences,
    notification history, campaigns. Audited (who exported whom)."""
    member = _member_or_404(user_id)
    email = member.get("email")
    events = list(UserActivity._get_collection().find({"user_id": user_id}, {"batch": 0}).sort("timestamp", 1))
    rollups = list(ActivityRollup._get_collection().find({"user_id": user_id}, {"ts": 0, "sid": 0, "applied": 0,
                                                                               "v": 0}).sort("day", 1))
    communication = export_communication(user_id, email)
    campaigns = [{"campaign": c["name"], "group": "holdout" if user_id in (c.get("holdout") or []) else "treated",
                  "created_at": c.get("created_at")}
                 for c in Campaign._get_collection().find({"$or": [{"treated": user_id}, {"holdout": user_id}]},
                                                          {"name": 1, "holdout": 1, "created_at": 1})]
    churn = get_db()["churn_scores"].find_one({"user_id": user_id}, {"_id": 0, "run_id": 0})
    record("member.export", f"member:{user_id}", after={"events": len(events), "emails": len(communication["mail"])})
    return _jsonable({
        "export_version": EXPORT_VERSION, "exported_at": utcnow(), "user_id": user_id,
        "profile": {k: v for k, v in member.items() if k != "_id"},
        "activity": [{"event_id": e["event_id"], "event": e["event"], "feature": e.get("feature"),
                      "session_id": e.get("session_id"), "properties": e.get("properties") or {},
                      "timestamp": e["timestamp"], "received_at": e.get("received_at")} for e in events],
        "aggregates": {"days": [{"day": r["day"], "events": r.get("events", 0), "sessions": r.get("sessions", 0),
                                 "session_seconds": r.get("session_seconds", 0),
                                 "features": {unescape_key(k): n for k, n in (r.get("features") or {}).items()},
                                 "names": {unescape_key(k): n for k, n in (r.get("names") or {}).items()},
                                 "first_at": r.get("first_at"), "last_at": r.get("last_at")} for r in rollups],
                       "total_events": sum(r.get("events", 0) for r in rollups),
                       "active_days": len(rollups)},
        "mail": communication["mail"],
        "preferences": communication["preferences"],
        "history": communication["history"],
        "campaigns": campaigns,
        "churn_score": churn,
        "suppression": communication["suppression"],
    })


def _forget_aggregates(user_id: str) -> int | None:
    """The day aggregates' own forget (engagement.aggregates, once it exists); None before it does."""
    try:
        from console.blueprints.engagement.aggregates import forget_member
    except ImportError:  # before the day aggregates: rollups (deleted below) are the only aggregate
        return None
    return forget_member(user_id)


def erase_member(user_id: str) -> dict:
    """Erase one member everywhere; returns what was removed (counts). Idempotent."""
    member = _member_or_404(user_id)
    email = member.get("email")
    database = get_db()
    removed: dict[str, int] = {}
    days_changed = _forget_aggregates(user_id)  # reads the rollups, so before they go
    if days_changed is not None:
        removed["aggregate_days"] = days_changed
    removed["events"] = UserActivity._get_collection().delete_many({"user_id": user_id}).deleted_count
    removed["rollups"] = ActivityRollup._get_collection().delete_many({"user_id": user_id}).deleted_count
    for name in CACHE_COLLECTIONS:
        database[name].delete_many({})
    for name in KEYED_COLLECTIONS:
        removed[name] = database[name].delete_many({"user_id": user_id}).deleted_count
    removed.update(erase_communication(user_id, email))
    campaigns = Campaign._get_collection()
    pulled = campaigns.update_many({"$or": [{"treated": user_id}, {"holdout": user_id}]},
                                   {"$pull": {"treated": user_id, "holdout": user_id}}).modified_count
    for doc in campaigns.find({"skipped_users": {"$exists": True}}, {"skipped_users": 1}):
        lists = {reason: ids for reason, ids in (doc.get("skipped_users") or {}).items()
                 if isinstance(ids, list) and user_id in ids}
        if lists:
            campaigns.update_one({"_id": doc["_id"]}, {"$pull": {f"skipped_users.{reason}": user_id
                                                                 for reason in lists}})
            pulled += 1
    removed["campaigns"] = pulled
    removed["member"] = Member._get_collection().delete_one({"user_id": user_id}).deleted_count
    record("member.erase", f"member:{user_id}", after={"removed": removed, "suppressed": bool(email)})
    return {"user_id": user_id, "erased": True, "suppressed": bool(email), "removed": removed}


# --- raw event retention --------------------------------------------------------------------------------------

def purge_raw_events(options: dict) -> dict:
    """Delete raw events older than RAW_EVENT_TTL_DAYS (0: keep them); rollups and aggregates are untouched."""
    days = int(current_app.config.get("RAW_EVENT_TTL_DAYS") or 0)
    if days <= 0:
        return {"status": "skipped", "reason": "RAW_EVENT_TTL_DAYS is 0 (raw events are kept)"}
    cutoff = utcnow() - timedelta(days=days)
    deleted = UserActivity._get_collection().delete_many({"timestamp": {"$lt": cutoff}}).deleted_count
    return {"status": "done", "deleted": deleted, "before": cutoff}


PURGE_TASK = Task("purge_raw_events", "Delete raw events older than RAW_EVENT_TTL_DAYS (aggregates kept)", True,
                  purge_raw_events, order=35)

PURGE_JOB = "console.blueprints.engagement.jobs.purge_raw_events"
PURGE_TICK = "engagement:raw-event-retention:tick"


def start_retention_schedule(app) -> None:
    """Worker startup hook: once a day (across every worker), purge raw events past RAW_EVENT_TTL_DAYS."""
    from console.queues import claim_period, get_queue, run_every

    def purge_once_a_day():
        if claim_period(PURGE_TICK, 24 * 3600):
            get_queue("low").enqueue(PURGE_JOB, job_timeout=3600, description="raw event retention")

    run_every(app, 3600 if int(app.config.get("RAW_EVENT_TTL_DAYS") or 0) > 0 else 0, "raw-event-retention",
              purge_once_a_day)


def grant_erase_to_admins() -> str | None:
    """Migration, once per database: existing `admin` roles get the new `members.erase` (as new databases do);
    a marker keeps a later removal by a super admin from being undone."""
    from console.authz import Role, bump_authz_version

    marker = {"_id": "migration:members.erase"}
    markers = get_db()["schema_migrations"]
    if markers.find_one(marker):
        return None
    changed = Role._get_collection().update_one({"name": "admin", "permissions": {"$ne": "members.erase"}},
                                                {"$push": {"permissions": "members.erase"}}).modified_count
    markers.insert_one({**marker, "at": utcnow()})
    if changed:
        bump_authz_version()
        return "granted members.erase to the admin role"
    return None
