"""Communication: templates, the mail queue, batches, tracking, preferences, history and their console pages.

A send enters at api.py (send-email, batch-send, send-sms) and becomes a queue document (sending.py, sms.py);
the worker's job (jobs.deliver → delivery.py, with handover.py's exactly-once SMTP hand-over) sends it.
What happens after the hand-over comes in through hooks.py (provider webhooks) and bounces.py (the bounce
mailbox), both applied by delivery_status.py; opens and clicks through public.py and tracking.py; rates in
stats.py. Engagement's campaigns use `sending.create_batch`, `batch_status` and `deliverability`.
"""

from flask import Blueprint

from console.cli import add_demo_seeder
from console.ui import MemberPanel, NavItem, Widget, add_member_panel, add_nav, add_widget

bp = Blueprint("communication", __name__)


def init_app(app) -> None:
    from console.blueprints.communication import api, hooks, pages, public  # noqa: F401  (routes)
    from console.blueprints.communication.demo import seed_communication
    from console.blueprints.communication.jobs import start_reconcile_schedule

    app.register_blueprint(bp)
    app.register_blueprint(public.bp)
    app.register_blueprint(hooks.bp)
    add_nav(app, NavItem("Email templates", "communication.templates_page", "templates.view", "Communication",
                         "✉", order=10))
    add_nav(app, NavItem("Mail queue", "communication.queue_page", "communication.view", "Communication", "⇶",
                         order=20))
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
