"""Communication: templates (with the built-in catalog for platform events), the mail queue, batches, tracking,
preferences and the member's preference center, suppressions, history and their console pages.

Other features use it through:
- `notify(event, user_id=None, email=None, data=None, event_id=None) -> dict` (here; bindings.py): send the template
  bound to a platform event, e.g. "submission.approved", "submission.rejected", "volunteer.approved",
  "volunteer.declined" (data: "title", "reason", "url", "opportunity"; see catalog.py for each key's variables);
- `create_batch`, `batch_status`, `deliverability` (sending.py): engagement's campaigns.

A request enters at api.py / pages.py / public.py (signed links from emails); the rules live in sending.py,
prefs.py, bindings.py and suppressions.py; the queue's contract (statuses, job, retry) in queue.py; the worker's
side in jobs.py and delivery.py. Data: email_templates (+ versions), email_layouts, notification_bindings,
email_queue, email_batches, email_tracking, suppressions, notification_preferences, notification_history.
"""

from flask import Blueprint

from console.cli import add_demo_seeder, add_migration
from console.ui import MemberPanel, NavItem, Widget, add_member_panel, add_nav, add_widget

bp = Blueprint("communication", __name__)


def notify(event: str, user_id: str | None = None, email: str | None = None, data: dict | None = None,
           event_id: str | None = None) -> dict:
    """Send the template bound to a platform event (see bindings.notify)."""
    from console.blueprints.communication.bindings import notify as send_for_event

    return send_for_event(event, user_id=user_id, email=email, data=data, event_id=event_id)


def init_app(app) -> None:
    from console.blueprints.communication import api, pages, public  # noqa: F401  (routes)
    from console.blueprints.communication.catalog import install as install_catalog
    from console.blueprints.communication.demo import seed_communication
    from console.blueprints.communication.jobs import start_reconcile_schedule

    app.register_blueprint(bp)
    app.register_blueprint(public.bp)
    add_migration(app, "communication.catalog", install_catalog)
    add_nav(app, NavItem("Email templates", "communication.templates_page", "templates.view", "Communication",
                         "✉", order=10))
    add_nav(app, NavItem("Event bindings", "communication.bindings_page", "templates.view", "Communication", "⇄",
                         order=15))
    add_nav(app, NavItem("Mail queue", "communication.queue_page", "communication.view", "Communication", "⇶",
                         order=20))
    add_nav(app, NavItem("Suppressions", "communication.suppressions_page", "communication.view", "Communication",
                         "⊘", order=30))
    if app.config.get("MAILBOX_DIR"):
        add_nav(app, NavItem("Mailbox", "communication.mailbox_page", "communication.view", "Communication", "☐",
                             order=40))
    add_widget(app, Widget("Mail queue", "communication.widget_queue", "communication.view", order=30))
    add_member_panel(app, MemberPanel("Notification preferences", "communication.member_prefs_panel",
                                      "communication.view", order=40))
    add_member_panel(app, MemberPanel("Notification history", "communication.member_history_panel",
                                      "communication.view", order=41))
    app.extensions.setdefault("worker_startup", []).append(start_reconcile_schedule)
    add_demo_seeder(app, "communication", seed_communication, order=40)
