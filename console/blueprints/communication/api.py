"""Communication JSON API (CONTRACT.md, "Communication")."""

from flask_login import current_user

from console.blueprints.communication import (
    bindings,
    bp,
    email_templates,
    layout,
    prefs,
    sending,
    sms,
    stats,
    suppressions,
)
from console.blueprints.communication.schemas import (
    BatchIn,
    BatchOut,
    BatchStatus,
    BindingIn,
    BindingList,
    BindingOut,
    HistoryOut,
    HistoryQuery,
    LayoutIn,
    LayoutOut,
    NotifyIn,
    NotifyOut,
    PreferencesIn,
    PreferencesOut,
    QueueOut,
    QueueQuery,
    SendEmailIn,
    SendEmailOut,
    SendSmsIn,
    SendSmsOut,
    StatsOut,
    StatsQuery,
    SuppressionIn,
    SuppressionList,
    SuppressionOut,
    SuppressionQuery,
    SuppressionRemoveQuery,
    TemplateEnabledIn,
    TemplateIn,
    TemplateList,
    TemplateOut,
    TemplateQuery,
    TemplateResetIn,
    TemplateUpdate,
    TrackingOut,
)
from console.http import endpoint, link
from console.pagination import paginate
from console.web import csv_response

PREFIX = "/api/phase14/communication"
TAGS = ["communication"]
_ID = "$response.body#/id"
# From a template just saved: read, edit (with its version for optimistic locking), delete, restore, send it.
TEMPLATE_LINKS = {
    "GetTemplate": link("communication_get_template_get", template_id=_ID),
    "UpdateTemplate": link("communication_update_template_put", {"version": "$response.body#/version"},
                           template_id=_ID),
    "DeleteTemplate": link("communication_delete_template_delete", template_id=_ID),
    "RestoreVersion": link("communication_restore_template_version_post", template_id=_ID,
                           version="$response.body#/versions/0/version"),
    "SendEmail": link("communication_send_email_post", {"template_id": _ID}),
    "BatchSend": link("communication_batch_send_post", {"template_id": _ID}),
    "TriggerCampaign": link("engagement_trigger_campaign_post", {"template_id": _ID}),
}


def _actor() -> str | None:
    return getattr(current_user, "email", None)


@endpoint(bp, f"{PREFIX}/templates", methods=["POST"], permission="templates.manage", body=TemplateIn,
          response=TemplateOut, status=201, tags=TAGS, summary="Create an email template",
          responses={409: "", 422: ""}, links=TEMPLATE_LINKS)
def create_template(body: TemplateIn):
    """Bad syntax or unsafe constructs answer 422 with the line. `variables` lists what the template uses."""
    template = email_templates.create_template(body.model_dump(), _actor())
    return email_templates.to_dict(template, with_versions=True)


@endpoint(bp, f"{PREFIX}/templates", permission="templates.view", query=TemplateQuery, response=TemplateList,
          tags=TAGS, summary="List email templates")
def list_templates(query: TemplateQuery):
    return paginate(email_templates.list_templates(query.category, query.q), query, sort_field="updated_at",
                    transform=email_templates.to_dict)


@endpoint(bp, f"{PREFIX}/templates/<template_id>", permission="templates.view", response=TemplateOut, tags=TAGS,
          summary="One template with its versions", responses={404: ""})
def get_template(template_id: str):
    return email_templates.to_dict(email_templates.get_template(template_id), with_versions=True)


@endpoint(bp, f"{PREFIX}/templates/<template_id>", methods=["PUT"], permission="templates.manage",
          body=TemplateUpdate, response=TemplateOut, tags=TAGS, summary="Update a template (keeps the old version)",
          responses={404: "", 409: "", 422: ""},
          links={**TEMPLATE_LINKS, "RestoreVersion": link("communication_restore_template_version_post",
                                                          template_id=_ID,
                                                          version="$response.body#/versions/1/version")})
def update_template(template_id: str, body: TemplateUpdate):
    """Send the `version` you edited for optimistic locking: a stale one answers 409."""
    data = body.model_dump(exclude={"version"})
    template = email_templates.update_template(template_id, data, body.version, _actor())
    return email_templates.to_dict(template, with_versions=True)


