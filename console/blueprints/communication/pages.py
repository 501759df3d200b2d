"""Communication pages: template editor with live preview, versions, the mail queue, email detail, batch
progress, the development Mailbox, member panels and the dashboard widget."""

from __future__ import annotations

import json

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from pydantic import Field

from console.blueprints.communication import bp, email_templates, mailbox, prefs, sending, stats
from console.blueprints.communication.schemas import QueueQuery, StatsQuery, SuppressionQuery, TemplateQuery
from console.errors import ApiError
from console.http import MAX_JSON_DEPTH, depth_over
from console.pagination import PageQuery
from console.security import has_permission, permission_required
from console.validation import QueryModel, unstorable
from console.web import csv_response, is_htmx, query_args, toast


class VersionsQuery(QueryModel):
    """Which two versions the versions page compares (a page only; default: the current one and the one before)."""

    new: int | None = Field(None, ge=1)
    old: int | None = Field(None, ge=1)


class MailboxQuery(QueryModel):
    """The development Mailbox's search and the message shown (a page only)."""

    q: str | None = Field(None, max_length=254)
    key: str | None = Field(None, max_length=300)

# --- templates ---------------------------------------------------------------------------------------------

@bp.route("/communication/templates")
@permission_required("templates.view")
def templates_page():
    query = query_args(TemplateQuery)
    category, q = query.category, query.q or None
    templates = list(email_templates.list_templates(category, q).order_by("category", "name").limit(500))
    categories = sorted(set(email_templates.list_templates().distinct("category")))
    return render_template("communication/templates.html", templates=templates, categories=categories,
                           category=category, q=q or "", can_manage=has_permission("templates.manage"))


def _form_data() -> tuple[dict, list[dict]]:
    form = request.form
    errors = []
    try:
        sample = json.loads(form.get("sample_data") or "{}")
        if not isinstance(sample, dict):
            raise ValueError("not an object")
    except (ValueError, RecursionError) as error:
        sample = {}
        errors.append({"field": "sample_data", "message": f"sample data must be a JSON object ({error})"})
    if depth_over(sample, MAX_JSON_DEPTH):
        sample = {}
        errors.append({"field": "sample_data", "message": f"sample data nests more than {MAX_JSON_DEPTH} levels"})
    for problem in unstorable(sample)[:5]:
        errors.append({"field": f"sample_data.{problem['field']}", "message": f"sample data {problem['message']}"})
    data = {"name": (form.get("name") or "").strip(), "subject": form.get("subject") or "",
            "html_body": form.get("html_body") or "", "text_body": form.get("text_body") or None,
            "category": (form.get("category") or "").strip(), "description": form.get("description") or "",
            "sample_data": sample}
    return data, errors


def _editor(template=None, data=None, errors=None, status=200):
    if data is None and template is not None:
        data = email_templates.to_dict(template)
    data = data or {"name": "", "subject": "", "html_body": "<p>Hello {{ first_name }},</p>\n", "text_body": "",
                    "category": "product", "description": "", "sample_data": {"first_name": "Ava"}}
    return render_template("communication/editor.html", template=template, data=data, errors=errors or [],
                           sample_json=json.dumps(data.get("sample_data") or {}, indent=2, ensure_ascii=False),
                           can_edit=has_permission("templates.manage"),
                           can_send=has_permission("communication.send"),
                           declared=(template.declared if template else None) or [],
                           required=email_templates.required_of(template) if template else [],
                           category_names=prefs.CATEGORIES,
                           versions=email_templates.versions(template) if template else []), status


@bp.route("/communication/templates/new")
@permission_required("templates.manage")
def template_new():
    return _editor()


@bp.route("/communication/templates/<template_id>")
@permission_required("templates.view")
def template_edit(template_id: str):
    return _editor(_page_template(template_id))


def _page_template(template_id: str):
    try:
        return email_templates.get_template(template_id)
    except ApiError:
        abort(404)


@bp.route("/communication/templates/save", methods=["POST"], defaults={"template_id": None})
@bp.route("/communication/templates/<template_id>/save", methods=["POST"])
@permission_required("templates.manage")
def template_save(template_id: str | None):
    template = _page_template(template_id) if template_id else None
    data, errors = _form_data()
    if errors:
        return _editor(template, data, errors, 422)
    try:
        if template is None:
            template = email_templates.create_template(data, current_user.email)
            flash(f"Template “{template.name}” created.", "success")
        else:
            version = request.form.get("version", type=int)
            template = email_templates.update_template(str(template.id), data, version, current_user.email)
            flash(f"Saved version {template.version}.", "success")
    except ApiError as error:
        return _editor(template, data, [{"field": "", "message": error.detail}, *error.errors], error.status)
    return redirect(url_for("communication.template_edit", template_id=template.id))


