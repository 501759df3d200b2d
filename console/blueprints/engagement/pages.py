"""Engagement console pages and their htmx fragments."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Literal

from flask import Response, abort, make_response, render_template, request, url_for
from flask_login import current_user
from pydantic import Field, ValidationError, model_validator

from console.blueprints.engagement import bp, charts, churn, fold, jobs, lifecycle, metrics, retention
from console.blueprints.engagement import campaigns as campaigns_service
from console.blueprints.engagement import inactive as inactive_service
from console.blueprints.engagement import members as members_service
from console.blueprints.engagement.periods import zone_name
from console.blueprints.engagement.schemas import (
    ActivityQuery,
    CampaignTrigger,
    ChurnQuery,
    InactiveQuery,
    LifecycleChartQuery,
    MetricsQuery,
    RetentionQuery,
)
from console.errors import ApiError
from console.pagination import PageQuery, cursor_for, cursor_or_none
from console.security import has_permission, permission_required
from console.timeutil import utcnow
from console.ui import visible_member_panels
from console.validation import QueryModel
from console.web import csv_response, is_htmx, query_args, toast

# A page reads its query string with the API's model (console.web.query_args): a value the API would refuse
# is left at its default. The models below differ from the API's only where the page shows something else.


class OverviewQuery(MetricsQuery):
    """The API's metrics range, with a `from` after `to` read the other way round."""

    @model_validator(mode="after")
    def _ordered(self):
        if self.start and self.end and _day(self.start) > _day(self.end):
            self.start, self.end = self.end, self.start
        return MetricsQuery._ordered(self)


class AtRiskQuery(ChurnQuery):
    """The page lists the high tier by default; `all` is every tier."""

    tier: Literal["high", "medium", "low", "all"] = "high"


class MemberSearchQuery(QueryModel):
    """The member search (a page only): part of a user_id or email."""

    q: str = Field("", max_length=100)
    after: str | None = Field(None, max_length=2000)
    fragment: str | None = None


