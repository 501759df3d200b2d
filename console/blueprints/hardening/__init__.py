"""Go-live hardening: the System page, its JSON twins, /metrics, alerts, error groups and the optimize tasks.

Uses communication through `email_templates.create_template` and `sending.send_email` (alert mail) and reads
its `email_queue` collection for counts (metrics, alert rules)."""

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
