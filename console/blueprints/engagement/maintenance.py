"""What engagement registers with the optimize job: the rollup rebuild and its dashboard caches."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from console.blueprints.engagement import ingest
from console.blueprints.engagement.models import EngagementCache, RetentionCache
from console.maintenance import Cache, Task
from console.timeutil import utcnow


def _as_datetime(value, end: bool = False) -> datetime:
    if isinstance(value, datetime):
        return value
    day = value if isinstance(value, date) else date.fromisoformat(str(value))
    return datetime.combine(day, time.max if end else time.min).replace(tzinfo=utcnow().tzinfo)


def rebuild_rollups(options: dict) -> dict:
    """Replay the raw events of [start, end] (default: the last 30 days) into fresh rollups."""
    today = utcnow().date()
    start = _as_datetime(options.get("start") or today - timedelta(days=30))
    end = _as_datetime(options.get("end") or today, end=True)
    replayed = ingest.rebuild_rollups(start, end)
    return {"status": "done", "start": start, "end": end, "events_replayed": replayed}


def _clearer(model):
    return lambda: model._get_collection().delete_many({}).deleted_count


TASKS = (Task("rebuild_rollups", "Rebuild engagement rollups for a date range", True, rebuild_rollups, order=30),)
CACHES = (Cache("engagement_metrics", _clearer(EngagementCache)), Cache("retention_cohorts", _clearer(RetentionCache)))