@bp.route("/communication/templates/preview", methods=["POST"])
@permission_required("templates.manage")
def template_preview():
    """The editor's live preview: the form rendered with its sample data, in a sandboxed iframe.
    Rendering unsaved source is editing, so it needs templates.manage."""
    data, errors = _form_data()
    result = email_templates.preview(data) if not errors else {"ok": False, "errors": errors, "variables": []}
    return render_template("communication/_preview.html", result=result)


@bp.route("/communication/templates/<template_id>/preview", methods=["GET", "POST"])
@permission_required("templates.view")
def template_saved_preview(template_id: str):
    """The preview of the saved template with its own sample data (what a read-only editor shows)."""
    data = email_templates.to_dict(_page_template(template_id))
    return render_template("communication/_preview.html", result=email_templates.preview(data))


@bp.route("/communication/templates/<template_id>/delete", methods=["POST"])
@permission_required("templates.manage")
def template_delete(template_id: str):
    template = _page_template(template_id)
    try:
        email_templates.delete_template(str(template.id))
    except ApiError as error:
        flash(error.detail, "error")
        return redirect(url_for("communication.template_edit", template_id=template.id))
    flash(f"Template “{template.name}” deleted.", "success")
    return redirect(url_for("communication.templates_page"))


@bp.route("/communication/templates/<template_id>/enabled", methods=["POST"])
@permission_required("templates.manage")
def template_toggle(template_id: str):
    template = _page_template(template_id)
    enabled = request.form.get("enabled") == "1"
    email_templates.set_enabled(str(template.id), enabled, current_user.email)
    flash(f"“{template.name}” is {'enabled' if enabled else 'disabled'}.", "success")
    return redirect(url_for("communication.template_edit", template_id=template.id))


@bp.route("/communication/templates/<template_id>/reset", methods=["POST"])
@permission_required("templates.manage")
def template_reset(template_id: str):
    template = _page_template(template_id)
    try:
        template = email_templates.reset_to_builtin(str(template.id), None, current_user.email)
    except ApiError as error:
        flash(error.detail, "error")
    else:
        flash(f"Reset to the built-in content as version {template.version}.", "success")
    return redirect(url_for("communication.template_edit", template_id=template.id))


# --- the shared layout and the event bindings --------------------------------------------------------------

@bp.route("/communication/layout", methods=["GET", "POST"])
@permission_required("templates.view")
def layout_page():
    from console.blueprints.communication import layout

    doc, errors, status = layout.get_layout(), [], 200
    if request.method == "POST":
        if not has_permission("templates.manage"):
            abort(403)
        try:
            if request.form.get("action") == "reset":
                layout.reset_layout(current_user.email)
                flash("The layout is back to the built-in one.", "success")
            else:
                layout.save_layout(request.form.get("html") or "", request.form.get("text") or "",
                                   request.form.get("version", type=int), current_user.email)
                flash("Layout saved: every email composed from now on wears it.", "success")
            return redirect(url_for("communication.layout_page"))
        except ApiError as error:
            errors, status = [{"field": "", "message": error.detail}, *error.errors], error.status
            doc = {**doc, "html": request.form.get("html") or "", "text": request.form.get("text") or ""}
    return render_template("communication/layout.html", layout=doc, errors=errors,
                           can_edit=has_permission("templates.manage")), status


@bp.route("/communication/bindings", methods=["GET", "POST"])
@permission_required("templates.view")
def bindings_page():
    from console.blueprints.communication import bindings

    errors = []
    if request.method == "POST":
        if not has_permission("templates.manage"):
            abort(403)
        form = request.form
        event = (form.get("event") or "").strip()
        try:
            bindings.save_binding(event, {"template_key": form.get("template_key") or None,
                                          "category": form.get("category") or None,
                                          "priority": form.get("priority") or None,
                                          "enabled": form.get("enabled") == "on"}, current_user.email)
            flash(f"Binding for {event} saved.", "success")
            return redirect(url_for("communication.bindings_page"))
        except ApiError as error:
            errors = [{"field": "", "message": error.detail}, *error.errors]
    keyed = email_templates.list_templates().filter(key__ne=None).only("key", "name").order_by("key")
    return render_template("communication/bindings.html", bindings=bindings.list_bindings(), errors=errors,
                           templates=list(keyed), priorities=sending.PRIORITIES, categories=prefs.CATEGORIES,
                           can_edit=has_permission("templates.manage")), 422 if errors else 200


# --- suppressions ------------------------------------------------------------------------------------------

