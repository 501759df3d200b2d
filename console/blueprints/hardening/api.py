"""JSON endpoints of CONTRACT.md "Hardening"."""

import re

from flask import current_app
from flask_login import current_user

from console.blueprints.hardening import (
    API,
    bp,
    checklist,
    errors,
    health,
    optimize,
    performance,
    security_audit,
    slow_queries,
)
from console.blueprints.hardening.schemas import (
    ChecklistOut,
    ErrorAnalysisOut,
    HealthOut,
    HoursQuery,
    OptimizeAccepted,
    OptimizeRequest,
    OptimizeStatus,
    PerformanceOut,
    SecurityAuditOut,
    SlowQueriesOut,
    SlowQueriesQuery,
)
from console.errors import ApiError
from console.http import endpoint, link

TAGS = ["hardening"]
JOB_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


@endpoint(bp, f"{API}/security-audit", permission="hardening.view", response=SecurityAuditOut, tags=TAGS,
          summary="Security audit: deploy checks with status, severity, detail, remediation and a score")
def security_audit_view():
    """Django's `check --deploy` translated to this stack, plus MongoDB/Redis credentials and TLS, ingest keys,
    admin password age and routes without a permission. Headers are verified with a live probe request."""
    return security_audit.security_audit()


@endpoint(bp, f"{API}/error-analysis", permission="hardening.view", query=HoursQuery, response=ErrorAnalysisOut,
          tags=TAGS, summary="Unhandled errors grouped by fingerprint over the last hours")
def error_analysis_view(query: HoursQuery):
    """`count` is the occurrences inside the window; `error_rate` divides them by the requests recorded."""
    return errors.error_analysis(query.hours)


@endpoint(bp, f"{API}/performance-review", permission="hardening.view", query=HoursQuery, response=PerformanceOut,
          tags=TAGS, summary="p50/p95/p99 latency and error rate per endpoint and method, slowest first")
def performance_review_view(query: HoursQuery):
    """Percentiles are computed by MongoDB over the recorded request durations."""
    return performance.performance_review(query.hours)


@endpoint(bp, f"{API}/slow-queries", permission="hardening.view", query=SlowQueriesQuery, response=SlowQueriesOut,
          tags=TAGS, summary="Slow MongoDB commands (shapes only), their plan and a suggested index")
def slow_queries_view(query: SlowQueriesQuery):
    """Commands are stored as shapes (values replaced by their types). Each recent shape is explained:
    COLLSCAN or an in-memory SORT gets a suggested index (equality, sort, range fields)."""
    threshold = query.threshold_ms if query.threshold_ms is not None else float(current_app.config["SLOW_QUERY_MS"])
    return slow_queries.slow_queries(threshold, limit=query.limit)


@endpoint(bp, f"{API}/health-comprehensive", permission="hardening.view", response=HealthOut, tags=TAGS,
          summary="Health of every dependency, worst first; 503 when one is DOWN", responses={503: "DOWN"})
def health_view():
    """MongoDB (ping latency), Redis (ping, memory), RQ workers (count, heartbeat age), queues (depth, failed,
    oldest job age), SMTP (connect + NOOP), disk (free space). No URIs, hosts or credentials in the output."""
    report = health.health_comprehensive()
    return report, 503 if report["status"] == health.DOWN else 200


@endpoint(bp, f"{API}/production-checklist", permission="hardening.view", response=ChecklistOut, tags=TAGS,
          summary="Go-live checklist, each item verified against the running system")
def checklist_view():
    """`ready` is true when no item fails."""
    return checklist.production_checklist()


@endpoint(bp, f"{API}/optimize", methods=["POST"], permission="hardening.optimize", body=OptimizeRequest,
          response=OptimizeAccepted, status=202, tags=TAGS, responses={422: "unknown task or missing confirm"},
          summary="Run maintenance tasks as a background job",
          links={"OptimizeStatus": link("hardening_optimize_status_view_get", job_id="$response.body#/job_id")})
def optimize_view(body: OptimizeRequest):
    """Tasks: ensure_indexes, purge_expired, rebuild_rollups (start/end), compact_caches. Destructive tasks need
    `"confirm": true`. Poll `GET /optimize/{job_id}` for progress."""
    options = {"start": body.start, "end": body.end}
    job = optimize.enqueue(body.tasks, options, current_user.email, confirmed=body.confirm)
    return {"job_id": job.id}


@endpoint(bp, f"{API}/optimize/<job_id>", permission="hardening.optimize", response=OptimizeStatus, tags=TAGS,
          summary="Status, progress (0-100) and result of an optimize job")
def optimize_status_view(job_id: str):
    status = optimize.job_status(job_id) if JOB_ID.match(job_id) else None
    if status is None:
        raise ApiError(404, f"No optimize job has the id {job_id}.")
    return status
