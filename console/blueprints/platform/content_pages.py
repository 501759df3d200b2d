"""Console pages for blog posts and events: lists by status, create, edit, publish, schedule, attendees."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from console.blueprints.platform import content
from console.blueprints.platform import moderation_bp as bp
from console.blueprints.platform.schemas import ContentQuery
from console.errors import ApiError
from console.security import has_permission, permission_required
from console.web import query_args

EDIT = {"blogs": "blogs.edit", "events": "events.manage"}
CREATE = {"blogs": "blogs.create", "events": "events.manage"}


def _when(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC) if value else None
    except ValueError:
        return None


def _form_data(kind: str) -> dict:
    form = request.form
    data = {"title": form.get("title", "").strip()[:300], "body": form.get("body", "")[:200_000],
            "body_format": "markdown" if form.get("body_format") == "markdown" else "html"}
    if kind == "events":
        data.update(location=form.get("location", "").strip()[:300] or None, starts_at=_when(form.get("starts_at")),
                    ends_at=_when(form.get("ends_at")), template_id=form.get("template_id", "").strip()[:40] or None)
        capacity = form.get("capacity", "").strip()
        data["capacity"] = int(capacity) if capacity.isdigit() else None
    return data


def _list(kind: str):
    query = query_args(ContentQuery)
    status, q = query.status, query.q or None
    try:
        page = content.list_items(kind, status=status, q=q, cursor=query.cursor)
    except ApiError:  # a stale or hand-edited cursor: start from the first page
        page = content.list_items(kind, status=status, q=q)
    next_url = url_for(f"moderation.{kind}_list", status=status, q=q, cursor=page["next_cursor"]) \
        if page["next_cursor"] else None
    return render_template("platform/content_list.html", kind=kind, page=page, status=status or "", q=q or "",
                           next_url=next_url, can_create=has_permission(CREATE[kind]))


@bp.route("/content/blogs")
@permission_required("blogs.edit")
def blogs_list():
    return _list("blogs")


@bp.route("/content/events")
@permission_required("events.manage")
def events_list():
    return _list("events")


def _create(kind: str):
    data = _form_data(kind)
    if not data["title"]:
        flash("Give it a title.", "error")
        return redirect(url_for(f"moderation.{kind}_list"))
    item = content.create(kind, data, current_user.email)
    flash("Draft created.", "success")
    return redirect(url_for("moderation.content_edit", kind=kind, item_id=item["id"]))


@bp.route("/content/blogs/new", methods=["POST"])
@permission_required("blogs.create")
def blogs_create():
    return _create("blogs")


@bp.route("/content/events/new", methods=["POST"])
@permission_required("events.manage")
def events_create():
    return _create("events")


def _guard(kind: str):
    if kind not in content.KINDS:
        raise ApiError(404, "No such content.")
    if not has_permission(EDIT[kind]):
        raise ApiError(403, "Your role does not allow this.")


@bp.route("/content/<any(blogs, events):kind>/<item_id>", methods=["GET", "POST"])
@permission_required("content.manage")
def content_edit(kind: str, item_id: str):
    """Edit page; the form carries the version it showed, so a concurrent edit is refused, not overwritten."""
    _guard(kind)
    if request.method == "POST":
        action = request.form.get("action", "save")
        version = int(request.form["version"]) if request.form.get("version", "").isdigit() else None
        try:
            message = "Saved."
            if action == "publish":
                item = content.publish(kind, item_id, at=_when(request.form.get("publish_at")), version=version,
                                       actor=current_user.email)
                message = f"“{item.get('title') or 'Untitled'}” is {item['status']}."
            elif action == "unpublish":
                content.unpublish(kind, item_id, version=version, actor=current_user.email)
            else:
                data = _form_data(kind)
                if action == "archive":
                    data["status"] = "archived"
                content.update(kind, item_id, data, version, current_user.email)
            flash(message, "success")
        except ApiError as error:
            flash(error.detail, "error")
        if request.form.get("back") == "dashboard":  # the dashboard's Publish button returns there
            return redirect(url_for("core.dashboard"))
        return redirect(url_for("moderation.content_edit", kind=kind, item_id=item_id))
    doc = content.get_item(kind, item_id)
    item = content.item_dict(kind, doc)
    people = content.attendees(doc) if kind == "events" else []
    return render_template("platform/content_edit.html", kind=kind, item=item, attendees=people,
                           can_send=has_permission("communication.send"))


@bp.route("/content/events/<item_id>/email-attendees", methods=["POST"])
@permission_required("communication.send")
def email_attendees(item_id: str):
    """A batch send of the event's template to its attendees; opens the batch's progress page."""
    from console.blueprints.communication.sending import create_batch

    doc = content.get_item("events", item_id)
    people = [{"user_id": p["user_id"]} for p in content.attendees(doc)]
    template_id = request.form.get("template_id") or doc.get("template_id")
    if not people or not template_id:
        flash("This event needs attendees and an email template first.", "error")
        return redirect(url_for("moderation.content_edit", kind="events", item_id=item_id))
    try:
        batch = create_batch(str(template_id), people, variables={"event": {"title": doc.get("title"),
                             "location": doc.get("location"), "when": str(doc.get("starts_at") or "")}},
                             priority="normal", source={"event_id": str(doc["_id"])})
    except ApiError as error:
        flash(error.detail, "error")
        return redirect(url_for("moderation.content_edit", kind="events", item_id=item_id))
    return redirect(url_for("communication.batch_page", batch_id=batch["batch_id"]))