@bp.route("/communication/suppressions")
@permission_required("communication.view")
def suppressions_page():
    from console.blueprints.communication import suppressions

    query = query_args(SuppressionQuery)
    q, reason = query.q or None, query.reason
    if query.format == "csv":
        return csv_response("suppressions.csv", suppressions.CSV_COLUMNS, suppressions.csv_rows(q, reason))
    try:
        page = suppressions.list_page(PageQuery(limit=50, cursor=query.cursor), q, reason)
    except ApiError:
        page = {"items": [], "next_cursor": None}
    return render_template("communication/suppressions.html", **page, q=q or "", reason=reason,
                           reasons=suppressions.REASONS,
                           can_edit=has_permission("communication.manage_preferences"))


@bp.route("/communication/suppressions", methods=["POST"])
@permission_required("communication.manage_preferences")
def suppressions_change():
    from console.blueprints.communication import suppressions

    form = request.form
    try:
        if form.get("action") == "remove":
            suppressions.remove(form.get("email") or "", form.get("reason") or "", actor=current_user.email)
            flash(f"{form.get('email')} may get email again.", "success")
        else:
            result = suppressions.add(form.get("email") or "", "manual", form.get("detail") or "",
                                      actor=current_user.email)
            flash(f"{result['email']} is suppressed." if result["created"] else
                  f"{result['email']} was already suppressed.", "success")
    except ApiError as error:
        flash(f"{error.detail} {' '.join(e['message'] for e in error.errors)}".strip(), "error")
    return redirect(url_for("communication.suppressions_page", q=query_args(SuppressionQuery).q or None))


@bp.route("/communication/templates/<template_id>/versions")
@permission_required("templates.view")
def template_versions(template_id: str):
    template = _page_template(template_id)
    versions = email_templates.versions(template)
    query = query_args(VersionsQuery)
    new = query.new or template.version
    old = query.old or (new - 1 if new > 1 else new)
    try:
        diff = email_templates.diff_versions(template, old, new)
        content = email_templates.version_content(template, new)
    except ApiError:
        abort(404)
    return render_template("communication/versions.html", template=template, versions=versions, old=old, new=new,
                           diff=diff, content=content, can_edit=has_permission("templates.manage"))


@bp.route("/communication/templates/<template_id>/versions/<int:version>/restore", methods=["POST"])
@permission_required("templates.manage")
def template_restore(template_id: str, version: int):
    try:
        template = email_templates.restore_version(template_id, version, current_user.email)
    except ApiError as error:
        flash(error.detail, "error")
        return redirect(url_for("communication.template_versions", template_id=template_id))
    flash(f"Version {version} restored as version {template.version}.", "success")
    return redirect(url_for("communication.template_edit", template_id=template_id))


@bp.route("/communication/templates/<template_id>/test", methods=["POST"])
@permission_required("communication.send")
def template_send_test(template_id: str):
    """Send the saved template with its sample data to the signed-in admin."""
    template = _page_template(template_id)
    try:
        sending.send_test(template, current_user.email)
    except ApiError as error:
        return "", 422, toast(error.detail, "error")
    return "", 204, toast(f"Test email queued for {current_user.email}.")


# --- queue, emails, batches --------------------------------------------------------------------------------

def _queue_args(query: QueueQuery) -> dict:
    return {key: getattr(query, key) or None for key in ("status", "priority", "q", "batch_id")}


def _queue_rows(args: dict, cursor: str | None) -> tuple[list[dict], str | None]:
    try:
        page = sending.queue_page(PageQuery(limit=25, cursor=cursor), **args)
    except ApiError:  # a stale or hand-edited cursor: show the first page's worth of nothing, not an error
        return [], None
    return page["items"], page["next_cursor"]


def _queue_context() -> dict:
    """What the queue page and its auto-refreshing table share."""
    query = query_args(QueueQuery)
    args = _queue_args(query)
    rows, next_cursor = _queue_rows(args, query.cursor)
    return {"args": args, "rows": rows, "next_cursor": next_cursor, "counts": sending.queue_counts(),
            "statuses": sending.STATUSES, "can_send": has_permission("communication.send")}


@bp.route("/communication/queue")
@permission_required("communication.view")
def queue_page():
    return render_template("communication/queue.html", **_queue_context(), priorities=sending.PRIORITIES,
                           batches=sending.batch_statuses(sending.recent_batches(5)))


@bp.route("/communication/queue/table")
@permission_required("communication.view")
def queue_table():
    return render_template("communication/_queue_table.html", **_queue_context())


@bp.route("/communication/emails/<email_id>")
@permission_required("communication.view")
def email_detail(email_id: str):
    try:
        info = sending.tracking(email_id)
        doc = sending.get_email(email_id)
    except ApiError:
        abort(404)
    return render_template("communication/email.html", info=info, doc=doc,
                           can_send=has_permission("communication.send"))


