"""Prometheus instruments counted in-process (requests, ingest, jobs, MongoDB commands, errors).

Multiprocess-safe: when PROMETHEUS_MULTIPROC_DIR is set in the environment before this module is imported
(gunicorn workers and `python worker.py` share one directory), prometheus_client keeps every value in a
memory-mapped file there and `/metrics` merges them. Without it the values live in this process only.
State that lives in MongoDB or Redis (mail queue, RQ registries, workers) is read at scrape time instead
(console.blueprints.hardening.metrics), so it is right whichever process answers the scrape.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, values

MULTIPROCESS = values.ValueClass is not values.MutexValue  # chosen by prometheus_client from the environment

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

HTTP_REQUESTS = Counter("console_http_requests", "HTTP requests answered, by route, method and status",
                        ["endpoint", "method", "status"])
HTTP_LATENCY = Histogram("console_http_request_duration_seconds", "Time to answer a request, by route and status",
                         ["endpoint", "method", "status"], buckets=_LATENCY_BUCKETS)
EVENTS_INGESTED = Counter("console_events_ingested", "Activity events stored by track-activity")
EVENTS_DUPLICATE = Counter("console_events_duplicate", "Activity events skipped as duplicates (same event_id)")
EVENTS_REJECTED = Counter("console_events_rejected", "Activity events rejected by validation")
RQ_JOBS = Counter("console_rq_jobs", "RQ jobs run by a worker, by queue, job and outcome (finished|failed|retried)",
                  ["queue", "job", "outcome"])
RQ_JOB_DURATION = Histogram("console_rq_job_duration_seconds", "Time an RQ job ran, by queue",
                            ["queue"], buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600))
MONGO_COMMANDS = Histogram("console_mongodb_command_duration_seconds",
                           "Round trip of watched MongoDB commands (telemetry's own writes excluded)",
                           ["command"], buckets=_DB_BUCKETS)
SLOW_QUERIES = Counter("console_mongodb_slow_queries", "MongoDB commands slower than SLOW_QUERY_MS, by collection",
                       ["collection"])
ERRORS = Counter("console_errors", "Unhandled exceptions, by source (request|job)", ["source"])


def observe_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    labels = (endpoint, method, str(status))
    HTTP_REQUESTS.labels(*labels).inc()
    HTTP_LATENCY.labels(*labels).observe(seconds)


def count_ingest(accepted: int, duplicates: int, rejected: int) -> None:
    """Called by the ingest operation once per batch."""
    if accepted:
        EVENTS_INGESTED.inc(accepted)
    if duplicates:
        EVENTS_DUPLICATE.inc(duplicates)
    if rejected:
        EVENTS_REJECTED.inc(rejected)


def short_job_name(func_name: str | None) -> str:
    """`console.blueprints.communication.jobs.deliver` → `communication.deliver` (bounded label values)."""
    name = func_name or "<unknown>"
    parts = name.split(".")
    if len(parts) >= 4 and parts[0] == "console" and parts[1] == "blueprints":
        return f"{parts[2]}.{parts[-1]}"
    return name[-80:]
