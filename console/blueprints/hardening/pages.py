"""The System page and its htmx fragments."""

import json

from flask import Response, current_app, render_template, request
from flask_login import current_user

from console import maintenance
from console.blueprints.hardening import (
    alerts,
    bp,
    checklist,
    errors,
    health,
    metrics,
    optimize,
    performance,
    security_audit,
    slow_queries,
)
from console.blueprints.hardening.schemas import ErrorAnalysisQuery, HoursQuery
from console.errors import ApiError
from console.security import has_permission, permission_required, public
from console.ui import plot_text
from console.web import query_args

CHART_ENDPOINTS = 15


@bp.route("/system")
@permission_required("hardening.view")
def index():
    return render_template("hardening/index.html", tasks=maintenance.tasks().values(),
                           can_optimize=has_permission("hardening.optimize"))


@bp.route("/metrics")
@public
def prometheus_metrics():
    """Prometheus text format; its own guard: METRICS_TOKEN (bearer) or METRICS_ALLOW (404 when neither set)."""
    allowed, status = metrics.access_allowed(request.headers.get("Authorization", ""), request.remote_addr)
    if not allowed:
        headers = {"WWW-Authenticate": 'Bearer realm="metrics"'} if status == 401 else {}
        return Response("Not found\n" if status == 404 else "Unauthorized\n", status, headers,
                        mimetype="text/plain")
    body, content_type = metrics.exposition()
    return Response(body, 200, {"Cache-Control": "no-store"}, content_type=content_type)


@bp.route("/system/health")
@permission_required("hardening.view")
def health_fragment():
    return render_template("hardening/_health.html", report=health.health_comprehensive())


@bp.route("/system/widgets/health")
@permission_required("hardening.view")
def widget_health():
    return render_template("hardening/_widget_health.html", report=health.health_comprehensive())


@bp.route("/system/alerts")
@permission_required("hardening.view")
def alerts_fragment():
    return _alerts_fragment()


@bp.route("/system/alerts/firing")
@permission_required("hardening.view")
def alerts_firing_fragment():
    return render_template("hardening/_alerts_firing.html", rules=alerts.firing())


@bp.route("/system/alerts/<rule>", methods=["POST"])
@permission_required("hardening.optimize")
def alert_rule_update(rule: str):
    """The rule's row form: threshold, window and cool-down (minutes), enabled."""
    from pydantic import ValidationError

    from console.blueprints.hardening.schemas import AlertRuleUpdate
    from console.validation import pydantic_errors

    form = request.form
    try:
        changes = AlertRuleUpdate.model_validate({
            "enabled": form.get("enabled") == "1",
            **{key: form.get(key) for key in ("threshold", "window_minutes", "cooldown_minutes") if form.get(key)}})
    except ValidationError as error:
        raise ApiError(422, "The alert rule was not changed.", pydantic_errors(error)) from None
    alerts.update_rule(rule, changes.model_dump(exclude_none=True), current_user.email)
    return _alerts_fragment(saved=rule)


def _alerts_fragment(saved: str | None = None):
    return render_template("hardening/_alerts.html", rules=alerts.rules(), history=alerts.history(20),
                           can_optimize=has_permission("hardening.optimize"), saved=saved)


@bp.route("/system/widgets/alerts")
@permission_required("hardening.view")
def widget_alerts():
    return render_template("hardening/_widget_alerts.html", firing=alerts.firing())


@bp.route("/system/audit")
@permission_required("hardening.view")
def audit_fragment():
    return render_template("hardening/_audit.html", audit=security_audit.security_audit())


@bp.route("/system/checklist")
@permission_required("hardening.view")
def checklist_fragment():
    return render_template("hardening/_checklist.html", checklist=checklist.production_checklist())


@bp.route("/system/errors")
@permission_required("hardening.view")
def errors_fragment():
    return _errors_fragment()


@bp.route("/system/errors/<fingerprint>", methods=["POST"])
@permission_required("hardening.optimize")
def error_group_action(fingerprint: str):
    """Resolve, ignore (`minutes`, or for good), reopen; retry or discard a failed-job group's jobs."""
    action = request.form.get("action", "")
    if action in ("retry", "discard"):
        errors.job_action(fingerprint, action)
    elif action in ("resolve", "ignore", "reopen"):
        minutes = request.form.get("minutes", "")
        errors.change_state(fingerprint, action, current_user.email,
                            min(int(minutes), 525_600) if minutes.isdigit() and int(minutes) > 0 else None)
    else:
        raise ApiError(422, f"Unknown action {action!r}.")
    return _errors_fragment()