@bp.route("/communication/emails/<email_id>/retry", methods=["POST"])
@permission_required("communication.send")
def email_retry(email_id: str):
    try:
        sending.retry_email(email_id)
    except ApiError as error:
        if error.status == 404:
            abort(404)
        return "", 409, toast(error.detail, "error")
    headers = toast("Queued again.")
    if is_htmx() and request.form.get("from") == "detail":
        headers["HX-Refresh"] = "true"
    return "", 204, headers


def _batch_or_404(batch_id: str) -> dict:
    try:
        return sending.batch_status(batch_id)
    except ApiError:
        abort(404)


@bp.route("/communication/batches/<batch_id>")
@permission_required("communication.view")
def batch_page(batch_id: str):
    return render_template("communication/batch.html", batch=_batch_or_404(batch_id))


@bp.route("/communication/batches/<batch_id>/progress")
@permission_required("communication.view")
def batch_progress(batch_id: str):
    status = _batch_or_404(batch_id)
    response = current_app.make_response(render_template("communication/_batch_progress.html", batch=status))
    if status["status"] in ("complete", "failed"):
        response.status_code = 286  # htmx stops polling on 286
    return response


# --- mailbox (development) ---------------------------------------------------------------------------------

def _mailbox_dir() -> str:
    folder = current_app.config.get("MAILBOX_DIR")
    if not folder:
        abort(404)
    return folder


@bp.route("/communication/mailbox")
@permission_required("communication.view")
def mailbox_page():
    query = query_args(MailboxQuery)
    messages = mailbox.list_messages(_mailbox_dir(), limit=200, q=query.q)
    selected = query.key or (messages[0]["key"] if messages else None)
    message = mailbox.get_message(_mailbox_dir(), selected) if selected else None
    return render_template("communication/mailbox.html", messages=messages, message=message,
                           q=query.q or "")


@bp.route("/communication/mailbox/<key>")
@permission_required("communication.view")
def mailbox_message(key: str):
    message = mailbox.get_message(_mailbox_dir(), key)
    if message is None:
        abort(404)
    return render_template("communication/_mailbox_message.html", message=message)


# --- member panels and the dashboard widget ----------------------------------------------------------------

@bp.route("/communication/members/<user_id>/preferences")
@permission_required("communication.view")
def member_prefs_panel(user_id: str):
    return render_template("communication/_member_prefs.html", prefs=prefs.get_preferences(user_id),
                           user_id=user_id, always_on=prefs.ALWAYS_ON)


@bp.route("/communication/members/<user_id>/history")
@permission_required("communication.view")
def member_history_panel(user_id: str):
    from console.pagination import paginate

    try:
        page = paginate(sending.history_query(user_id, with_preference_changes=True),
                        PageQuery(limit=10, cursor=query_args(PageQuery).cursor), sort_field="created_at",
                        transform=sending.history_item)
    except ApiError:
        page = {"items": [], "next_cursor": None}
    return render_template("communication/_member_history.html", user_id=user_id, **page)


@bp.route("/communication/widgets/queue")
@permission_required("communication.view")
def widget_queue():
    return render_template("communication/_widget_queue.html", counts=sending.queue_counts())


# --- stats -------------------------------------------------------------------------------------------------

STATS_SERIES = (("sent", "Sent"), ("delivered", "Delivered"), ("opens", "Opened (people)"),
                ("clicks", "Clicked (people)"),
                ("bounced", "Bounced"))


def _stats_figure(series: list[dict]) -> dict:
    days = [row["day"].strftime("%Y-%m-%d") for row in series]
    return {"data": [{"type": "bar" if key == "sent" else "scatter", "name": label, "x": days,
                      "y": [row[key] for row in series], **({} if key == "sent" else {"mode": "lines+markers"})}
                     for key, label in STATS_SERIES],
            "layout": {"margin": {"t": 10, "r": 10, "b": 40, "l": 50}, "legend": {"orientation": "h"},
                       "yaxis": {"rangemode": "tozero", "title": {"text": "emails"}}}}


@bp.route("/communication/stats/panel")
@permission_required("communication.view")
def stats_panel():
    """The stats card's content for ?template_id | batch_id | campaign_id."""
    scope = query_args(StatsQuery).model_dump(include={"template_id", "batch_id", "campaign_id"}, exclude_none=True)
    try:
        result = stats.communication_stats(**scope)
    except ApiError:
        abort(404)
    name = next(iter(scope), "template_id").removesuffix("_id")
    return render_template("communication/_stats_panel.html", s=result, figure=_stats_figure(result["series"]),
                           scope_name=name)


@bp.context_processor
def _permissions():
    return {"has_permission": has_permission}
