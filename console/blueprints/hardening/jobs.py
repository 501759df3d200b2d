"""The optimize job: runs maintenance tasks in order, reporting progress in job.meta."""

from __future__ import annotations

from rq import get_current_job

from console import maintenance


def optimize(tasks: list[str], options: dict) -> dict:
    """Run each task; a failing task fails the job (RQ records it) after the earlier results are kept in meta."""
    job = get_current_job()
    registered = maintenance.tasks()
    results: dict = {}
    for index, name in enumerate(tasks):
        if job is not None:
            job.meta.update({"current": name, "progress": round(100 * index / len(tasks)), "results": results})
            job.save_meta()
        results[name] = registered[name].run(options)
    if job is not None:
        job.meta.update({"current": None, "progress": 100, "results": results})
        job.save_meta()
    return {"tasks": results}


def evaluate_alerts() -> dict:
    """The scheduled alert evaluation (enqueued every ALERT_INTERVAL seconds by the worker's schedule)."""
    from console.blueprints.hardening import alerts

    return alerts.run_locked()
