"""`GET /metrics`: the Prometheus text format, guarded by METRICS_TOKEN (bearer) or METRICS_ALLOW (IPs/CIDRs).

Two kinds of numbers: counters and histograms counted in-process (console.telemetry.prom; merged across
gunicorn and worker processes through PROMETHEUS_MULTIPROC_DIR) and state read at scrape time from MongoDB
and Redis (mail queue, RQ registries, workers, round trips, alerts), so any web process answers the same.
Reads communication's `email_queue` collection directly (counts only) and the alert state of alerts.py.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import threading
import time

from flask import current_app
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from rq import Worker
from rq.job import Job

from console.queues import QUEUE_NAMES
from console.telemetry import prom
from console.timeutil import as_utc, utcnow

ACTIVE_MAIL = ("queued", "deferred", "sending")
DONE_MAIL = ("sent", "delivered", "bounced", "complained", "failed", "skipped")
_cache: dict = {"at": 0.0, "families": None}
_cache_lock = threading.Lock()


# --- access ---------------------------------------------------------------------------------------------------

def access_allowed(authorization: str, remote_addr: str | None) -> tuple[bool, int]:
    """(allowed, status when not) for a scrape with this Authorization header from this address: 404 when
    neither setting is made (off by default), 401 otherwise."""
    config = current_app.config
    token = (config.get("METRICS_TOKEN") or "").strip()
    allow = [entry.strip() for entry in str(config.get("METRICS_ALLOW") or "").split(",") if entry.strip()]
    if not token and not allow:
        return False, 404
    header = authorization or ""
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        return True, 200
    if allow and _address_allowed(remote_addr, allow):
        return True, 200
    return False, 401


def _address_allowed(address: str | None, allow: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    for entry in allow:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


# --- state read at scrape time --------------------------------------------------------------------------------

def _mail_families(database, now) -> list[Metric]:
    depth = GaugeMetricFamily("console_mail_queue_emails", "Emails in the mail queue by status and priority",
                              labels=["status", "priority"])
    age = GaugeMetricFamily("console_mail_queue_oldest_age_seconds",
                            "Age of the oldest email waiting, by status and priority", labels=["status", "priority"])
    coll = database["email_queue"]
    rows = coll.aggregate([{"$match": {"status": {"$in": list(ACTIVE_MAIL)}}},
                           {"$group": {"_id": {"s": "$status", "p": "$priority"}, "n": {"$sum": 1},
                                       "oldest": {"$min": "$created_at"}}}])
    seen = set()
    for row in rows:
        status, priority = row["_id"].get("s"), row["_id"].get("p") or "normal"
        seen.add((status, priority))
        depth.add_metric([status, priority], row["n"])
        if row.get("oldest"):
            age.add_metric([status, priority], max(0.0, (now - as_utc(row["oldest"])).total_seconds()))
    for status in ACTIVE_MAIL:  # an empty queue is 0, not a missing series
        for priority in ("high", "normal", "low"):
            if (status, priority) not in seen:
                depth.add_metric([status, priority], 0)
                age.add_metric([status, priority], 0)
    totals = GaugeMetricFamily("console_mail_emails", "Emails that reached a final status (kept in MongoDB)",
                               labels=["status"])
    counts = {status: coll.count_documents({"status": status}) for status in DONE_MAIL}
    for status, n in counts.items():
        totals.add_metric([status], n)
    sent = CounterMetricFamily("console_mail_sent", "Emails handed to the mail server")
    sent.add_metric([], counts["sent"] + counts["delivered"] + counts["bounced"] + counts["complained"])
    bounced = CounterMetricFamily("console_mail_bounced", "Emails the provider reported as bounced")
    bounced.add_metric([], counts["bounced"])
    complained = CounterMetricFamily("console_mail_complained", "Emails the recipient marked as spam")
    complained.add_metric([], counts["complained"])
    return [depth, age, totals, sent, bounced, complained]


def _rq_families(conn, now) -> list[Metric]:
    jobs = GaugeMetricFamily("console_rq_queue_jobs", "RQ jobs by queue and state", labels=["queue", "state"])
    oldest = GaugeMetricFamily("console_rq_queue_oldest_job_age_seconds", "Age of the oldest queued job",
                               labels=["queue"])
    queues = current_app.extensions["queues"]
    for name in QUEUE_NAMES:
        queue = queues[name]
        states = {"queued": queue.count, "started": queue.started_job_registry.count,
                  "scheduled": queue.scheduled_job_registry.count, "deferred": queue.deferred_job_registry.count,
                  "failed": queue.failed_job_registry.count, "finished": queue.finished_job_registry.count}
        for state, n in states.items():
            jobs.add_metric([name, state], n)
        age = 0.0
        first = queue.get_job_ids(0, 1)
        if first:
            job = Job.fetch(first[0], connection=conn)
            if job.enqueued_at:
                age = max(0.0, (now - as_utc(job.enqueued_at)).total_seconds())
        oldest.add_metric([name], age)
    workers = GaugeMetricFamily("console_rq_workers", "RQ workers registered, by state", labels=["state"])
    beat = GaugeMetricFamily("console_rq_worker_heartbeat_age_seconds", "Seconds since each worker's heartbeat",
                             labels=["worker"])
    states: dict[str, int] = {}
    for worker in Worker.all(connection=conn):
        state = str(worker.get_state() or "unknown")
        states[state] = states.get(state, 0) + 1
        if worker.last_heartbeat is not None:
            beat.add_metric([worker.name], max(0.0, (now - as_utc(worker.last_heartbeat)).total_seconds()))
    for state in ("idle", "busy", "started", "suspended"):
        states.setdefault(state, 0)
    for state, n in sorted(states.items()):
        workers.add_metric([state], n)
    return [jobs, oldest, workers, beat]


def _round_trips(database, conn) -> list[Metric]:
    rtt = GaugeMetricFamily("console_dependency_round_trip_seconds", "A ping's round trip at scrape time",
                            labels=["dependency"])
    up = GaugeMetricFamily("console_dependency_up", "1 when the dependency answered the scrape's ping",
                           labels=["dependency"])
    for name, ping in (("mongodb", lambda: database.command("ping")), ("redis", conn.ping)):
        started = time.perf_counter()
        try:
            ping()
            rtt.add_metric([name], time.perf_counter() - started)
            up.add_metric([name], 1)
        except Exception:
            up.add_metric([name], 0)
    return [rtt, up]


def _alert_families() -> list[Metric]:
    from console.blueprints.hardening import alerts

    firing = GaugeMetricFamily("console_alerts_firing", "1 while an alert rule is firing", labels=["rule"])
    for rule, state in alerts.current_states().items():
        firing.add_metric([rule], 1 if state == "firing" else 0)
    return [firing]


def state_families() -> list[Metric]:
    """Every family read at scrape time; a dependency that is down drops its families, never the scrape."""
    from console.db import get_db

    now = utcnow()
    database = get_db()
    conn = current_app.extensions["redis"]
    families = _round_trips(database, conn)
    for part in (lambda: _mail_families(database, now), lambda: _rq_families(conn, now), _alert_families):
        try:
            families.extend(part())
        except Exception as error:
            current_app.logger.warning("metrics: a source failed (%s)", type(error).__name__)
    scrape_ok = GaugeMetricFamily("console_metrics_scrape_sources", "State families gathered in this scrape")
    scrape_ok.add_metric([], len(families))
    families.append(scrape_ok)
    return families


def _cached_state() -> list[Metric]:
    ttl = float(current_app.config.get("METRICS_CACHE_SECONDS", 5) or 0)
    with _cache_lock:
        if ttl and _cache["families"] is not None and time.monotonic() - _cache["at"] < ttl:
            return _cache["families"]
    families = state_families()
    with _cache_lock:
        _cache.update(at=time.monotonic(), families=families)
    return families


# --- counted in-process, merged across processes --------------------------------------------------------------

def _counted_families() -> list[Metric]:
    directory = current_app.config.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    sources = []
    if prom.MULTIPROCESS:
        sources.append(MultiProcessCollector(None, path=directory or os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    else:
        sources.append(REGISTRY)
        if directory and os.path.isdir(directory):  # workers write files this process does not
            sources.append(MultiProcessCollector(None, path=directory))
    return merge(metric for source in sources for metric in source.collect())


def merge(metrics) -> list[Metric]:
    """One family per name; samples with the same name and labels are summed (counters and histogram buckets
    from several sources)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict] = {}
    for metric in metrics:
        family = families.get(metric.name)
        if family is None:
            family = families[metric.name] = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            values[metric.name] = {}
        for sample in metric.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            if key in values[metric.name]:
                values[metric.name][key] = values[metric.name][key]._replace(
                    value=values[metric.name][key].value + sample.value)
            else:
                values[metric.name][key] = sample
    for name, family in families.items():
        family.samples = list(values[name].values())
    return list(families.values())


class _Families:
    def __init__(self, families):
        self._families = families

    def collect(self):
        return self._families


def exposition() -> tuple[bytes, str]:
    """The scrape body and its content type."""
    families = _counted_families() + _cached_state()
    return generate_latest(_Families(families)), CONTENT_TYPE_LATEST
