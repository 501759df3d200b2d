"""Engagement & retention: activity tracking, metrics, cohorts, lifecycle, churn risk and campaigns."""

from flask import Blueprint

from console.cli import add_demo_seeder, add_migration
from console.maintenance import add_cache, add_task
from console.ui import NavItem, Widget, add_nav, add_widget

bp = Blueprint("engagement", __name__)


def init_app(app) -> None:
    from console.blueprints.engagement import api, pages  # noqa: F401  (routes)
    from console.blueprints.engagement.demo import seed_activity, seed_churn_scores
    from console.blueprints.engagement.ingest import migrate_rollup_ids
    from console.blueprints.engagement.jobs import start_daily_scoring
    from console.blueprints.engagement.maintenance import CACHES, TASKS

    app.register_blueprint(bp)
    for label, endpoint, icon, order in (
        ("Overview", "engagement.overview", "◔", 10), ("Retention", "engagement.retention_page", "▦", 20),
        ("Lifecycle", "engagement.lifecycle_page", "▥", 30), ("Members", "engagement.members", "☺", 40),
        ("At risk", "engagement.at_risk", "⚠", 50), ("Inactive", "engagement.inactive", "☾", 60),
    ):
        add_nav(app, NavItem(label, endpoint, "analytics.view", "Engagement", icon, order))
    add_nav(app, NavItem("Campaigns", "engagement.campaigns", "analytics.view", "Engagement", "✉", 70))
    add_widget(app, Widget("Engagement", "engagement.widget", "analytics.view", order=20, width=2))
    add_demo_seeder(app, "activity", seed_activity, order=10)
    add_demo_seeder(app, "churn scores", seed_churn_scores, order=11)
    app.extensions.setdefault("worker_startup", []).append(start_daily_scoring)
    add_migration(app, "rollup ids", migrate_rollup_ids)
    for task in TASKS:
        add_task(app, task)
    for cache in CACHES:
        add_cache(app, cache)