def _day(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


# --- overview ----------------------------------------------------------------------------------------------

def _overview_context() -> dict:
    query = query_args(OverviewQuery)
    data = metrics.metrics(query.start, query.end, query.interval)
    # say so when the numbers trail what was received (the worker is behind or away); the whole backlog is
    # only added up then
    waiting = fold.backlog() if fold.waiting_since() > 10 else None
    return {"m": data, "interval": query.interval, "waiting": waiting,
            "activity_chart": charts.activity_figure(data),
            "sessions_chart": charts.sessions_figure(data), "feature_chart": charts.feature_figure(data),
            "stickiness_chart": charts.stickiness_figure(data), "adoption_chart": charts.adoption_figure(data)}


@bp.context_processor
def _analytics_zone() -> dict:
    """Every engagement page says which time zone its days, weeks and months are in."""
    return {"analytics_zone": zone_name()}


@bp.route("/engagement")
@permission_required("analytics.view")
def overview():
    return render_template("engagement/overview.html", **_overview_context())


@bp.route("/engagement/fragments/overview")
@permission_required("analytics.view")
def overview_charts():
    return render_template("engagement/_overview.html", **_overview_context())


@bp.route("/engagement/overview.csv")
@permission_required("analytics.view")
def overview_csv():
    """The overview's series; a period cut by from/to says so in `partial`."""
    data = _overview_context()["m"]
    features = [row["feature"] for row in data["feature_usage"]]
    header = ["period", "label", "timezone", "active_users", "new_users", "events", "sessions", "partial",
              *[f"feature_users:{name}" for name in features]]
    rows = ([row["period"], row["label"], data["timezone"], row["active_users"], row["new_users"], row["events"],
             row["sessions"], "partial" if row.get("partial") else "",  # from/to cut this week or month
             *[row["feature_users"].get(name, 0) for name in features]] for row in data["series"])
    return csv_response(f"engagement-{data['interval']}-{data['from']}-{data['to']}.csv", header, rows)


@bp.route("/engagement/widget")
@permission_required("analytics.view")
def widget():
    return render_template("engagement/_widget.html", m=metrics.metrics())


# --- retention ---------------------------------------------------------------------------------------------

def _retention_args() -> dict:
    return query_args(RetentionQuery).model_dump(include={"period", "cohorts", "mode", "start_event", "return_event"})


@bp.route("/engagement/retention")
@permission_required("analytics.view")
def retention_page():
    args = _retention_args()
    return render_template("engagement/retention.html", r=retention.retention(**args), args=args)


@bp.route("/engagement/fragments/retention")
@permission_required("analytics.view")
def retention_table():
    args = _retention_args()
    return render_template("engagement/_retention.html", r=retention.retention(**args), args=args)


@bp.route("/engagement/retention.csv")
@permission_required("analytics.view")
def retention_csv():
    args = _retention_args()
    result = retention.retention(**args)
    width = max((len(c["counts"]) for c in result["cohorts"]), default=0)
    header = ["cohort", "size", *[f"{args['period']}_{k}_count" for k in range(width)],
              *[f"{args['period']}_{k}_retention" for k in range(width)]]
    rows = ([cohort["cohort"], cohort["size"], *cohort["counts"], *[""] * (width - len(cohort["counts"])),
             *[f"{value:.4f}" for value in cohort["retention"]], *[""] * (width - len(cohort["counts"]))]
            for cohort in result["cohorts"])
    return csv_response(f"retention-{args['period']}-{args['mode']}.csv", header, rows)


# --- lifecycle ---------------------------------------------------------------------------------------------

def _lifecycle_context() -> dict:
    query = query_args(LifecycleChartQuery)
    chart = lifecycle.lifecycle_chart(query.interval, query.periods)
    return {"chart": chart, "figure": charts.lifecycle_figure(chart), "interval": query.interval}


@bp.route("/engagement/lifecycle")
@permission_required("analytics.view")
def lifecycle_page():
    return render_template("engagement/lifecycle.html", **_lifecycle_context())


@bp.route("/engagement/fragments/lifecycle")
@permission_required("analytics.view")
def lifecycle_fragment():
    return render_template("engagement/_lifecycle.html", **_lifecycle_context())


# --- members -----------------------------------------------------------------------------------------------

@bp.route("/engagement/members")
@permission_required("analytics.view")
def members():
    query = query_args(MemberSearchQuery)
    page = members_service.search_members(query.q, after=query.after)
    template = "engagement/_members.html" if is_htmx() and query.fragment else "engagement/members.html"
    return render_template(template, page=page, q=query.q)


@bp.route("/engagement/members/<user_id>")
@permission_required("analytics.view")
def member(user_id: str):
    profile = members_service.get_member(user_id)
    stages = lifecycle.member_lifecycle(user_id)
    if profile is None and stages is None:
        abort(404)
    return render_template("engagement/member.html", user_id=user_id, profile=profile or {"user_id": user_id},
                           lifecycle=stages, timeline=charts.timeline_figure(stages) if stages else None,
                           risk=churn.risk_for(user_id), panels=visible_member_panels())


@bp.route("/engagement/members/<user_id>/activity")
@permission_required("analytics.view")
def member_activity(user_id: str):
    query = query_args(ActivityQuery)
    page = members_service.activity(user_id, limit=20, after=cursor_or_none(query.cursor, datetime, str),
                                    event=query.event)
    return render_template("engagement/_activity.html", user_id=user_id, page=page,
                           next_cursor=cursor_for(page["after"]))


# --- at risk and inactive ----------------------------------------------------------------------------------

@bp.route("/engagement/at-risk")
@permission_required("analytics.view")
def at_risk():
    query = query_args(AtRiskQuery)
    filters = query.model_dump(include={"tier", "min_risk"})
    page = churn.stored_scores(tier=None if filters["tier"] == "all" else filters["tier"],
                               min_risk=filters["min_risk"], limit=50, after=cursor_or_none(query.cursor, float, str))
    return render_template("engagement/at_risk.html", rows=page["items"], total=page["total"],
                           next_cursor=cursor_for(page["after"]),
                           run=churn.latest_run(), model=churn.MODEL, templates=_templates(), **filters)


@bp.route("/engagement/at-risk.csv")
@permission_required("analytics.view")
def at_risk_csv():
    filters = query_args(AtRiskQuery).model_dump(include={"tier", "min_risk"})
    scores = churn.iter_scores(tier=None if filters["tier"] == "all" else filters["tier"],
                               min_risk=filters["min_risk"])
    rows = ([row["user_id"], row["risk"], row["tier"], row["last_seen"], row["days_inactive"],
             "; ".join(row["reasons"]), row.get("computed_at")] for row in scores)
    return csv_response(f"at-risk-{filters['tier']}.csv",
                        ["user_id", "risk", "tier", "last_seen", "days_inactive", "reasons", "computed_at"], rows)


@bp.route("/engagement/at-risk/rescore", methods=["POST"])
@permission_required("analytics.view")
def at_risk_rescore():
    job = jobs.enqueue_churn_scoring(current_user.email)
    return render_template("engagement/_rescore.html", job=jobs.churn_job_status(job.id) or {
        "job_id": job.id, "status": "queued", "progress": 0})


@bp.route("/engagement/at-risk/rescore/<job_id>")
@permission_required("analytics.view")
def at_risk_rescore_status(job_id: str):
    status = jobs.churn_job_status(job_id) if len(job_id) <= 100 else None
    if status is None:
        abort(404)
    response = make_response(render_template("engagement/_rescore.html", job=status))
    if status["status"] == "finished":
        response.headers["HX-Refresh"] = "true"  # the list and the backtest are new: show them
    return response


@bp.route("/engagement/inactive")
@permission_required("analytics.view")
def inactive():
    query = query_args(InactiveQuery)
    page = inactive_service.inactive_users(query.days, limit=50, after=cursor_or_none(query.cursor, datetime, str))
    return render_template("engagement/inactive.html", page=page, days=query.days,
                           next_cursor=cursor_for(page["after"]), templates=_templates())


# --- campaigns ---------------------------------------------------------------------------------------------

def _templates() -> list:
    if not has_permission("campaigns.send"):
        return []
    from console.blueprints.communication.email_templates import sendable_templates

    # re-engagement templates first (the default)
    return sorted(sendable_templates(200), key=lambda t: t.category != "marketing")


def _campaign_form() -> dict:
    form = request.form
    segment: dict = {}
    user_ids = [uid for uid in form.getlist("user_ids") if uid][:10000]
    if user_ids:
        segment["user_ids"] = user_ids
    for key, cast in (("inactive_days", int), ("min_risk", float)):
        if form.get(key):
            try:
                segment[key] = cast(form[key])
            except ValueError:
                raise ApiError(422, f"{key} must be a number.") from None
    if form.get("lifecycle"):
        segment["lifecycle"] = form["lifecycle"]
    data = {"name": form.get("name") or f"Re-engagement {utcnow():%b %d}", "segment": segment,
            "template_id": form.get("template_id", ""), "holdout_percent": form.get("holdout_percent") or 10,
            "include_holdout_members": bool(form.get("include_holdout_members"))}
    try:
        return CampaignTrigger.model_validate(data).model_dump()
    except ValidationError as error:
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_url=False))
        raise ApiError(422, message) from None


