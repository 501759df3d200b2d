"""Dashboard, liveness/readiness, OpenAPI and its human-readable page."""

from pathlib import Path

import plotly
from flask import current_app, jsonify, render_template, send_from_directory

from console.blueprints.core import bp, overview
from console.openapi import build_spec
from console.security import login_only, permission_required, public
from console.ui import visible_widgets

PLOTLY_DIR = Path(plotly.__file__).parent / "package_data"


@bp.route("/")
@login_only
def dashboard():
    return render_template("core/dashboard.html", widgets=visible_widgets())


@bp.route("/widgets/members")
@permission_required("analytics.view")
def widget_members():
    return render_template("core/_widget_members.html", summary=overview.member_summary())


@bp.route("/widgets/reports")
@permission_required("analytics.view")
def widget_reports():
    """Retention, campaign results and CSV exports, read-only: the analyst's way into the reports."""
    from console.blueprints.core.reports import reports_summary

    return render_template("core/_widget_reports.html", r=reports_summary())


@bp.route("/widgets/admins")
@permission_required("roles.view")
def widget_admins():
    return render_template("core/_widget_admins.html", summary=overview.admin_summary())


@bp.route("/healthz")
@public
def healthz():
    """Liveness: the process answers. Touches no dependency."""
    return jsonify({"status": "ok"})


@bp.route("/readyz")
@public
def readyz():
    """Readiness: MongoDB and Redis answer. Says which is down, nothing more."""
    from console.db import get_db
    from console.queues import get_redis

    checks = {}
    try:
        get_db().command("ping")
        checks["mongodb"] = "up"
    except Exception:  # any failure means not ready; details stay internal
        checks["mongodb"] = "down"
    try:
        get_redis().ping()
        checks["redis"] = "up"
    except Exception:
        checks["redis"] = "down"
    ready = all(value == "up" for value in checks.values())
    return jsonify({"status": "ready" if ready else "unavailable", "checks": checks}), 200 if ready else 503


@bp.route("/api/openapi.json")
@public
def openapi_json():
    return jsonify(build_spec())


@bp.route("/api/docs")
@public
def api_docs():
    return render_template("core/api_docs.html", spec=build_spec())


@bp.route("/vendor/plotly.min.js")
@public
def plotly_js():
    """plotly.js from the installed plotly package, so no CDN is ever involved."""
    return send_from_directory(PLOTLY_DIR, "plotly.min.js", mimetype="text/javascript",
                               max_age=current_app.get_send_file_max_age("plotly.min.js") or 86400)
