"""Go-live hardening: the System page, its JSON twins and the optimize tasks."""

from flask import Blueprint

from console.maintenance import add_task
from console.ui import NavItem, Widget, add_nav, add_widget

bp = Blueprint("hardening", __name__)
API = "/api/phase14/hardening"


def init_app(app) -> None:
    from console.blueprints.hardening import api, pages  # noqa: F401  (routes)
    from console.blueprints.hardening.optimize import TASKS

    app.register_blueprint(bp)
    add_nav(app, NavItem("System", "hardening.index", "hardening.view", "System", "⚙", order=10))
    add_widget(app, Widget("System health", "hardening.widget_health", "hardening.view", order=90))
    for task in TASKS:
        add_task(app, task)
