"""Communication: templates and their versions, the durable mail queue, batches, tracking events,
suppressions, notification preferences and history."""

from __future__ import annotations

from mongoengine import (
    BooleanField,
    DateTimeField,
    DictField,
    Document,
    IntField,
    ListField,
    ObjectIdField,
    StringField,
)

from console.timeutil import utcnow


class EmailTemplate(Document):
    name = StringField(required=True, max_length=120)
    subject = StringField(required=True, max_length=500)
    html_body = StringField(required=True)
    text_body = StringField()
    category = StringField(required=True, max_length=40)
    description = StringField(max_length=1000)
    sample_data = DictField()
    variables = ListField(StringField())
    version = IntField(default=1)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    created_by = StringField()
    updated_by = StringField()
    key = StringField(max_length=80)  # stable name for code and bindings, e.g. "event.registered"
    declared = ListField(DictField())  # [{"name", "description", "required"}]: the variables a sender gives
    builtin = BooleanField(default=False)  # from the catalog (catalog.py): can be reset and disabled, not deleted
    builtin_revision = IntField()
    enabled = BooleanField(default=True)

    meta = {
        "collection": "email_templates",
        "indexes": [
            {"fields": ["name"], "unique": True},
            {"fields": ["key"], "unique": True, "sparse": True},
            ("category", "name"),
            "-updated_at",
        ],
    }


class EmailTemplateVersion(Document):
    """A previous state of a template, kept on every update."""

    template_id = ObjectIdField(required=True)
    version = IntField(required=True)
    name = StringField()
    subject = StringField()
    html_body = StringField()
    text_body = StringField()
    category = StringField()
    description = StringField()
    sample_data = DictField()
    declared = ListField(DictField())
    saved_at = DateTimeField(default=utcnow)
    saved_by = StringField()

    meta = {
        "collection": "email_template_versions",
        "indexes": [{"fields": ["template_id", "-version"], "unique": True}],
    }


class EmailQueue(Document):
    """One email: Mongo is the source of truth, RQ only the transport."""

    channel = StringField(default="email")  # email | sms (sms.py: same queue, same job)
    to_email = StringField()  # email
    to_phone = StringField()  # sms, E.164
    provider_message_id = StringField()  # sms: the provider's id for it
    user_id = StringField()
    template_id = ObjectIdField()
    template_name = StringField()
    template_version = IntField()
    subject = StringField()
    html_body = StringField()
    text_body = StringField()
    links = ListField(StringField())
    unsubscribe_url = StringField()
    priority = StringField(default="normal")
    category = StringField()
    status = StringField(required=True, default="queued")  # queued|sending|sent|deferred|failed|skipped
    reason = StringField()
    attempts = IntField(default=0)
    idempotency_key = StringField()
    batch_id = ObjectIdField()
    source = DictField()
    job_id = StringField()
    claim = StringField()
    lease_until = DateTimeField()
    message_id = StringField()
    send_at = DateTimeField()
    next_attempt_at = DateTimeField()
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    sent_at = DateTimeField()
    opens = IntField(default=0)
    clicks = IntField(default=0)
    first_opened_at = DateTimeField()
    created_by = StringField()
    # after the hand-over (delivery_status.py): delivered | bounced | complained
    delivered_at = DateTimeField()
    bounced_at = DateTimeField()
    bounce_type = StringField()  # hard | soft
    complained_at = DateTimeField()
    human_opens = IntField(default=0)
    human_clicks = IntField(default=0)
    unsubscribed_at = DateTimeField()

    meta = {
        "collection": "email_queue",
        "indexes": [
            # Few indexes on purpose: every status change rewrites each index that holds `status`.
            {"fields": ["idempotency_key"], "unique": True, "sparse": True},
            ("status", "-id"),
            ("batch_id", "status"),
            ("user_id", "-created_at"),
            ("template_id", "created_at"),  # stats per template; neither field changes after insert
        ],
    }