def _errors_fragment():
    query = query_args(ErrorAnalysisQuery)
    return render_template("hardening/_errors.html", analysis=errors.error_analysis(query.hours, state=query.state),
                           trend_figure=trend_figure(errors.error_trend(query.hours)["series"]),
                           can_optimize=has_permission("hardening.optimize"))


@bp.route("/system/performance")
@permission_required("hardening.view")
def performance_fragment():
    review = performance.performance_review(query_args(HoursQuery).hours)
    return render_template("hardening/_performance.html", review=review, figure=p95_figure(review["endpoints"]))


@bp.route("/system/slow-queries")
@permission_required("hardening.view")
def slow_queries_fragment():
    threshold = float(current_app.config["SLOW_QUERY_MS"])
    report = slow_queries.slow_queries(threshold, limit=20)
    for item in report["items"]:
        item["pretty"] = json.dumps(item["command"], indent=1, default=str)  # autoescaped in the template
    return render_template("hardening/_slow_queries.html", report=report)


@bp.route("/system/optimize", methods=["POST"])
@permission_required("hardening.optimize")
def optimize_start():
    """One task per button; destructive ones were confirmed in the browser (hx-confirm)."""
    name = request.form.get("task", "")
    task = maintenance.tasks().get(name)
    if task is None:
        raise ApiError(422, f"Unknown task {name!r}.")
    if task.destructive and request.form.get("confirm") != "1":
        raise ApiError(422, f"{task.title}: confirm before running a destructive task.")
    job = optimize.enqueue([name], {}, current_user.email, confirmed=task.destructive)
    return render_template("hardening/_job.html", job=optimize.job_status(job.id), task=task)


@bp.route("/system/optimize/<job_id>")
@permission_required("hardening.optimize")
def optimize_job_fragment(job_id: str):
    status = optimize.job_status(job_id) if len(job_id) <= 64 else None
    if status is None:
        raise ApiError(404, "This job is unknown or has expired.")
    tasks = status["tasks"]
    return render_template("hardening/_job.html", job=status, task=maintenance.tasks().get(tasks[0]) if tasks else None)


def p95_figure(endpoints: list[dict]) -> dict:
    """A horizontal bar chart of p95 latency per endpoint (the slowest first, at the top)."""
    rows = [e for e in endpoints if e["p95_ms"] is not None][:CHART_ENDPOINTS][::-1]
    labels = [plot_text(f"{e['method']} {e['endpoint']}") for e in rows]
    return {
        "data": [{"type": "bar", "orientation": "h", "x": [e["p95_ms"] for e in rows], "y": labels,
                  "name": "p95", "marker": {"color": "#4f46e5"},
                  "customdata": [[e["p50_ms"], e["p99_ms"], e["count"]] for e in rows],
                  "hovertemplate": "%{y}<br>p95 %{x} ms<br>p50 %{customdata[0]} ms · p99 %{customdata[1]} ms"
                                   "<br>%{customdata[2]} requests<extra></extra>"}],
        "layout": {"margin": {"l": 280, "r": 24, "t": 8, "b": 40}, "xaxis": {"title": {"text": "p95 (ms)"}},
                   "yaxis": {"automargin": True}, "height": max(220, 28 * len(rows) + 80)},
    }


def trend_figure(series: list[dict]) -> dict:
    """Error rate per hour (line, left axis) and failed job runs per hour (bars, right axis)."""
    hours = [point["hour"].strftime("%Y-%m-%dT%H:00:00Z") for point in series]
    return {
        "data": [
            {"type": "scatter", "mode": "lines+markers", "name": "error rate %", "x": hours,
             "y": [round(p["error_rate"] * 100, 2) if p["error_rate"] is not None else None for p in series],
             "customdata": [[p["errors"], p["requests"]] for p in series], "line": {"color": "#dc2626"},
             "hovertemplate": "%{x}<br>%{y}% (%{customdata[0]} of %{customdata[1]} requests)<extra></extra>"},
            {"type": "bar", "name": "failed jobs", "x": hours, "y": [p["job_failures"] for p in series],
             "yaxis": "y2", "marker": {"color": "#f59e0b"}, "opacity": 0.6},
        ],
        "layout": {"margin": {"l": 48, "r": 48, "t": 8, "b": 36}, "height": 220, "showlegend": True,
                   "legend": {"orientation": "h", "y": 1.15}, "yaxis": {"title": {"text": "error rate %"},
                                                                        "rangemode": "tozero"},
                   "yaxis2": {"overlaying": "y", "side": "right", "rangemode": "tozero", "showgrid": False,
                              "tickformat": ",d", "dtick": 1 if max((p["job_failures"] for p in series), default=0) < 6
                              else None,
                              "title": {"text": "failed jobs"}}},
    }
