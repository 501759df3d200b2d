"""Drill-down pages: the members behind a retention cell, a lifecycle bar segment, a feature row or a stickiness
bar, paged, as CSV, and the start of a campaign targeting exactly them (the usual holdout and skip rules)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from flask import abort, render_template, request, url_for
from pydantic import Field, ValidationError

from console.blueprints.engagement import bp, drilldown
from console.blueprints.engagement.schemas import Interval
from console.errors import ApiError
from console.pagination import PageQuery, decode_cursor, encode_cursor
from console.security import permission_required
from console.timeutil import utcnow
from console.validation import QueryModel
from console.web import csv_response, is_htmx, query_args

PAGE_SIZE = 50
MAX_CAMPAIGN_MEMBERS = 10000  # a campaign's explicit member list (Segment.user_ids) holds at most this many


class DrillQuery(QueryModel):
    kind: Literal["cohort", "lifecycle", "feature", "stickiness"]
    period: Interval = "week"
    mode: Literal["first_time", "recurring"] = "first_time"
    cohort: date | None = None
    offset: int = Field(0, ge=0, le=104)
    start_event: str | None = Field(None, min_length=1, max_length=200)
    return_event: str | None = Field(None, min_length=1, max_length=200)
    interval: Interval = "week"
    stage: Literal["new", "returning", "resurrecting", "dormant"] | None = None
    at: date | None = Field(None, description="the lifecycle period's start")
    feature: str | None = Field(None, min_length=1, max_length=200)
    start: date | None = Field(None, alias="from")
    end: date | None = Field(None, alias="to")
    window: int = Field(30, description="7 or 30 days")
    days: int | None = Field(None, ge=1, le=30)


def _query() -> DrillQuery:
    try:
        query = DrillQuery.model_validate({key: value for key, value in request.args.items() if value != ""})
    except ValidationError:
        abort(400)
    needs = {"cohort": query.cohort, "lifecycle": query.stage and query.at, "feature": query.feature,
             "stickiness": query.window in (7, 30) and query.days and query.days <= query.window}
    if not needs[query.kind]:
        abort(400)
    return query


def _spec(query: DrillQuery) -> dict:
    """The query string that names this drill-down (for links, paging and the CSV)."""
    keys = {"cohort": ("period", "mode", "cohort", "offset", "start_event", "return_event"),
            "lifecycle": ("interval", "at", "stage"), "feature": ("feature", "start", "end"),
            "stickiness": ("window", "days", "end")}[query.kind]
    data = query.model_dump(by_alias=True)
    fields = {name: data[DrillQuery.model_fields[name].alias or name] for name in keys}
    return {"kind": query.kind, **{DrillQuery.model_fields[name].alias or name: value
                                   for name, value in fields.items() if value is not None}}


def member_ids(query: DrillQuery) -> tuple[set[str], str]:
    """The members and a sentence saying who they are."""
    today = utcnow().date()
    if query.kind == "cohort":
        ids = drilldown.cohort_member_ids(query.period, query.mode, query.cohort, query.offset, query.start_event,
                                          query.return_event)
        what = (f"the {query.mode.replace('_', '-')} {query.period} cohort of {query.cohort}"
                + (f", back {query.offset} {query.period}{'s' if query.offset != 1 else ''} later"
                   if query.offset else ""))
        return ids, what
    if query.kind == "lifecycle":
        ids = drilldown.lifecycle_member_ids(query.interval, query.at, query.stage)
        return ids, f"{query.stage} in the {query.interval} starting {query.at}"
    if query.kind == "feature":
        end = query.end or today
        start = query.start or end - timedelta(days=29)
        return drilldown.feature_member_ids(query.feature, start, end), f"used {query.feature} from {start} to {end}"
    end = query.end or today
    return (drilldown.stickiness_member_ids(query.window, query.days, end),
            f"active on exactly {query.days} of the {query.window} days to {end}")


@bp.route("/engagement/drilldown")
@permission_required("analytics.view")
def drilldown_members():
    """The members behind a number; htmx asks for the next page's rows only."""
    query = _query()
    ids, what = member_ids(query)
    cursor = query_args(PageQuery).cursor
    try:
        after = decode_cursor(cursor)
    except ApiError:
        after = None
    page = drilldown.page(ids, PAGE_SIZE, after[0] if after and isinstance(after[0], str) else None)
    spec = _spec(query)
    next_url = (url_for("engagement.drilldown_members", **spec, cursor=encode_cursor([page["after"]]))
                if page["after"] else None)
    context = {"page": page, "what": what, "spec": spec, "next_url": next_url}
    if is_htmx() and cursor:
        return render_template("engagement/_drilldown_rows.html", **context)
    from console.blueprints.engagement.pages import _templates

    campaign_ids = sorted(ids) if len(ids) <= MAX_CAMPAIGN_MEMBERS else None
    return render_template("engagement/drilldown.html", **context, templates=_templates(),
                           campaign_ids=campaign_ids, max_members=MAX_CAMPAIGN_MEMBERS)


@bp.route("/engagement/drilldown.csv")
@permission_required("analytics.view")
def drilldown_csv():
    query = _query()
    ids, _ = member_ids(query)
    page = drilldown.page(ids, 0, None)
    rows = ([row["user_id"], row["email"], row["last_seen"]] for row in page["items"])
    return csv_response(f"members-{query.kind}.csv", ["user_id", "email", "last_seen"], rows)
