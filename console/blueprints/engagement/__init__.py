"""Engagement & retention: activity tracking, metrics, cohorts, lifecycle, churn risk and campaigns.

Enters at api.py (/api/phase14/engagement…: track-activity with the ingest key, the reports, campaigns) and
pages.py (the Engagement pages and fragments). Events → `ingest` (dedupe, members; with ENGAGEMENT_FOLD=worker the
worker's `fold` does the rest) → `rollups` (one document per member per local day) → `aggregates` (per day: exact
member sets as Roaring bitmaps and counters) → `frozen` (answers about past days, kept until a late event) →
`metrics`, `retention`, `lifecycle`, `inactive` read a few documents per period shown plus today's; `churn`,
`campaigns`, `privacy` hold their own rules. Day, week and month boundaries follow ANALYTICS_TIMEZONE (`periods`);
`flask rebuild-analytics` rebuilds it all. Stored in
`user_activities`, `activity_pending`, `activity_rollups`, `activity_days`, `activity_frozen`, `engagement_metrics`,
`member_ordinals`,
`campaigns`, `churn_scores`, `churn_runs` (models.py) and the platform's `users` (console.members).

Uses communication only through `sending.create_batch`, `sending.batch_status`, `sending.deliverability`
(campaigns), `email_templates.find_template`, `email_templates.sendable_templates` (the campaign's template) and
`member_data.export_member`, `member_data.erase_member` (privacy).
For other features: `aggregates.forget_member(user_id)` takes an erased member out of every aggregate (and deletes
their rollups); `lifecycle.member_lifecycle`, `metrics.metrics`, `retention.retention` and
`campaigns.recent_campaign_reports` (core's reports card) are the read entry points.
"""

from flask import Blueprint

from console.cli import add_demo_seeder, add_migration
from console.maintenance import add_cache, add_health_probe, add_task
from console.ui import MemberPanel, NavItem, Widget, add_member_panel, add_nav, add_widget

bp = Blueprint("engagement", __name__)


def init_app(app) -> None:
    from console.blueprints.engagement import api, drilldown_pages, pages  # noqa: F401  (routes)
    from console.blueprints.engagement.demo import seed_activity, seed_churn_scores
    from console.blueprints.engagement.fold import check_backlog, start_folding
    from console.blueprints.engagement.ingest import migrate_day_aggregates, migrate_rollup_ids
    from console.blueprints.engagement.jobs import start_daily_scoring, start_warming
    from console.blueprints.engagement.maintenance import CACHES, TASKS, rebuild_command
    from console.blueprints.engagement.privacy import PURGE_TASK, grant_erase_to_admins, start_retention_schedule

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
    app.extensions.setdefault("worker_startup", []).append(start_folding)
    app.extensions.setdefault("worker_startup", []).append(start_warming)
    add_health_probe(app, "activity_folding", check_backlog)
    add_migration(app, "rollup ids", migrate_rollup_ids)
    add_migration(app, "members.erase for admins", grant_erase_to_admins)
    add_migration(app, "day aggregates", migrate_day_aggregates)
    app.cli.add_command(rebuild_command)
    for task in TASKS:
        add_task(app, task)
    add_task(app, PURGE_TASK)
    add_member_panel(app, MemberPanel("Data rights", "engagement.member_privacy_panel", "members.erase", order=90))
    app.extensions.setdefault("worker_startup", []).append(start_retention_schedule)
    for cache in CACHES:
        add_cache(app, cache)
