"""One indicator per dependency, probed concurrently, aggregated worst-first. No URIs, hosts or secrets out."""

from __future__ import annotations

import os
import shutil
import smtplib
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

from flask import current_app
from rq import Worker
from rq.job import Job

from console.maintenance import health_probes
from console.queues import QUEUE_NAMES
from console.timeutil import as_utc, utcnow

UP, DEGRADED, DOWN = "UP", "DEGRADED", "DOWN"
_RANK = {UP: 0, DEGRADED: 1, DOWN: 2}
SLOW_PING_MS = 250
STALE_HEARTBEAT_SECONDS = 120
OLD_JOB_SECONDS = 600


def worst(statuses) -> str:
    return max(statuses, key=_RANK.__getitem__, default=UP)


def _timed(fn):
    started = time.perf_counter()
    try:
        out = fn()
    except Exception as error:  # a probe answers DOWN with the error's type, never its message (may hold URIs)
        return {"status": DOWN, "error": type(error).__name__,
                "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    out.setdefault("latency_ms", round((time.perf_counter() - started) * 1000, 2))
    return out


def check_mongodb(db) -> dict:
    started = time.perf_counter()
    db.command("ping")
    latency = round((time.perf_counter() - started) * 1000, 2)
    return {"status": DEGRADED if latency > SLOW_PING_MS else UP, "latency_ms": latency}


def check_redis(conn) -> dict:
    started = time.perf_counter()
    conn.ping()
    latency = round((time.perf_counter() - started) * 1000, 2)
    memory = conn.info("memory")
    used, limit = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
    status = DEGRADED if latency > SLOW_PING_MS or (limit and used / limit > 0.9) else UP
    return {"status": status, "latency_ms": latency, "used_memory_mb": round(used / 1048576, 2),
            "max_memory_mb": round(limit / 1048576, 2) if limit else None}


def check_workers(conn) -> dict:
    now = utcnow()
    workers = Worker.all(connection=conn)
    ages = []
    for worker in workers:
        beat = worker.last_heartbeat
        if beat is not None:
            ages.append((now - as_utc(beat)).total_seconds())
    fresh = [age for age in ages if age <= STALE_HEARTBEAT_SECONDS]
    # no worker: jobs wait (nothing is lost, MongoDB holds the mail), so the system is degraded, not down
    status = UP if fresh else DEGRADED
    return {"status": status, "count": len(workers), "alive": len(fresh),
            "heartbeat_age_s": round(min(ages), 1) if ages else None,
            "detail": None if fresh else "no RQ worker has sent a heartbeat recently; queued jobs wait"}


def check_queues(queues: dict, conn) -> dict:
    now = utcnow()
    out, statuses = {}, []
    for name in QUEUE_NAMES:
        queue = queues[name]
        depth = queue.count
        failed = queue.failed_job_registry.count
        oldest_age = None
        first = queue.get_job_ids(0, 1)
        if first:
            job = Job.fetch(first[0], connection=conn)
            if job.enqueued_at:
                oldest_age = round((now - as_utc(job.enqueued_at)).total_seconds(), 1)
        status = DEGRADED if (oldest_age or 0) > OLD_JOB_SECONDS else UP
        statuses.append(status)
        out[name] = {"depth": depth, "failed": failed, "oldest_job_age_s": oldest_age, "status": status}
    return {"status": worst(statuses), "queues": out}


def check_smtp(host: str, port: int, use_ssl: bool, timeout: float = 3.0) -> dict:
    cls = smtplib.SMTP_SSL if use_ssl else smtplib.SMTP
    kwargs = {"context": ssl.create_default_context()} if use_ssl else {}
    with cls(host, port, timeout=timeout, **kwargs) as smtp:
        code, _ = smtp.noop()
    return {"status": UP if code == 250 else DEGRADED, "noop_code": code}


def check_disk(path: str) -> dict:
    usage = shutil.disk_usage(path)
    free_ratio = usage.free / usage.total if usage.total else 0
    status = DOWN if free_ratio < 0.03 else DEGRADED if free_ratio < 0.10 else UP
    return {"status": status, "free_gb": round(usage.free / 1024 ** 3, 2), "free_percent": round(free_ratio * 100, 1)}


def _in_app(app, probe):
    with app.app_context():
        return probe()


def health_comprehensive() -> dict:
    """Probe every dependency at once (so a dead one costs its timeout once, not per check)."""
    from console.db import get_db

    app = current_app._get_current_object()
    config = app.config
    conn = app.extensions["redis"]
    probes = {
        "mongodb": lambda: check_mongodb(get_db()),
        "redis": lambda: check_redis(conn),
        "workers": lambda: check_workers(conn),
        "queues": lambda: check_queues(app.extensions["queues"], conn),
        "smtp": lambda: check_smtp(config["MAIL_SERVER"], int(config["MAIL_PORT"]), bool(config.get("MAIL_USE_SSL"))),
        "disk": lambda: check_disk(app.instance_path if os.path.isdir(app.instance_path) else app.root_path),
        **{name: (lambda probe=probe: _in_app(app, probe)) for name, probe in health_probes().items()},
    }
    with ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="health") as pool:
        futures = {name: pool.submit(_timed, probe) for name, probe in probes.items()}
        checks = {name: future.result() for name, future in futures.items()}
    # the workers and queues live in Redis: without Redis they are unknown, which is reported as down
    return {"status": worst(check["status"] for check in checks.values()), "checked_at": utcnow(),
            "checks": checks}

