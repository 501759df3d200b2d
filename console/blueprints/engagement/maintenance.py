"""What engagement registers with the optimize job and the CLI: the rebuild of rollups and day aggregates.

The dashboards have no result caches any more (they read the day aggregates), so nothing is registered to clear
but the churn report's cache."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import click
from flask.cli import with_appcontext

from console.blueprints.engagement import rollups
from console.blueprints.engagement.models import EngagementCache
from console.blueprints.engagement.periods import as_day
from console.maintenance import Cache, Task
from console.timeutil import utcnow


def _as_datetime(value, end: bool = False) -> datetime:
    if isinstance(value, datetime):
        return value
    day = value if isinstance(value, date) else date.fromisoformat(str(value))
    return datetime.combine(day, time.max if end else time.min).replace(tzinfo=utcnow().tzinfo)


def _progress(percent: float) -> None:
    from rq import get_current_job

    job = get_current_job()
    if job is not None:  # the optimize job: this task's share shows as its own progress entry
        job.meta["rebuild_progress"] = round(percent, 1)
        job.save_meta()


def rebuild_rollups(options: dict) -> dict:
    """Replay the raw events of [start, end] (default: the last 30 days; `"all": true` for everything) into fresh
    rollups and day aggregates."""
    if options.get("all"):
        replayed = rollups.rebuild_rollups(progress=_progress)
        return {"status": "done", "start": None, "end": None, "events_replayed": replayed}
    today = as_day(utcnow()).date()
    start = _as_datetime(options.get("start") or today - timedelta(days=30))
    end = _as_datetime(options.get("end") or today, end=True)
    replayed = rollups.rebuild_rollups(as_day(start.date()), as_day(end.date()), progress=_progress)
    return {"status": "done", "start": start, "end": end, "events_replayed": replayed}


def _clearer(model):
    return lambda: model._get_collection().delete_many({}).deleted_count


@click.command("rebuild-analytics")
@click.option("--start", help="first local day (YYYY-MM-DD); default: all days")
@click.option("--end", help="last local day (YYYY-MM-DD)")
@click.option("--wait/--no-wait", default=False, help="follow the job's progress until it ends")
@with_appcontext
def rebuild_command(start: str | None, end: str | None, wait: bool) -> None:
    """Rebuild rollups and day aggregates from the stored events, as a background job (the console keeps serving).

    Run it after changing ANALYTICS_TIMEZONE."""
    import time as clock

    from console.queues import get_queue

    for value in (start, end):
        if value:
            date.fromisoformat(value)
    job = get_queue("low").enqueue("console.blueprints.engagement.jobs.rebuild_rollups", start, end,
                                   job_timeout=6 * 3600)
    click.echo(f"rebuild queued as job {job.id}")
    while wait:
        clock.sleep(1)
        job.refresh()
        click.echo(f"{job.get_status()} {job.meta.get('progress', 0)}%")
        if job.is_finished or job.is_failed:
            click.echo(str(job.return_value() if job.is_finished else job.exc_info))
            break


TASKS = (Task("rebuild_rollups", "Rebuild engagement rollups and day aggregates for a date range", True,
              rebuild_rollups, order=30),)
CACHES = (Cache("engagement_metrics", _clearer(EngagementCache)),)
