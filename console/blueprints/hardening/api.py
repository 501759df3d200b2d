"""JSON endpoints of CONTRACT.md "Hardening"."""

import re

from flask import current_app
from flask_login import current_user

from console.blueprints.hardening import (
    API,
    alerts,
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
    AlertRuleOut,
    AlertRuleUpdate,
    AlertsOut,
    AlertsQuery,
    ChecklistOut,
    EmptyRequest,
    ErrorAnalysisOut,
    ErrorAnalysisQuery,
    ErrorGroup,
    ErrorTrendOut,
    HealthOut,
    HoursQuery,
    IgnoreRequest,
    JobActionOut,
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
FINGERPRINT = re.compile(r"^[0-9a-f]{1,64}$")


@endpoint(bp, f"{API}/security-audit", permission="hardening.view", response=SecurityAuditOut, tags=TAGS,
          summary="Security audit: deploy checks with status, severity, detail, remediation and a score")
def security_audit_view():
    """Django's `check --deploy` translated to this stack, plus MongoDB/Redis credentials and TLS, ingest keys,
    admin password age and routes without a permission. Headers are verified with a live probe request."""
    return security_audit.security_audit()


@endpoint(bp, f"{API}/error-analysis", permission="hardening.view", query=ErrorAnalysisQuery,
          response=ErrorAnalysisOut, tags=TAGS,
          summary="Unhandled errors and failed RQ jobs grouped by fingerprint over the last hours")
def error_analysis_view(query: ErrorAnalysisQuery):
    """`count` is the occurrences inside the window; `error_rate` divides the request errors by the requests
    recorded. `state` filters: active (open, regressions first), open, resolved, ignored, regressed, all."""
    return errors.error_analysis(query.hours, state=query.state, source=query.source)


@endpoint(bp, f"{API}/error-trend", permission="hardening.view", query=HoursQuery, response=ErrorTrendOut,
          tags=TAGS, summary="Requests, errors, error rate and failed jobs per hour over the window")
def error_trend_view(query: HoursQuery):
    return errors.error_trend(query.hours)


def _fingerprint(fingerprint: str) -> str:
    if not FINGERPRINT.match(fingerprint):
        raise ApiError(404, f"No error group has the fingerprint {fingerprint}.")
    return fingerprint


@endpoint(bp, f"{API}/error-groups/<fingerprint>/resolve", methods=["POST"], permission="hardening.optimize",
          body=EmptyRequest, response=ErrorGroup, tags=TAGS,
          summary="Resolve an error group; if it recurs it reopens, marked as a regression")
def error_group_resolve_view(fingerprint: str, body: EmptyRequest):
    return errors.change_state(_fingerprint(fingerprint), "resolve", current_user.email)


@endpoint(bp, f"{API}/error-groups/<fingerprint>/ignore", methods=["POST"], permission="hardening.optimize",
          body=IgnoreRequest, response=ErrorGroup, tags=TAGS,
          summary="Ignore an error group for some minutes, or for good")
def error_group_ignore_view(fingerprint: str, body: IgnoreRequest):
    return errors.change_state(_fingerprint(fingerprint), "ignore", current_user.email, body.minutes)


@endpoint(bp, f"{API}/error-groups/<fingerprint>/reopen", methods=["POST"], permission="hardening.optimize",
          body=EmptyRequest, response=ErrorGroup, tags=TAGS, summary="Reopen a resolved or ignored error group")
def error_group_reopen_view(fingerprint: str, body: EmptyRequest):
    return errors.change_state(_fingerprint(fingerprint), "reopen", current_user.email)


@endpoint(bp, f"{API}/error-groups/<fingerprint>/retry", methods=["POST"], permission="hardening.optimize",
          body=EmptyRequest, response=JobActionOut, tags=TAGS, responses={422: "not a failed-job group"},
          summary="Requeue the failed RQ jobs of a failed-job group")
def error_group_retry_view(fingerprint: str, body: EmptyRequest):
    return errors.job_action(_fingerprint(fingerprint), "retry")


@endpoint(bp, f"{API}/error-groups/<fingerprint>/discard", methods=["POST"], permission="hardening.optimize",
          body=EmptyRequest, response=JobActionOut, tags=TAGS, responses={422: "not a failed-job group"},
          summary="Delete the failed RQ jobs of a failed-job group and resolve it")
def error_group_discard_view(fingerprint: str, body: EmptyRequest):
    return errors.job_action(_fingerprint(fingerprint), "discard")


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


@endpoint(bp, f"{API}/alerts", permission="hardening.view", query=AlertsQuery, response=AlertsOut, tags=TAGS,
          summary="Alert rules with their settings and state, the firing ones, and the history")
def alerts_view(query: AlertsQuery):
    rules = alerts.rules()
    return {"firing": [rule["rule"] for rule in rules if rule["state"] == "firing"], "rules": rules,
            "history": alerts.history(query.limit)}


@endpoint(bp, f"{API}/alerts/rules/<rule>", methods=["PUT"], permission="hardening.optimize", body=AlertRuleUpdate,
          response=AlertRuleOut, tags=TAGS, summary="Change an alert rule's threshold, window, cool-down or enabled")
def alert_rule_update_view(rule: str, body: AlertRuleUpdate):
    return alerts.update_rule(rule, body.model_dump(exclude_none=True), current_user.email)


@endpoint(bp, f"{API}/alerts/evaluate", methods=["POST"], permission="hardening.optimize", body=EmptyRequest,
          response=OptimizeAccepted, status=202, tags=TAGS, summary="Evaluate the alert rules now (a job)")
def alerts_evaluate_view(body: EmptyRequest):
    """The rules are evaluated every ALERT_INTERVAL seconds anyway; this runs one evaluation at once."""
    return {"job_id": alerts.enqueue_evaluation(force=True).id}
