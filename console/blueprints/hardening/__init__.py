"""Go-live hardening: the System page, its JSON twins, /metrics, alerts, error groups and the optimize tasks.

Enters at pages.py (the System page and fragments), api.py (/api/phase14/hardening…) and metrics.py (/metrics).
The rules live by topic: health.py, checklist.py, security_audit.py, performance.py, slow_queries.py, errors.py,
alerts.py (scheduled by jobs), optimize.py (the maintenance tasks every feature registers). Stored in
`alert_rules`, `alert_history`, `ops_settings` (models.py) and the kernel's telemetry collections.

Uses communication only through `email_templates.ensure_template` and `sending.send_email` (alert mail); it
reads the `email_queue` collection for counts (metrics, alert rules).
"""

from flask import Blueprint

from console.maintenance import add_task
from console.ui import NavItem, Widget, add_nav, add_widget

bp = Blueprint("hardening", __name__)
API = "/api/phase14/hardening"


def init_app(app) -> None:
    from console.blueprints.hardening import api, models, pages  # noqa: F401  (routes, documents)
    from console.blueprints.hardening.alerts import start_schedule
    from console.blueprints.hardening.cli import record_backup_command
    from console.blueprints.hardening.optimize import TASKS

    app.register_blueprint(bp)
    app.cli.add_command(record_backup_command)
    add_nav(app, NavItem("System", "hardening.index", "hardening.view", "System", "⚙", order=10))
    add_widget(app, Widget("Alerts", "hardening.widget_alerts", "hardening.view", order=89))
    add_widget(app, Widget("System health", "hardening.widget_health", "hardening.view", order=90))
    for task in TASKS:
        add_task(app, task)
    app.extensions.setdefault("worker_startup", []).append(start_schedule)
