"""Redis and the RQ queues, created in the factory with an explicit connection."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from flask import current_app
from rq import Queue, SimpleWorker

log = logging.getLogger(__name__)
QUEUE_NAMES = ("high", "default", "low")
PRIORITY_QUEUES = {"high": "high", "normal": "default", "low": "low"}


def init_app(app) -> None:
    conn = redis.Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=5)
    app.extensions["redis"] = conn
    app.extensions["queues"] = {
        name: Queue(name, connection=conn, default_timeout=app.config["JOB_TIMEOUT"]) for name in QUEUE_NAMES
    }


def get_redis() -> redis.Redis:
    return current_app.extensions["redis"]


def get_queue(name: str = "default") -> Queue:
    return current_app.extensions["queues"][name]


def claim_period(key: str, seconds: int) -> bool:
    """True for the first process to ask within `seconds` (several workers tick; one run per period)."""
    return bool(get_redis().set(key, 1, nx=True, ex=max(1, int(seconds))))


def run_every(app, seconds: float, name: str, call: Callable[[], object]) -> threading.Event:
    """Worker startup: call `call` in an app context every `seconds` on a daemon thread (0 or less: never).
    Setting the returned event stops it."""
    stop = threading.Event()
    if seconds <= 0:
        return stop

    def tick():
        while not stop.is_set():
            try:
                with app.app_context():
                    call()
            except Exception:  # keep the schedule alive through a Redis or MongoDB outage
                log.warning("%s: failed; trying again in %s s", name, seconds, exc_info=True)
            stop.wait(seconds)

    threading.Thread(target=tick, name=name, daemon=True).start()
    return stop


class ConsoleWorker(SimpleWorker):
    """SimpleWorker (jobs run in this process) that counts each job's outcome for /metrics."""

    def handle_job_success(self, job, queue, started_job_registry):
        _count_job(job, queue, "finished")
        return super().handle_job_success(job, queue, started_job_registry)

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string=""):
        outcome = "retried" if job.should_retry and self._stopped_job_id != job.id else "failed"
        _count_job(job, queue, outcome)
        return super().handle_job_failure(job, queue, started_job_registry=started_job_registry,
                                          exc_string=exc_string)


def _count_job(job, queue, outcome: str) -> None:
    from console.telemetry import prom

    try:
        name = prom.short_job_name(job.func_name)
    except Exception:  # an undeserializable job still counts
        name = "<undeserializable>"
    origin = getattr(queue, "name", None) or job.origin
    prom.RQ_JOBS.labels(origin, name, outcome).inc()
    if job.started_at and job.ended_at:
        prom.RQ_JOB_DURATION.labels(origin).observe(max(0.0, (job.ended_at - job.started_at).total_seconds()))


def make_worker(app, connection: redis.Redis | None = None) -> ConsoleWorker:
    """The worker `python worker.py` runs (and the tests' burst worker): the queues high, default, low, with the
    exception handlers the app registered (`rq_exception_handlers`: failed jobs become error groups)."""
    connection = connection or app.extensions["redis"]
    queues = [Queue(name, connection=connection, default_timeout=app.config["JOB_TIMEOUT"]) for name in QUEUE_NAMES]
    return ConsoleWorker(queues, connection=connection,
                         exception_handlers=list(app.extensions.get("rq_exception_handlers", [])))
