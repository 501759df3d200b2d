"""Communication: templates (with the built-in catalog for platform events), the mail and SMS queue, batches,
delivery reports, tracking, preferences and the member's preference center, suppressions, history, their pages.

Other features use it only through (tests/test_layout.py's ALLOWED lists exactly these):
- `notify(event, user_id=None, email=None, data=None, event_id=None) -> dict` (here; bindings.py): send the template
  bound to a platform event, e.g. "submission.approved", "submission.rejected", "volunteer.approved",
  "volunteer.declined" (data: "title", "reason", "url", "opportunity"; see catalog.py for each key's variables);
- sending.py: `create_batch`, `batch_status`, `deliverability` (engagement's campaigns, platform's event mail),
  `send_email` (hardening's alerts);
- email_templates.py: `find_template`, `sendable_templates` (engagement), `ensure_template` (hardening);
- member_data.py: `export_member`, `erase_member` (engagement's data-rights requests).

A send enters at api.py (send-email, batch-send, send-sms, notify) or pages.py and becomes a queue document
(sending.py, whose `send_requested`, `batch_requested`, `send_test`, `retry_email` also audit an admin's own
sends; sms.py; the queue's contract — statuses, job, retry — in queue.py); the worker's job (jobs.deliver →
delivery.py, with handover.py's exactly-once SMTP hand-over) sends it. What happens after the hand-over comes in
through hooks.py (provider webhooks) and bounces.py (the bounce mailbox), applied by delivery_status.py; opens
and clicks through public.py and tracking.py; rates in stats.py. Preferences, bindings and suppressions hold their
own rules (prefs.py, bindings.py, suppressions.py). Stored in email_templates (+ versions), email_layouts,
notification_bindings, email_queue (+ email_claims, the worker's holds), email_batches, email_tracking,
suppressions, notification_preferences, notification_history (models.py). Uses no other feature.
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
    from console.blueprints.communication import api, hooks, pages, public  # noqa: F401  (routes)
    from console.blueprints.communication.catalog import install as install_catalog
    from console.blueprints.communication.demo import seed_communication
    from console.blueprints.communication.jobs import start_reconcile_schedule

    app.register_blueprint(bp)
    app.register_blueprint(public.bp)
    app.register_blueprint(hooks.bp)
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
