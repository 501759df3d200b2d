"""Engagement JSON API under /api/phase14/engagement."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, time

from flask import Response, current_app, g, request
from flask_login import current_user

from console.blueprints.engagement import (
    bp,
    campaigns,
    churn,
    drilldown,
    inactive,
    ingest,
    jobs,
    members,
    privacy,
    retention,
)
from console.blueprints.engagement import lifecycle as lifecycle_service
from console.blueprints.engagement import metrics as metrics_service
from console.blueprints.engagement.schemas import (
    ActivityQuery,
    CampaignPage,
    CampaignReport,
    CampaignStarted,
    CampaignTrigger,
    ChurnQuery,
    CohortMembersQuery,
    InactiveQuery,
    LifecycleChartQuery,
    LifecycleMembersQuery,
    LifecycleQuery,
    MetricsQuery,
    RetentionQuery,
    TrackBody,
    TrackResult,
)
from console.errors import ApiError, validation_error
from console.extensions import limiter
from console.http import endpoint, link, read_json
from console.pagination import PageQuery, cursor_for, decode_cursor
from console.security import email_changes_allowed, request_ingest_key, valid_ingest_key
from console.timeutil import as_utc
from console.web import csv_response

PREFIX = "/api/phase14/engagement"
INGEST_MAX_BODY = 8 * 1024 * 1024


def _ingest_limit() -> str:
    return current_app.config["INGEST_RATE_LIMIT"]


def _ingest_caller() -> str:
    """Rate-limit per ingest key (hashed) or per admin, never per shared IP; wrong keys share one bucket per IP,
    so guessing keys gets no fresh bucket per guess."""
    key, _ = request_ingest_key()
    if key and not request.headers.get("Authorization"):
        if not valid_ingest_key(key):
            return f"ingest-refused:{request.remote_addr}"
        return "ingest:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:16]
    if current_user and current_user.is_authenticated:
        return f"admin:{current_user.get_id()}"
    return f"ip:{request.remote_addr}"


def _bound(value: date | datetime | None, *, end: bool = False) -> datetime | None:
    """A query bound as an aware datetime; a bare date means the whole day."""
    if value is None or isinstance(value, datetime):
        return as_utc(value)
    return datetime.combine(value, time.max if end else time.min, tzinfo=UTC)


@endpoint(bp, f"{PREFIX}/track-activity", methods=["POST"], permission="engagement.track", allow_ingest_key=True,
          max_body=INGEST_MAX_BODY, check_operators=False, status=202, response=TrackResult,
          summary="Track one activity event or a batch of up to 1000", responses={413: "", 415: "", 422: "", 429: ""},
          rate_limit=limiter.limit(_ingest_limit, key_func=_ingest_caller),
          links={"UserActivity": link("engagement_user_activity_get", user_id="$request.body#/user_id"),
                 "Lifecycle": link("engagement_lifecycle_get", user_id="$request.body#/user_id")})
def track_activity():
    """Body: one event `{user_id, event, feature?, session_id?, properties?, timestamp?, event_id?, traits?}` or
    `{"events": [...]}`. Bad items are rejected individually (index and reasons) while good ones are stored;
    duplicates by `event_id` are counted, not stored twice; timestamps over an hour ahead are clamped.
    Browsers may send the key as `?ingest_key=` with a `text/plain` JSON body (navigator.sendBeacon)."""
    data = read_json(text_plain=g.get("auth_method") == "ingest_query")
    if isinstance(data, dict) and "events" in data:
        if set(data) != {"events"}:
            raise validation_error("body", "A batch body holds only `events`.")
        items = data["events"]
        if not isinstance(items, list):
            raise validation_error("events", "`events` must be a list of event objects.")
        if not items:
            raise validation_error("events", "`events` must hold at least one event.")
        if len(items) > ingest.MAX_BATCH:
            raise validation_error("events", f"Send at most {ingest.MAX_BATCH} events per request.")
        return ingest.ingest(items, may_change_email=email_changes_allowed())
    result = ingest.ingest([data], may_change_email=email_changes_allowed())
    if result["rejected"]:  # a single event that fails is the request failing
        raise ApiError(422, "The event failed validation.", result["rejected"][0]["errors"])
    return result


track_activity.__openapi__["body"] = TrackBody  # documented only: items are validated one by one above


@endpoint(bp, f"{PREFIX}/user/<user_id>/activity", permission="analytics.view", query=ActivityQuery,
          summary="A member's activity, newest first", responses={404: ""})
def user_activity(user_id: str, query: ActivityQuery):
    """Filter by `from`/`to` (a bare date covers the whole day) and `event`; cursor-paginated."""
    if len(user_id) > 200 or not members.member_exists(user_id):
        raise ApiError(404, f"No member has the user_id {user_id}.")
    page = members.activity(user_id, start=_bound(query.start), end=_bound(query.end, end=True),
                            event=query.event, limit=query.limit, after=decode_cursor(query.cursor, datetime, str))
    return {"user_id": user_id, "items": page["items"],
            "next_cursor": cursor_for(page["after"])}


@endpoint(bp, f"{PREFIX}/user/<user_id>/export", permission="members.erase", responses={404: ""},
          alt_media_types=("application/json",), summary="Download everything held about a member (JSON)")
def user_export(user_id: str):
    """Profile, activity, aggregates (per-day rollups), mail with its tracking, preferences, notification
    history and campaign memberships, as one JSON attachment. The export is audited."""
    body = privacy.export_member(user_id)
    name = hashlib.sha256(user_id.encode()).hexdigest()[:12]
    return Response(json.dumps(body, indent=1, ensure_ascii=False), mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="member-{name}.json"',
                             "Cache-Control": "no-store"})


@endpoint(bp, f"{PREFIX}/user/<user_id>", methods=["DELETE"], permission="members.erase", responses={404: ""},
          summary="Erase a member: activity, aggregates, mail, history, preferences, tracking")
def user_erase(user_id: str):
    """Leaves only an audit entry and a suppression of the address (so nothing is sent to it again); the
    dashboards stay exact. Erasing twice is a 404 the second time."""
    return privacy.erase_member(user_id)


@endpoint(bp, f"{PREFIX}/metrics", permission="analytics.view", query=MetricsQuery,
          summary="DAU/WAU/MAU, stickiness, sessions and feature usage for a date range")
def metrics(query: MetricsQuery):
    """Series per day, ISO week or calendar month in [from, to] (UTC); scalars for the day of `to`."""
    return metrics_service.metrics(query.start, query.end, query.interval)


@endpoint(bp, f"{PREFIX}/retention-analysis", permission="analytics.view", query=RetentionQuery,
          summary="Cohort retention, first-time or recurring")
def retention_analysis(query: RetentionQuery):
    """`cohorts` periods ending with the current one; `retention[k] = counts[k] / size`."""
    return retention.retention(query.period, query.cohorts, query.periods, query.start_event,
                                          query.return_event, query.mode)


@endpoint(bp, f"{PREFIX}/churn-prediction", permission="analytics.view", query=ChurnQuery,
          summary="Stored churn risk per member still here, with reasons, when it was computed and its backtest")
def churn_prediction(query: ChurnQuery):
    """Members active within CHURN_AFTER_DAYS, riskiest first (`min_risk` and `tier` filter), as scored by the
    last run (`computed_at`; null before the first). Longer-silent members are churned: see inactive-users."""
    run = churn.latest_run()
    page = churn.stored_scores(tier=query.tier, min_risk=query.min_risk, limit=query.limit,
                               after=decode_cursor(query.cursor, float, str))
    computed_at = as_utc(run["computed_at"]) if run else None
    return {"computed_at": computed_at, "generated_at": computed_at, "status": "ready" if run else "never_computed",
            "model": run["model"] if run else {**churn.MODEL, "backtest": None},
            "churned": run["churned"] if run else None, "tiers": run["tiers"] if run else None,
            "total": page["total"], "items": page["items"],
            "next_cursor": cursor_for(page["after"])}


@endpoint(bp, f"{PREFIX}/churn-prediction/rescore", methods=["POST"], permission="analytics.view", status=202,
          summary="Score churn risk again now (an RQ job); poll its progress at rescore/{job_id}")
def churn_rescore():
    job = jobs.enqueue_churn_scoring(getattr(current_user, "email", None))
    return {"job_id": job.id}


@endpoint(bp, f"{PREFIX}/churn-prediction/rescore/<job_id>", permission="analytics.view",
          summary="A churn scoring job's status and progress", responses={404: ""})
def churn_rescore_status(job_id: str):
    status = jobs.churn_job_status(job_id) if len(job_id) <= 100 else None
    if status is None:
        raise ApiError(404, f"No churn scoring job has the id {job_id}.")
    return status


@endpoint(bp, f"{PREFIX}/lifecycle/<user_id>", permission="analytics.view", query=LifecycleQuery,
          summary="A member's lifecycle stage and timeline", responses={404: ""})
def lifecycle(user_id: str, query: LifecycleQuery):
    """new, returning, resurrecting, dormant per period; current stage adds churned after a long silence."""
    result = lifecycle_service.member_lifecycle(user_id, query.interval) if len(user_id) <= 200 else None
    if result is None:
        raise ApiError(404, f"No member has the user_id {user_id}.")
    return result


@endpoint(bp, f"{PREFIX}/lifecycle", permission="analytics.view", query=LifecycleChartQuery,
          summary="Members per lifecycle stage per period (dormant as negative numbers)")
def lifecycle_chart(query: LifecycleChartQuery):
    return lifecycle_service.lifecycle_chart(query.interval, query.periods)


@endpoint(bp, f"{PREFIX}/inactive-users", permission="analytics.view", query=InactiveQuery,
          summary="Members inactive for at least `days` days, oldest first (JSON or CSV)",
          alt_media_types=("text/csv",))
def inactive_users(query: InactiveQuery):
    """`days_inactive` counts whole days since the last activity (since joining when there is none)."""
    if query.format == "csv":
        return inactive_csv(query.days)
    page = inactive.inactive_users(query.days, limit=query.limit, after=decode_cursor(query.cursor, datetime, str))
    after = page["after"]
    return {"days": query.days, "total": page["total"], "items": page["items"],
            "next_cursor": cursor_for(after)}


def inactive_csv(days: int) -> Response:
    """Streamed from the cursor: memory stays flat however many members match."""
    rows = ([row["user_id"], row["email"], row["name"],
             row["last_seen"].isoformat().replace("+00:00", "Z") if row["last_seen"] else "", row["days_inactive"]]
            for row in inactive.iter_inactive(days))
    return csv_response(f"inactive-{days}d.csv", ["user_id", "email", "name", "last_seen", "days_inactive"], rows)


@endpoint(bp, f"{PREFIX}/campaigns/trigger", methods=["POST"], permission="campaigns.send", body=CampaignTrigger,
          status=202, response=CampaignStarted, responses={422: ""},
          summary="Start (or preview with dry_run) a re-engagement campaign",
          links={"Campaign": link("engagement_campaign_detail_get", campaign_id="$response.body#/campaign_id")})
def trigger_campaign(body: CampaignTrigger):
    """Selects the segment, sets aside a deterministic holdout, skips opted-out, suppressed and recently mailed
    members, and enqueues one email per remaining member through the mail pipeline."""
    return campaigns.trigger(body.model_dump(), actor=getattr(current_user, "email", None))


@endpoint(bp, f"{PREFIX}/campaigns/<campaign_id>", permission="analytics.view", response=CampaignReport,
          summary="A campaign's progress, counts and results (reactivation, lift, 95% CI)", responses={404: ""})
def campaign_detail(campaign_id: str):
    return campaigns.campaign_report(campaigns.get_campaign(campaign_id))


@endpoint(bp, f"{PREFIX}/campaigns", permission="analytics.view", query=PageQuery, response=CampaignPage,
          summary="Campaigns, newest first")
def campaign_list(query: PageQuery):
    return campaigns.list_campaigns(query)


def _members_page(user_ids: set[str], query) -> dict:
    after = decode_cursor(query.cursor, str)
    page = drilldown.page(user_ids, query.limit, after[0] if after else None)
    return {"items": page["items"], "total": page["total"],
            "next_cursor": cursor_for([page["after"]] if page["after"] else None)}


@endpoint(bp, f"{PREFIX}/cohort-members", permission="analytics.view", query=CohortMembersQuery,
          summary="The members behind a retention cell (the cohort, back `offset` periods later)")
def cohort_members(query: CohortMembersQuery):
    return _members_page(drilldown.cohort_member_ids(query.period, query.mode, query.cohort, query.offset,
                                                     query.start_event, query.return_event), query)


@endpoint(bp, f"{PREFIX}/lifecycle-members", permission="analytics.view", query=LifecycleMembersQuery,
          summary="The members behind a lifecycle bar segment")
def lifecycle_members(query: LifecycleMembersQuery):
    return _members_page(drilldown.lifecycle_member_ids(query.interval, query.period, query.stage), query)
