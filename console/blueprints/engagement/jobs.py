"""Engagement jobs: rebuild rollups and day aggregates from raw events, settle yesterday, warm the churn report.
They raise on failure."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from rq import get_current_job

from console.blueprints.engagement import aggregates, churn, metrics, rollups
from console.blueprints.engagement.periods import as_day
from console.timeutil import utcnow


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
    _progress(100, events_replayed=replayed)
    return {"events_replayed": replayed, "start": start, "end": end}


def warm_caches(day: str | None = None) -> dict:
    """Settle yesterday's aggregates (fold its pending members into the bitmaps) and compute the churn report, so
    the first admin of the day does not wait."""
    end = datetime.fromisoformat(day) if day else None
    yesterday = as_day(end or utcnow()) - timedelta(days=1)
    aggregates.fold(aggregates.day_key(yesterday))
    overview = metrics.metrics(None, end, "day")
    _progress(50)
    report = churn.churn_report()
    _progress(100)
    return {"mau": overview["mau"], "scored": len(report["items"])}


def purge_raw_events() -> dict:
    """The daily raw-event retention (RAW_EVENT_TTL_DAYS); aggregates keep their history."""
    from console.blueprints.engagement import privacy

    return privacy.purge_raw_events({})