@endpoint(bp, f"{PREFIX}/templates/<template_id>", methods=["DELETE"], permission="templates.manage", status=204,
          tags=TAGS, summary="Delete a template", responses={404: "", 409: "A built-in template (disable it instead)"})
def delete_template(template_id: str):
    """Mail already queued keeps its rendered content."""
    email_templates.delete_template(template_id)
    return None


@endpoint(bp, f"{PREFIX}/templates/<template_id>/versions/<int:version>/restore", methods=["POST"],
          permission="templates.manage", response=TemplateOut, tags=TAGS, summary="Restore an old template version",
          responses={404: "", 409: ""}, links=TEMPLATE_LINKS)
def restore_template_version(template_id: str, version: int):
    """The old content becomes a new version; nothing is lost."""
    template = email_templates.restore_version(template_id, version, _actor())
    return email_templates.to_dict(template, with_versions=True)


@endpoint(bp, f"{PREFIX}/send-email", methods=["POST"], permission="communication.send", body=SendEmailIn,
          response=SendEmailOut, status=202, tags=TAGS, summary="Queue one email", responses={422: ""},
          links={"Tracking": link("communication_tracking_get", email_id="$response.body#/email_id"),
                 "Retry": link("communication_retry_email_post", email_id="$response.body#/email_id")})
def send_email(body: SendEmailIn):
    """Name the template by `template_id` or `template_key`. The same `idempotency_key` again answers with the
    first email's id and sends nothing new. A variable the template requires and `variables` lacks: 422 naming
    each."""
    return sending.send_requested(body.template_id, body.to.model_dump(exclude_none=True),
                                  template_key=body.template_key, variables=body.variables, priority=body.priority,
                                  category=body.category, idempotency_key=body.idempotency_key,
                                  send_at=body.send_at)


@endpoint(bp, f"{PREFIX}/email-queue", permission="communication.view", query=QueueQuery, response=QueueOut,
          tags=TAGS, summary="The mail queue with counts by status")
def email_queue(query: QueueQuery):
    page = sending.queue_page(query, status=query.status, priority=query.priority, batch_id=query.batch_id, q=query.q)
    return {"counts": sending.queue_counts(), **page}


@endpoint(bp, f"{PREFIX}/email-queue/<email_id>/retry", methods=["POST"], permission="communication.send",
          status=202, tags=TAGS, summary="Retry a failed email", responses={404: "", 409: ""})
def retry_email(email_id: str):
    return sending.retry_email(email_id)


@endpoint(bp, f"{PREFIX}/preferences/<user_id>", methods=["POST"], permission="communication.manage_preferences",
          body=PreferencesIn, response=PreferencesOut, tags=TAGS, summary="Set a member's notification preferences",
          responses={422: ""},
          links={"GetPreferences": link("communication_get_preferences_get", user_id="$response.body#/user_id"),
                 "History": link("communication_history_get", user_id="$response.body#/user_id")})
def set_preferences(user_id: str, body: PreferencesIn):
    """Channels and categories merge with what is stored; security notices cannot be turned off."""
    data = body.model_dump(exclude_unset=True)
    data["channels"] = {k: v for k, v in (data.get("channels") or {}).items() if v is not None}
    return prefs.save_preferences(user_id, data, _actor())


@endpoint(bp, f"{PREFIX}/preferences/<user_id>", permission="communication.view", response=PreferencesOut,
          tags=TAGS, summary="A member's notification preferences (defaults when none are stored)")
def get_preferences(user_id: str):
    return prefs.get_preferences(user_id)


@endpoint(bp, f"{PREFIX}/tracking/<email_id>", permission="communication.view", response=TrackingOut, tags=TAGS,
          summary="Status and events of one email", responses={404: ""})
def tracking(email_id: str):
    """Opens are approximate: mail privacy proxies fetch images on their own."""
    return sending.tracking(email_id)


