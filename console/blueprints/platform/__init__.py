"""Content & moderation over the platform's own collections: the moderation queue, blog posts and events,
dashboard widgets and their demo data.

Enters at api.py (moderation JSON), moderation_pages.py, content_pages.py and pages.py (widgets). The rules:
moderation.py (decisions as compare-and-set on `version`, members told through communication) and content.py
(create, edit, publish, schedule). Stored in the platform's `submissions`, `volunteers`, `blogs`, `events`.

Uses communication only through `notify` (moderation.notify_member) and `sending.create_batch` (an event's
attendees, content_pages.email_attendees).
"""

from flask import Blueprint

from console.cli import add_demo_seeder
from console.ui import NavItem, Widget, add_nav, add_widget

bp = Blueprint("platform", __name__, url_prefix="/widgets/platform")
moderation_bp = Blueprint("moderation", __name__)


def init_app(app) -> None:
    from console.blueprints.platform import api, content_pages, moderation_pages, pages  # noqa: F401  (routes)
    from console.blueprints.platform.demo import seed_members
    from console.blueprints.platform.jobs import start_publish_schedule
    from console.blueprints.platform.summaries import seed_platform_demo

    app.register_blueprint(bp)
    app.register_blueprint(moderation_bp)
    add_nav(app, NavItem("Submissions", "moderation.submissions_page", "submissions.review", "Content", "✓",
                         order=5))
    add_nav(app, NavItem("Volunteers", "moderation.volunteers_page", "volunteers.manage", "Content", "♥", order=6))
    add_nav(app, NavItem("Blog posts", "moderation.blogs_list", "blogs.edit", "Content", "✎", order=7))
    add_nav(app, NavItem("Events", "moderation.events_list", "events.manage", "Content", "◷", order=8))
    add_widget(app, Widget("Moderation queue", "platform.widget_submissions", "submissions.review", order=1, width=3))
    add_widget(app, Widget("Content pipeline", "platform.widget_content", "content.manage", order=2, width=3))
    add_widget(app, Widget("Volunteers", "platform.widget_volunteers", "volunteers.manage", order=31))
    add_widget(app, Widget("Blogs", "platform.widget_blogs", "blogs.edit", order=32))
    add_widget(app, Widget("Events", "platform.widget_events", "events.manage", order=33))
    add_widget(app, Widget("Email templates", "platform.widget_templates", "templates.view", order=34))
    add_demo_seeder(app, "members", seed_members, order=0)
    add_demo_seeder(app, "platform", seed_platform_demo, order=50)
    app.extensions.setdefault("worker_startup", []).append(start_publish_schedule)
