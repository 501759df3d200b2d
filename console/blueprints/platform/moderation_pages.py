"""Console pages of the moderation queue: filter, page, decide singly or in bulk, assign and mark attended."""

from __future__ import annotations

from datetime import date

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from pydantic import Field

from console.blueprints.platform import moderation
from console.blueprints.platform import moderation_bp as bp
from console.blueprints.platform.schemas import QueueQuery
from console.db import get_db
from console.errors import ApiError
from console.security import permission_required
from console.timeutil import day_start
from console.web import csv_response, query_args, same_origin_path

PERMISSION = {"submissions": "submissions.review", "volunteers": "volunteers.manage"}


class QueuePageQuery(QueueQuery):
    """The page shows pending items by default (`all` for every status) and filters by whole days."""

    status: str = Field("pending", max_length=40, pattern=r"^[a-z_]+$")
    from_: date | None = Field(None, alias="from")
    to: date | None = None


def _filters(query: QueuePageQuery) -> dict:
    """The filters as the form shows them (text; empty for none)."""
    return {"status": query.status, "q": query.q or "", "type": query.type or "",
            "from": query.from_.isoformat() if query.from_ else "", "to": query.to.isoformat() if query.to else ""}


def _items(kind: str, query: QueuePageQuery, limit: int, cursor: str | None) -> dict:
    return moderation.list_items(kind, status=None if query.status == "all" else query.status, q=query.q or None,
                                 type_=query.type or None, since=day_start(query.from_), until=day_start(query.to),
                                 limit=limit, cursor=cursor)


def _render(kind: str):
    query = query_args(QueuePageQuery)
    cursor, filters = query.cursor, _filters(query)
    try:
        page = _items(kind, query, 50, cursor)
    except ApiError:  # a stale or hand-edited cursor: start from the first page
        page = _items(kind, query, 50, None)
    active = {k: v for k, v in filters.items() if v}
    next_url = url_for(f"moderation.{kind}_page", **active, cursor=page["next_cursor"]) if page["next_cursor"] else None
    events = list(get_db().events.find({}, {"title": 1, "starts_at": 1}).sort("starts_at", -1).limit(50)) \
        if kind == "volunteers" else []
    return render_template("platform/moderation.html", kind=kind, page=page, filters=filters, next_url=next_url,
                           first_url=url_for(f"moderation.{kind}_page", **active) if cursor else None,
                           csv_url=url_for(f"moderation.{kind}_csv", **active), events=events)


@bp.route("/moderation/submissions")
@permission_required("submissions.review")
def submissions_page():
    return _render("submissions")


@bp.route("/moderation/volunteers")
@permission_required("volunteers.manage")
def volunteers_page():
    return _render("volunteers")


def _csv(kind: str):
    page = _items(kind, query_args(QueuePageQuery), 500, None)
    rows = ([item["id"], item["status"], item.get("title") or item.get("name") or "", item.get("user_id"),
             (item.get("member") or {}).get("email") or item.get("email") or "", item.get("reviewed_by") or "",
             item.get("reviewed_at") or "", item.get("review_reason") or ""] for item in page["items"])
    return csv_response(f"{kind}.csv", ["id", "status", "title", "user_id", "email", "reviewed_by", "reviewed_at",
                                        "review_reason"], rows)


@bp.route("/moderation/submissions.csv")
@permission_required("submissions.review")
def submissions_csv():
    return _csv("submissions")


@bp.route("/moderation/volunteers.csv")
@permission_required("volunteers.manage")
def volunteers_csv():
    return _csv("volunteers")


def _back(kind: str):
    back = request.form.get("back") or ""
    return redirect(back if same_origin_path(back) else url_for(f"moderation.{kind}_page"))  # never off-site


def _decide_form(kind: str):
    ids = request.form.getlist("ids")[:200]
    decision = request.form.get("decision", "")
    reason = request.form.get("reason", "").strip()[:2000] or None
    version = request.form.get("version")
    try:
        if len(ids) == 1 and version is not None and version.isdigit():
            moderation.decide(kind, ids[0], decision, reason=reason, version=int(version), actor=current_user.email)
            flash("Approved." if decision == "approve" else "Rejected.", "success")
        elif ids:
            result = moderation.decide_many(kind, ids, decision, reason=reason, actor=current_user.email)
            conflicts = len(ids) - result["decided"]
            flash(f"{result['decided']} decided" + (f", {conflicts} changed meanwhile or gone" if conflicts else "")
                  + ".", "success" if not conflicts else "warning")
        else:
            flash("Tick at least one item.", "error")
    except ApiError as error:
        flash(error.detail, "error")
    return _back(kind)


@bp.route("/moderation/submissions/decide", methods=["POST"])
@permission_required("submissions.review")
def decide_submissions_form():
    return _decide_form("submissions")


@bp.route("/moderation/volunteers/decide", methods=["POST"])
@permission_required("volunteers.manage")
def decide_volunteers_form():
    return _decide_form("volunteers")


@bp.route("/moderation/volunteers/<item_id>/assign", methods=["POST"])
@permission_required("volunteers.manage")
def assign_volunteer_form(item_id: str):
    try:
        moderation.assign_volunteer(item_id, request.form.get("event_id") or None, actor=current_user.email)
        flash("Assigned.", "success")
    except ApiError as error:
        flash(error.detail, "error")
    return _back("volunteers")


@bp.route("/moderation/volunteers/<item_id>/attended", methods=["POST"])
@permission_required("volunteers.manage")
def attended_volunteer_form(item_id: str):
    try:
        moderation.mark_attended(item_id, request.form.get("attended", "1") == "1", actor=current_user.email)
        flash("Attendance saved.", "success")
    except ApiError as error:
        flash(error.detail, "error")
    return _back("volunteers")