@endpoint(bp, f"{PREFIX}/history/<user_id>", permission="communication.view", query=HistoryQuery,
          response=HistoryOut, tags=TAGS, summary="Every notification for a member, sent or skipped, newest first")
def history(user_id: str, query: HistoryQuery):
    page = paginate(sending.history_query(user_id, query.include_preferences), query, sort_field="created_at",
                    transform=sending.history_item)
    return {"user_id": user_id, **page}


@endpoint(bp, f"{PREFIX}/batch-send", methods=["POST"], permission="communication.send", body=BatchIn,
          response=BatchOut, status=202, tags=TAGS, summary="Send a template to up to 10,000 recipients",
          responses={422: ""}, max_body=8 * 1024 * 1024,
          links={"BatchStatus": link("communication_batch_get", batch_id="$response.body#/batch_id"),
                 "BatchQueue": link("communication_email_queue_get", batch_id="$response.body#/batch_id")})
def batch_send(body: BatchIn):
    """Every recipient is validated first (and every required variable, shared or per recipient); one bad
    recipient refuses the whole batch with per-item errors."""
    recipients = [r.model_dump(exclude_none=True) for r in body.recipients]
    return sending.batch_requested(body.template_id, recipients, template_key=body.template_key,
                                   variables=body.variables, priority=body.priority, category=body.category)


@endpoint(bp, f"{PREFIX}/batches/<batch_id>", permission="communication.send", response=BatchStatus, tags=TAGS,
          summary="Progress of a batch", responses={404: ""})
def batch(batch_id: str):
    return sending.batch_status(batch_id)


@endpoint(bp, f"{PREFIX}/stats", permission="communication.view", query=StatsQuery, response=StatsOut, tags=TAGS,
          summary="Sent, delivered, bounced, complained, human opens and clicks, unsubscribes", responses={422: ""})
def communication_stats(query: StatsQuery):
    """For one template, batch or campaign, optionally between `from` and `to` (when the emails were queued).
    Opens and clicks by privacy proxies and link scanners are in `machine`, not in the rates."""
    return stats.communication_stats(template_id=query.template_id, batch_id=query.batch_id,
                                     campaign_id=query.campaign_id, start=query.start, end=query.end)


@endpoint(bp, f"{PREFIX}/send-sms", methods=["POST"], permission="communication.send", body=SendSmsIn,
          response=SendSmsOut, status=202, tags=TAGS, summary="Queue one text message", responses={422: ""},
          links={"Tracking": link("communication_tracking_get", email_id="$response.body#/sms_id")})
def send_sms(body: SendSmsIn):
    """The same durable queue as mail (priority, retries, reconcile); the same `idempotency_key` again sends
    nothing new. Quiet hours defer the message to their end; a member who replied STOP is skipped."""
    return sms.queue_sms(body.to.model_dump(exclude_none=True), text=body.text, template_key=body.template_key,
                         template_id=body.template_id, variables=body.variables, category=body.category,
                         priority=body.priority, idempotency_key=body.idempotency_key, actor=_actor())


# --- catalog: enable/disable, reset, the shared layout -----------------------------------------------------

@endpoint(bp, f"{PREFIX}/templates/<template_id>/enabled", methods=["PUT"], permission="templates.manage",
          body=TemplateEnabledIn, response=TemplateOut, tags=TAGS, summary="Enable or disable a template",
          responses={404: ""})
def set_template_enabled(template_id: str, body: TemplateEnabledIn):
    """A disabled template refuses sends (422) and the events bound to it are skipped."""
    return email_templates.to_dict(email_templates.set_enabled(template_id, body.enabled, _actor()),
                                   with_versions=True)


@endpoint(bp, f"{PREFIX}/templates/<template_id>/reset", methods=["POST"], permission="templates.manage",
          body=TemplateResetIn, response=TemplateOut, tags=TAGS, summary="Reset a built-in template",
          responses={404: "", 409: ""})
def reset_template(template_id: str, body: TemplateResetIn):
    """The catalog's content becomes a new version; the edited versions stay in the history."""
    template = email_templates.reset_to_builtin(template_id, body.version, _actor())
    return email_templates.to_dict(template, with_versions=True)


