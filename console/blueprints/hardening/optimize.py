"""The optimize job's own maintenance tasks (indexes, expired telemetry, caches), its enqueueing and status.

Other features register theirs (`console.maintenance.add_task`); the job runs whatever is registered."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app

from console import audit, db, maintenance
from console.config import setting
from console.maintenance import Task
from console.telemetry import hour_key
from console.telemetry.models import TELEMETRY_COLLECTIONS, ErrorEvent
from console.timeutil import utcnow

JOB_FUNC = "console.blueprints.hardening.jobs.optimize"
JOB_FUNCS = {JOB_FUNC, "console.jobs.hardening.optimize"}  # the previous release's path too


def ensure_indexes(options: dict) -> dict:
    database = db.get_db()

    def count() -> int:
        return sum(len(database[name].index_information()) for name in database.list_collection_names()
                   if not name.startswith("system."))

    before = count()
    collections = db.ensure_indexes()
    return {"status": "done", "collections": len(collections), "indexes_created": count() - before}


def purge_expired(options: dict) -> dict:
    now = utcnow()
    database = db.get_db()
    deleted = {name: database[name].delete_many({"expires_at": {"$lt": now}}).deleted_count
               for name in sorted(TELEMETRY_COLLECTIONS)}
    # error groups live on while they recur; drop their hourly counters older than the retention
    cutoff = hour_key(now - timedelta(days=setting("TELEMETRY_TTL_DAYS")))
    trimmed = 0
    for doc in ErrorEvent.objects.only("id", "hours").as_pymongo():
        old = [key for key in (doc.get("hours") or {}) if key < cutoff]
        if old:
            ErrorEvent._get_collection().update_one({"_id": doc["_id"]},
                                                    {"$unset": {f"hours.{key}": "" for key in old}})
            trimmed += len(old)
    return {"status": "done", "deleted": deleted, "hourly_counters_trimmed": trimmed}


def compact_caches(options: dict) -> dict:
    """Drop every cache the features registered; each is rebuilt on demand."""
    return {"status": "done", "cleared": {cache.name: cache.clear() for cache in maintenance.caches()}}


TASKS = (
    Task("ensure_indexes", "Create every declared index", False, ensure_indexes, order=10),
    Task("purge_expired", "Delete expired telemetry", True, purge_expired, order=20),
    Task("compact_caches", "Clear every registered cache (rebuilt on demand)", True, compact_caches, order=40),
)


def enqueue(tasks: list[str], options: dict, requested_by: str, *, confirmed: bool = False):
    """Queue the optimize job for these tasks and write its one audit entry."""
    from console.queues import get_queue

    job = get_queue("low").enqueue(
        JOB_FUNC, tasks, options, job_timeout=current_app.config["JOB_TIMEOUT"], result_ttl=7 * 24 * 3600,
        meta={"progress": 0, "tasks": tasks, "requested_by": requested_by, "current": None, "results": {}},
    )
    audit.record("hardening.optimize", job.id, after={"tasks": tasks}, confirm=confirmed)
    return job


JOB_STATUS = {"queued": "queued", "deferred": "queued", "scheduled": "queued", "started": "started",
              "finished": "finished", "failed": "failed", "stopped": "failed", "canceled": "failed"}


def job_status(job_id: str) -> dict | None:
    """The optimize job's status, progress and result; None for an unknown id or a job of another kind."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    from console.queues import get_redis
    from console.telemetry import scrub

    try:
        job = Job.fetch(job_id, connection=get_redis())
    except NoSuchJobError:
        return None
    if job.func_name not in JOB_FUNCS:
        return None
    status = JOB_STATUS.get(str(job.get_status(refresh=True).value), "queued")
    meta = job.get_meta(refresh=True)
    result = None
    if status == "finished":
        result = job.return_value()
    elif status == "failed":
        latest = job.latest_result()
        lines = (latest.exc_string or "").strip().splitlines() if latest else []
        result = {"error": scrub(lines[-1]) if lines else "failed", "partial": meta.get("results") or {}}
    return {"job_id": job.id, "status": status, "progress": 100 if status == "finished" else meta.get("progress", 0),
            "current": meta.get("current"), "tasks": meta.get("tasks") or [], "result": result,
            "enqueued_at": job.enqueued_at, "ended_at": job.ended_at}
