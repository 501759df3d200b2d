"""Engagement jobs: rebuild rollups from raw events, warm the dashboard caches. They raise on failure."""

from __future__ import annotations

from datetime import date, datetime

from rq import get_current_job

from console.blueprints.engagement import churn, ingest, metrics
from console.blueprints.engagement.periods import as_day


def _progress(percent: float, **meta) -> None:
    job = get_current_job()
    if job is not None:
        job.meta.update({"progress": round(percent, 1), **meta})
        job.save_meta()


def rebuild_rollups(start: str | None = None, end: str | None = None) -> dict:
    """Replay raw events of [start, end] (ISO dates; default all days) into fresh rollups."""
    first = as_day(date.fromisoformat(start)) if start else None
    last = as_day(date.fromisoformat(end)) if end else None
    _progress(0)
    replayed = ingest.rebuild_rollups(first, last)
    _progress(100, events_replayed=replayed)
    return {"events_replayed": replayed, "start": start, "end": end}


def warm_caches(day: str | None = None) -> dict:
    """Compute today's overview and churn report so the first admin of the day does not wait."""
    end = datetime.fromisoformat(day) if day else None
    overview = metrics.metrics(None, end, "day")
    _progress(50)
    report = churn.churn_report()
    _progress(100)
    return {"mau": overview["mau"], "scored": len(report["items"])}


def purge_raw_events() -> dict:
    """The daily raw-event retention (RAW_EVENT_TTL_DAYS); aggregates keep their history."""
    from console.blueprints.engagement import privacy

    return privacy.purge_raw_events({})
