"""Content & moderation: dashboard widgets over the platform's own collections, and their demo data."""

from flask import Blueprint

from console.cli import add_demo_seeder
from console.ui import Widget, add_widget

bp = Blueprint("platform", __name__, url_prefix="/widgets/platform")


def init_app(app) -> None:
    from console.blueprints.platform import pages  # noqa: F401  (routes)
    from console.blueprints.platform.demo import seed_members
    from console.blueprints.platform.summaries import seed_platform_demo

    app.register_blueprint(bp)
    add_widget(app, Widget("Submissions", "platform.widget_submissions", "submissions.review", order=30))
    add_widget(app, Widget("Volunteers", "platform.widget_volunteers", "volunteers.manage", order=31))
    add_widget(app, Widget("Blogs", "platform.widget_blogs", "blogs.edit", order=32))
    add_widget(app, Widget("Events", "platform.widget_events", "events.manage", order=33))
    add_widget(app, Widget("Email templates", "platform.widget_templates", "templates.view", order=34))
    add_demo_seeder(app, "members", seed_members, order=0)
    add_demo_seeder(app, "platform", seed_platform_demo, order=50)
