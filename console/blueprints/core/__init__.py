"""The shell: dashboard, probes, API documentation, vendored assets.

Enters at pages.py (/, /healthz, /readyz, /api/openapi.json, /api/docs); overview.py has the landing page's
numbers, reports.py the analyst's reports card. Stores nothing of its own; shows the widgets other features
register (console.ui). Uses engagement only through `retention.retention` and `campaigns.recent_campaign_reports`
(the reports card).
"""

from flask import Blueprint

from console.ui import NavItem, Widget, add_nav, add_widget

bp = Blueprint("core", __name__)


def init_app(app) -> None:
    from console.blueprints.core import pages  # noqa: F401  (routes)

    app.register_blueprint(bp)
    add_nav(app, NavItem("Dashboard", "core.dashboard", None, "Overview", "◧", order=0))
    add_nav(app, NavItem("API docs", "core.api_docs", None, "System", "⌘", order=90))
    add_widget(app, Widget("Members", "core.widget_members", "analytics.view", order=10))
    add_widget(app, Widget("Reports", "core.widget_reports", "analytics.view", order=25, width=3))
    add_widget(app, Widget("Admins", "core.widget_admins", "roles.view", order=80))

    @app.context_processor
    def _shell():
        from console.security import has_permission
        from console.ui import visible_nav

        return {"visible_nav": visible_nav, "has_permission": has_permission}