def _layout_out(doc: dict) -> dict:
    return {k: doc.get(k) for k in ("html", "text", "version", "updated_at", "updated_by")}


@endpoint(bp, f"{PREFIX}/layout", permission="templates.view", response=LayoutOut, tags=TAGS,
          summary="The layout every email wears")
def get_layout():
    return _layout_out(layout.get_layout())


@endpoint(bp, f"{PREFIX}/layout", methods=["PUT"], permission="templates.manage", body=LayoutIn,
          response=LayoutOut, tags=TAGS, summary="Change the layout every email wears", responses={409: "", 422: ""})
def put_layout(body: LayoutIn):
    """The HTML must hold {{ content }}, {{ unsubscribe_url }} and {{ preferences_url }}; the text part
    {{ text }}, {{ unsubscribe_url }} and {{ preferences_url }}."""
    return _layout_out(layout.save_layout(body.html, body.text, body.version, _actor()))


# --- platform events -----------------------------------------------------------------------------------------

@endpoint(bp, f"{PREFIX}/notify", methods=["POST"], permission="communication.send", body=NotifyIn,
          response=NotifyOut, status=202, tags=TAGS, summary="Send the template bound to a platform event",
          responses={422: ""},
          links={"Tracking": link("communication_tracking_get", email_id="$response.body#/email_id")})
def notify_event(body: NotifyIn):
    """→ {"email_id", "status"} or {"skipped": reason} (binding or template off, opted out, suppressed,
    frequency capped). The same `event_id` for the same event and recipient sends once."""
    return bindings.notify(body.event, user_id=body.user_id, email=body.email, data=body.data, event_id=body.event_id)


@endpoint(bp, f"{PREFIX}/bindings", permission="templates.view", response=BindingList, tags=TAGS,
          summary="Platform events and the templates they send")
def list_bindings():
    return {"items": bindings.list_bindings()}


@endpoint(bp, f"{PREFIX}/bindings/<event>", permission="templates.view", response=BindingOut, tags=TAGS,
          summary="One event's binding", responses={404: ""})
def get_binding(event: str):
    return bindings.get_binding(event)


@endpoint(bp, f"{PREFIX}/bindings/<event>", methods=["PUT"], permission="templates.manage", body=BindingIn,
          response=BindingOut, tags=TAGS, summary="Bind an event to a template, or change its binding",
          responses={409: "", 422: ""})
def put_binding(event: str, body: BindingIn):
    """Creates the binding when the event has none (then `template_key` is required)."""
    return bindings.save_binding(event, body.model_dump(exclude_unset=True), _actor())


# --- suppressions --------------------------------------------------------------------------------------------

@endpoint(bp, f"{PREFIX}/suppressions", permission="communication.view", query=SuppressionQuery,
          response=SuppressionList, tags=TAGS, summary="Addresses no email goes to", alt_media_types=("text/csv",))
def list_suppressions(query: SuppressionQuery):
    """`format=csv` downloads every match."""
    if query.format == "csv":
        return csv_response("suppressions.csv", suppressions.CSV_COLUMNS, suppressions.csv_rows(query.q, query.reason))
    return suppressions.list_page(query, query.q, query.reason)


@endpoint(bp, f"{PREFIX}/suppressions", methods=["POST"], permission="communication.manage_preferences",
          body=SuppressionIn, response=SuppressionOut, status=201, tags=TAGS, summary="Suppress an address",
          responses={422: ""})
def add_suppression(body: SuppressionIn):
    """Idempotent: an address already suppressed keeps its entry (and first reason); `created` says which."""
    return suppressions.add(body.email, body.reason, body.detail, actor=_actor())


@endpoint(bp, f"{PREFIX}/suppressions/<email>", methods=["DELETE"], permission="communication.manage_preferences",
          query=SuppressionRemoveQuery, status=204, tags=TAGS, summary="Lift a suppression (say why)",
          responses={404: "", 422: ""})
def remove_suppression(email: str, query: SuppressionRemoveQuery):
    suppressions.remove(email, query.reason, actor=_actor())
    return None