class EmailClaim(Document):
    """A worker's hold on one queue document while it sends it (delivery.py); its _id is the email's.

    Apart from email_queue on purpose: SecantusDB rewrites every index of a document on any update, so a claim
    written into email_queue (six indexes) cost as much as the outcome; here an insert and a delete on _id alone."""

    id = ObjectIdField(primary_key=True)
    token = StringField(required=True)
    lease_until = DateTimeField(required=True)

    meta = {"collection": "email_claims", "indexes": []}


class EmailBatch(Document):
    template_id = ObjectIdField()
    template_name = StringField()
    priority = StringField()
    category = StringField()
    total = IntField(default=0)
    queued = IntField(default=0)
    skipped = IntField(default=0)
    source = DictField()
    created_by = StringField()
    created_at = DateTimeField(default=utcnow)

    meta = {"collection": "email_batches", "indexes": ["-created_at"]}


class EmailTracking(Document):
    """Opens, clicks, unsubscribes, bounces and delivery reports: events, not statuses."""

    email_id = ObjectIdField(required=True)
    type = StringField(required=True)  # open|click|unsubscribe|bounce|delivered|bounced|complained
    at = DateTimeField(default=utcnow)
    link_index = IntField()
    url = StringField()
    detail = StringField()
    machine = StringField()  # opens and clicks not made by a person: why (privacy proxy, link scanner)
    user_agent = StringField()
    source = StringField()  # delivery reports: sendgrid | mailgun | generic | dsn
    event_key = StringField()  # delivery reports: the same key is processed once
    bounce_type = StringField()
    received_at = DateTimeField()

    meta = {"collection": "email_tracking",
            "indexes": [("email_id", "at"), ("type", "-at"),
                        {"fields": ["event_key"], "unique": True, "sparse": True}]}


class Suppression(Document):
    email = StringField(required=True, unique=True)
    reason = StringField()  # hard_bounce|unsubscribed|manual
    detail = StringField()
    email_id = ObjectIdField()
    created_at = DateTimeField(default=utcnow)
    created_by = StringField()

    meta = {"collection": "suppressions", "indexes": ["-created_at"]}


class NotificationPreference(Document):
    user_id = StringField(required=True, unique=True)
    channels = DictField()
    categories = DictField()
    quiet_hours = DictField()  # {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"}
    frequency_cap = DictField()  # {"max": 3, "period_hours": 24}
    updated_at = DateTimeField(default=utcnow)
    updated_by = StringField()

    meta = {"collection": "notification_preferences"}


class NotificationHistory(Document):
    """Every notification, sent or skipped."""

    user_id = StringField()
    recipient = StringField()
    channel = StringField(default="email")
    category = StringField()
    template_id = ObjectIdField()
    template = StringField()
    status = StringField()
    reason = StringField()
    email_id = ObjectIdField()
    created_at = DateTimeField(default=utcnow)
    counted = BooleanField(default=True)
    kind = StringField()  # "preference": a change the member (or an admin) made, not a notification

    meta = {"collection": "notification_history", "indexes": [("user_id", "-created_at"), "email_id"]}


class EmailLayout(Document):
    """The frame every email wears (header, footer with unsubscribe and preference links); one, editable once."""

    key = StringField(required=True, unique=True, default="default")
    html = StringField(required=True)
    text = StringField(required=True)
    version = IntField(default=1)
    builtin_revision = IntField()
    updated_at = DateTimeField(default=utcnow)
    updated_by = StringField()

    meta = {"collection": "email_layouts"}


class NotificationBinding(Document):
    """A platform event (e.g. "submission.approved") → the template it sends, its category and priority."""

    event = StringField(required=True, unique=True, max_length=80)
    template_key = StringField(required=True, max_length=80)
    category = StringField(max_length=40)  # None: the template's
    priority = StringField(default="normal")
    enabled = BooleanField(default=True)
    description = StringField(max_length=300)
    builtin = BooleanField(default=False)
    version = IntField(default=1)
    updated_at = DateTimeField(default=utcnow)
    updated_by = StringField()

    meta = {"collection": "notification_bindings"}
