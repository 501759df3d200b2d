"""Dashboard fragments: one per platform collection, each behind the permission that works with it."""

from flask import current_app, render_template

from console.blueprints.platform import bp, summaries
from console.security import has_permission, permission_required


@bp.route("/submissions")
@permission_required("submissions.review")
def widget_submissions():
    """The moderator's first block: what waits, by type, the longest waiting, and volunteer applications."""
    return render_template("platform/_widget_submissions.html", queue=summaries.moderation_queue(),
                           volunteers=has_permission("volunteers.manage"))


@bp.route("/content")
@permission_required("content.manage")
def widget_content():
    """The content manager's first block: drafts, scheduled and recently published posts and events."""
    kinds = tuple(kind for kind, permission in (("blogs", "blogs.edit"), ("events", "events.manage"))
                  if has_permission(permission))
    return render_template("platform/_widget_content.html", pipeline=summaries.content_pipeline(kinds),
                           can_create={"blogs": has_permission("blogs.create"), "events": "events" in kinds})


@bp.route("/volunteers")
@permission_required("volunteers.manage")
def widget_volunteers():
    return render_template("platform/_widget_volunteers.html", summary=summaries.volunteer_summary())


@bp.route("/blogs")
@permission_required("blogs.edit")
def widget_blogs():
    return render_template("platform/_widget_blogs.html", summary=summaries.blog_summary())


@bp.route("/events")
@permission_required("events.manage")
def widget_events():
    return render_template("platform/_widget_events.html", summary=summaries.event_summary())


@bp.route("/templates")
@permission_required("templates.view")
def widget_templates():
    link = "communication.templates_page" if "communication.templates_page" in current_app.view_functions else None
    return render_template("platform/_widget_templates.html", summary=summaries.template_summary(), link=link)
