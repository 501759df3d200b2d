"""Engagement jobs: rebuild rollups and day aggregates from raw events, settle yesterday, warm the churn report.
They raise on failure."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from flask import current_app
from rq import get_current_job

from console.blueprints.engagement import aggregates, churn, frozen, inactive, lifecycle, metrics, retention, rollups
from console.blueprints.engagement.periods import as_day
from console.timeutil import utcnow

log = logging.getLogger(__name__)
SCORE_CHURN_JOB = "console.blueprints.engagement.jobs.score_churn"
DAILY_KEY = "engagement:churn:daily"
PRUNE_KEY = "engagement:frozen:prune"
JOB_STATUS = {"queued": "queued", "deferred": "queued", "scheduled": "queued", "started": "started",
              "finished": "finished", "failed": "failed", "stopped": "failed", "canceled": "failed"}


def _progress(percent: float, **meta) -> None:
    job = get_current_job()
    if job is not None:
        job.meta.update({"progress": round(percent, 1), **meta})
        job.save_meta()


def rebuild_rollups(start: str | None = None, end: str | None = None) -> dict:
    """Replay raw events of the local days [start, end] (ISO dates; default all days) into fresh rollups and day
    aggregates, with progress in job.meta (the console keeps serving: it is one member chunk or one day at a time)."""
    first = as_day(date.fromisoformat(start)) if start else None
    last = as_day(date.fromisoformat(end)) if end else None
    _progress(0)
    replayed = rollups.rebuild_rollups(first, last, progress=_progress)
    warm_answers()  # the rebuild dropped every frozen answer: the dashboards' own come back now
    _progress(100, events_replayed=replayed)
    return {"events_replayed": replayed, "start": start, "end": end}


def warm_caches(day: str | None = None) -> dict:
    """Settle yesterday's aggregates (fold its pending members into the bitmaps) and compute the default
    dashboards' frozen answers, so the first admin of the day (or after a rebuild) does not wait."""
    end = datetime.fromisoformat(day) if day else None
    yesterday = as_day(end or utcnow()) - timedelta(days=1)
    aggregates.fold(aggregates.day_key(yesterday))
    _progress(20)
    overview = warm_answers(end)
    _progress(100)
    return {"mau": overview["mau"]}


def warm_answers(now: datetime | None = None) -> dict:
    """What the dashboards ask by default, asked once: the answers about past days get frozen (cheap when they
    already are). Returns the overview."""
    overview = metrics.metrics(None, now, "day")
    for interval in ("week", "month"):
        metrics.metrics(None, now, interval)
        lifecycle.lifecycle_chart(interval, now=now)
    retention.retention("week", cohorts=8, now=now)
    inactive.inactive_users(30, now=now)
    return overview


def start_warming(app) -> None:
    """Worker startup hook: every ENGAGEMENT_WARM_INTERVAL seconds make sure the default answers are frozen (after
    midnight, a rebuild or late events) and, once a day, prune answers nobody asked for in weeks."""
    from console.queues import claim_period, run_every

    def warm() -> None:
        warm_answers()
        if claim_period(PRUNE_KEY, 24 * 3600):
            frozen.prune()

    run_every(app, app.config["ENGAGEMENT_WARM_INTERVAL"], "engagement-warm", warm)


def purge_raw_events() -> dict:
    """The daily raw-event retention (RAW_EVENT_TTL_DAYS); aggregates keep their history."""
    from console.blueprints.engagement import privacy

    return privacy.purge_raw_events({})


def score_churn(requested_by: str | None = None) -> dict:
    """Score every member still here and store the scores with the run's backtest."""
    job = get_current_job()
    _progress(0)
    return churn.rescore(job_id=job.id if job else None, progress=_progress)


def enqueue_churn_scoring(requested_by: str | None = None):
    from console.queues import get_queue

    return get_queue("default").enqueue(SCORE_CHURN_JOB, requested_by, job_timeout=current_app.config["JOB_TIMEOUT"],
                                        result_ttl=24 * 3600, meta={"progress": 0, "requested_by": requested_by},
                                        description="churn scoring")


def churn_job_status(job_id: str) -> dict | None:
    """The scoring job's status and progress; None for an unknown id or a job of another kind."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    from console.queues import get_redis

    try:
        job = Job.fetch(job_id, connection=get_redis())
    except (NoSuchJobError, ValueError):
        return None
    if job.func_name != SCORE_CHURN_JOB:
        return None
    status = JOB_STATUS.get(str(job.get_status(refresh=True).value), "queued")
    meta = job.get_meta(refresh=True)
    return {"job_id": job.id, "status": status, "progress": 100 if status == "finished" else meta.get("progress", 0),
            "result": job.return_value() if status == "finished" else None}


def start_daily_scoring(app) -> None:
    """Worker startup hook: score churn once a day (a Redis key keeps several workers to one run a day)."""
    from console.queues import claim_period, run_every

    run_every(app, 600, "churn-daily",
              lambda: claim_period(DAILY_KEY, 24 * 3600) and enqueue_churn_scoring("daily schedule"))
