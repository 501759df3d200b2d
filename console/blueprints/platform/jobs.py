"""Platform jobs: publish scheduled blog posts and events when their time comes. Jobs raise on failure."""

from __future__ import annotations

import logging
import threading
import time

from console.blueprints.platform import content

log = logging.getLogger(__name__)
PUBLISH_JOB = "console.blueprints.platform.jobs.publish_scheduled"
TICK_KEY = "platform:publish:tick"


def publish_scheduled() -> dict:
    """Publish every scheduled post and event that is due: {"blogs": n, "events": n}."""
    return {kind: content.publish_due(kind) for kind in content.KINDS}


def enqueue_publish(app) -> None:
    """Enqueue one publishing run unless another worker did so within the interval."""
    with app.app_context():
        interval = int(app.config["CONTENT_PUBLISH_INTERVAL"])
        if app.extensions["redis"].set(TICK_KEY, 1, nx=True, ex=max(1, interval - 1)):
            app.extensions["queues"]["default"].enqueue(PUBLISH_JOB, job_timeout=300, result_ttl=600,
                                                        description="publish scheduled content")


def start_publish_schedule(app) -> None:
    """Worker startup hook: publish due content every CONTENT_PUBLISH_INTERVAL seconds (0 turns it off)."""
    interval = int(app.config.get("CONTENT_PUBLISH_INTERVAL") or 0)
    if interval <= 0:
        return

    def tick():
        while True:
            try:
                enqueue_publish(app)
            except Exception:  # keep the schedule alive through a Redis outage
                log.warning("content publishing: could not enqueue", exc_info=True)
            time.sleep(interval)

    threading.Thread(target=tick, name="content-publish", daemon=True).start()
