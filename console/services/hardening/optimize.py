"""Maintenance tasks run by the optimize job: indexes, expired telemetry, engagement rollups, caches."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from flask import current_app

from console import db
from console.models.hardening import TELEMETRY_COLLECTIONS, ErrorEvent
from console.telemetry import hour_key
from console.timeutil import utcnow

CACHE_COLLECTIONS = ("engagement_metrics", "retention_cohorts")
JOB_FUNC = "console.jobs.hardening.optimize"


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    destructive: bool


TASKS = {task.name: task for task in (
    Task("ensure_indexes", "Create every declared index", False),
    Task("purge_expired", "Delete expired telemetry", True),
    Task("rebuild_rollups", "Rebuild engagement rollups for a date range", True),
    Task("compact_caches", "Clear cached engagement metrics and retention cohorts", True),
)}


def rollup_rebuilder():
    """`rebuild_rollups(start, end)` from the engagement services, when that feature provides one."""
    import console.services as services

    for module in pkgutil.iter_modules(services.__path__):
        if not module.name.startswith("engagement"):
            continue
        found = importlib.import_module(f"console.services.{module.name}")
        candidates = [found]
        if module.ispkg:
            candidates += [importlib.import_module(f"console.services.{module.name}.{sub.name}")
                           for sub in pkgutil.iter_modules(found.__path__)]
        for candidate in candidates:
            func = getattr(candidate, "rebuild_rollups", None)
            if callable(func):
                return func
    return None


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
    cutoff = hour_key(now - timedelta(days=int(current_app.config.get("TELEMETRY_TTL_DAYS", 7))))
    trimmed = 0
    for doc in ErrorEvent.objects.only("id", "hours").as_pymongo():
        old = [key for key in (doc.get("hours") or {}) if key < cutoff]
        if old:
            ErrorEvent._get_collection().update_one({"_id": doc["_id"]},
                                                    {"$unset": {f"hours.{key}": "" for key in old}})
            trimmed += len(old)
    return {"status": "done", "deleted": deleted, "hourly_counters_trimmed": trimmed}


def _as_datetime(value, end: bool = False) -> datetime:
    if isinstance(value, datetime):
        return value
    day = value if isinstance(value, date) else date.fromisoformat(str(value))
    return datetime.combine(day, time.max if end else time.min).replace(tzinfo=utcnow().tzinfo)


def rebuild_rollups(options: dict) -> dict:
    func = rollup_rebuilder()
    if func is None:
        return {"status": "unavailable",
                "detail": "The engagement feature provides no rebuild_rollups in this build."}
    today = utcnow().date()
    start = _as_datetime(options.get("start") or today - timedelta(days=30))
    end = _as_datetime(options.get("end") or today, end=True)
    params = inspect.signature(func).parameters
    if "start" in params and "end" in params:
        outcome = func(start=start, end=end)
        result = {"status": "done", "start": start, "end": end}
    else:  # the engagement rebuild works on every day at once: a superset of the range asked for
        outcome = func()
        result = {"status": "done", "scope": "all days (the engagement rebuild takes no date range)"}
    if isinstance(outcome, (int, float, str)):
        result["events_replayed" if isinstance(outcome, int) else "outcome"] = outcome
    elif isinstance(outcome, dict):
        result["outcome"] = outcome
    return result


def compact_caches(options: dict) -> dict:
    database = db.get_db()
    present = set(database.list_collection_names())
    cleared = {name: database[name].delete_many({}).deleted_count if name in present else None
               for name in CACHE_COLLECTIONS}
    return {"status": "done", "cleared": {k: v for k, v in cleared.items() if v is not None},
            "absent": [k for k, v in cleared.items() if v is None]}


RUNNERS = {"ensure_indexes": ensure_indexes, "purge_expired": purge_expired, "rebuild_rollups": rebuild_rollups,
           "compact_caches": compact_caches}


def enqueue(tasks: list[str], options: dict, requested_by: str):
    from console.queues import get_queue

    job = get_queue("low").enqueue(
        JOB_FUNC, tasks, options, job_timeout=current_app.config["JOB_TIMEOUT"], result_ttl=7 * 24 * 3600,
        meta={"progress": 0, "tasks": tasks, "requested_by": requested_by, "current": None, "results": {}},
    )
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
    if job.func_name != JOB_FUNC:
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