def _form_error(error: ApiError) -> Response:
    detail = error.detail + ("" if not error.errors else ": " + "; ".join(e["message"] for e in error.errors))
    return make_response(render_template("engagement/_campaign_preview.html", error=detail), 200,
                         toast(detail, "error"))


@bp.route("/engagement/campaigns/preview", methods=["POST"])
@permission_required("campaigns.send")
def campaign_preview():
    """A dry run: the counts the campaign would have, nothing sent."""
    try:
        data = _campaign_form()
        result = campaigns_service.trigger({**data, "dry_run": True}, actor=current_user.email)
    except ApiError as error:
        return _form_error(error)
    return render_template("engagement/_campaign_preview.html", result=result, data=data,
                           user_ids=data["segment"].get("user_ids") or [])


@bp.route("/engagement/campaigns/start", methods=["POST"])
@permission_required("campaigns.send")
def campaign_start():
    try:
        result = campaigns_service.trigger(_campaign_form(), actor=current_user.email)
    except ApiError as error:
        return _form_error(error)
    response = make_response("", 204)
    response.headers["HX-Redirect"] = url_for("engagement.campaign_page", campaign_id=result["campaign_id"])
    return response


@bp.route("/engagement/campaigns")
@permission_required("analytics.view")
def campaigns():
    try:
        page = campaigns_service.list_campaigns(PageQuery(limit=50, cursor=query_args(PageQuery).cursor))
    except ApiError:  # a stale or hand-edited cursor: start from the newest
        page = campaigns_service.list_campaigns(PageQuery(limit=50))
    return render_template("engagement/campaigns.html", page=page)


@bp.route("/engagement/campaigns/<campaign_id>")
@permission_required("analytics.view")
def campaign_page(campaign_id: str):
    report = _report_or_404(campaign_id)
    return render_template("engagement/campaign.html", c=report)


@bp.route("/engagement/campaigns/<campaign_id>/status")
@permission_required("analytics.view")
def campaign_status(campaign_id: str):
    return render_template("engagement/_campaign_status.html", c=_report_or_404(campaign_id))


def _report_or_404(campaign_id: str) -> dict:
    try:
        return campaigns_service.campaign_report(campaigns_service.get_campaign(campaign_id))
    except ApiError:
        abort(404)


@bp.context_processor
def _permissions():
    return {"has_permission": has_permission}


# --- data rights ---------------------------------------------------------------------------------------------

@bp.route("/engagement/members/<user_id>/privacy")
@permission_required("members.erase")
def member_privacy_panel(user_id: str):
    return render_template("engagement/_member_privacy.html", user_id=user_id)


@bp.route("/engagement/members/<user_id>/export.json")
@permission_required("members.erase")
def member_export(user_id: str):
    import hashlib

    from console.blueprints.engagement import privacy

    body = privacy.export_member(user_id)
    name = hashlib.sha256(user_id.encode()).hexdigest()[:12]
    return Response(json.dumps(body, indent=1, ensure_ascii=False), mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="member-{name}.json"',
                             "Cache-Control": "no-store"})


@bp.route("/engagement/members/<user_id>/erase", methods=["POST"])
@permission_required("members.erase")
def member_erase(user_id: str):
    """Confirmed by typing the user_id (the form), then erased; back to the member list."""
    from flask import redirect

    from console.blueprints.engagement import privacy

    if request.form.get("confirm_user_id") != user_id:
        raise ApiError(422, "Type the member's user_id to confirm the erase.")
    from flask import flash

    privacy.erase_member(user_id)
    flash(f"Member {user_id} was erased; their address is suppressed.", "success")
    target = url_for("engagement.members")
    if is_htmx():
        return "", 204, {"HX-Redirect": target}
    return redirect(target)
