"""The System page and its htmx fragments."""

import json

from flask import current_app, render_template, request
from flask_login import current_user

from console import maintenance
from console.audit import record
from console.blueprints.hardening import (
    bp,
    checklist,
    errors,
    health,
    optimize,
    performance,
    security_audit,
    slow_queries,
)
from console.errors import ApiError
from console.security import has_permission, permission_required
from console.ui import plot_text

CHART_ENDPOINTS = 15


@bp.route("/system")
@permission_required("hardening.view")
def index():
    return render_template("hardening/index.html", tasks=maintenance.tasks().values(),
                           can_optimize=has_permission("hardening.optimize"))


@bp.route("/system/health")
@permission_required("hardening.view")
def health_fragment():
    return render_template("hardening/_health.html", report=health.health_comprehensive())


@bp.route("/system/widgets/health")
@permission_required("hardening.view")
def widget_health():
    return render_template("hardening/_widget_health.html", report=health.health_comprehensive())


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
    return render_template("hardening/_errors.html", analysis=errors.error_analysis(_hours()))


@bp.route("/system/performance")
@permission_required("hardening.view")
def performance_fragment():
    review = performance.performance_review(_hours())
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
    job = optimize.enqueue([name], {}, current_user.email)
    record("hardening.optimize", job.id, after={"tasks": [name]}, confirm=task.destructive)
    return render_template("hardening/_job.html", job=optimize.job_status(job.id), task=task)


@bp.route("/system/optimize/<job_id>")
@permission_required("hardening.optimize")
def optimize_job_fragment(job_id: str):
    status = optimize.job_status(job_id) if len(job_id) <= 64 else None
    if status is None:
        raise ApiError(404, "This job is unknown or has expired.")
    tasks = status["tasks"]
    return render_template("hardening/_job.html", job=status, task=maintenance.tasks().get(tasks[0]) if tasks else None)


def _hours() -> int:
    try:
        return min(max(int(request.args.get("hours", 24)), 1), 720)
    except ValueError:
        return 24


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
