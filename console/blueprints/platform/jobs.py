"""Platform jobs: publish scheduled blog posts and events when their time comes. Jobs raise on failure."""

from __future__ import annotations

from console.blueprints.platform import content
from console.queues import claim_period, get_queue, run_every

PUBLISH_JOB = "console.blueprints.platform.jobs.publish_scheduled"
TICK_KEY = "platform:publish:tick"


def publish_scheduled() -> dict:
    """Publish every scheduled post and event that is due: {"blogs": n, "events": n}."""
    return {kind: content.publish_due(kind) for kind in content.KINDS}


def enqueue_publish(app) -> None:
    """Enqueue one publishing run unless another worker did so within the interval."""
    with app.app_context():
        if claim_period(TICK_KEY, int(app.config["CONTENT_PUBLISH_INTERVAL"]) - 1):
            get_queue("default").enqueue(PUBLISH_JOB, job_timeout=300, result_ttl=600,
                                         description="publish scheduled content")


def start_publish_schedule(app) -> None:
    """Worker startup hook: publish due content every CONTENT_PUBLISH_INTERVAL seconds (0 turns it off)."""
    run_every(app, int(app.config.get("CONTENT_PUBLISH_INTERVAL") or 0), "content-publish",
              lambda: enqueue_publish(app))
