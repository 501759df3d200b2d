"""Request and query models of the engagement API."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Literal

from pydantic import BaseModel, Field, RootModel, field_validator, model_validator

from console.blueprints.engagement.ingest import MAX_BATCH, TrackEvent
from console.pagination import PageQuery
from console.validation import QueryModel, RequestModel

Interval = Literal["day", "week", "month"]
# No event predates the epoch (ingestion refuses them), and windows computed around a day near year 1 or 9999
# leave the calendar: outside these bounds a day is a typo.
EARLIEST, LATEST = date(1970, 1, 1), date(2999, 12, 31)


class MetricsQuery(QueryModel):
    start: date | datetime | None = Field(
        None, alias="from", description="First local day (ANALYTICS_TIMEZONE), default `to` minus 29 days")
    end: date | datetime | None = Field(
        None, alias="to", description="Last local day (ANALYTICS_TIMEZONE), default today")
    interval: Interval = "day"

    @field_validator("start", "end")
    @classmethod
    def _on_the_calendar(cls, value):
        if value is not None and not EARLIEST <= _as_date(value) <= LATEST:
            raise ValueError(f"must be between {EARLIEST} and {LATEST}")
        return value

    @model_validator(mode="after")
    def _ordered(self):
        end = _as_date(self.end) if self.end else datetime.now(UTC).date()  # `to` defaults to today
        if self.start and _as_date(self.start) > end:
            raise ValueError("`from` must not be after `to`")
        if self.start and (end - _as_date(self.start)).days > 3660:
            raise ValueError("the range may span at most 10 years")
        return self


class ActivityQuery(PageQuery):
    start: date | datetime | None = Field(None, alias="from")
    end: date | datetime | None = Field(None, alias="to")
    event: str | None = Field(None, max_length=200)


class RetentionQuery(QueryModel):
    period: Interval = "week"
    cohorts: int = Field(8, ge=1, le=104)
    periods: int | None = Field(None, ge=1, le=104)
    start_event: str | None = Field(None, min_length=1, max_length=200)
    return_event: str | None = Field(None, min_length=1, max_length=200)
    mode: Literal["first_time", "recurring"] = "first_time"


class ChurnQuery(PageQuery):
    min_risk: float | None = Field(None, ge=0, le=1)
    tier: Literal["high", "medium", "low"] | None = None


class LifecycleQuery(QueryModel):
    interval: Interval = "week"


class LifecycleChartQuery(QueryModel):
    interval: Interval = "week"
    periods: int = Field(12, ge=1, le=104)


class InactiveQuery(PageQuery):
    days: int = Field(30, ge=0, le=3650)
    format: Literal["json", "csv"] = "json"


class Segment(RequestModel):
    inactive_days: int | None = Field(None, ge=1, le=3650)
    min_risk: float | None = Field(None, ge=0, le=1)
    lifecycle: Literal["new", "returning", "resurrecting", "dormant", "churned", "never_active"] | None = None
    user_ids: list[str] | None = Field(None, max_length=10000, description="Limit to these members")

    @model_validator(mode="after")
    def _not_empty(self):
        if self.inactive_days is None and self.min_risk is None and self.lifecycle is None and not self.user_ids:
            raise ValueError("name at least one of inactive_days, min_risk, lifecycle or user_ids")
        return self


class CampaignTrigger(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    segment: Segment
    template_id: str = Field(min_length=1, max_length=64)
    holdout_percent: float = Field(ge=0, le=50)
    dry_run: bool = False
    include_holdout_members: bool = Field(False, description="mail members held out by another campaign whose "
                                          "window is open (shown as contamination on both); default: skip them")
    variables: dict[str, str | int | float | bool] | None = None


class TrackBatch(BaseModel):
    events: list[TrackEvent] = Field(min_length=1, max_length=MAX_BATCH)


class TrackBody(RootModel[TrackEvent | TrackBatch]):
    """One event, or a batch of up to 1000 (bad items are rejected one by one, not the whole batch)."""


class TrackResult(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[dict]
    clamped: int


def _as_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


class CampaignCounts(BaseModel):
    targeted: int = Field(description="members the segment selected")
    holdout: int = Field(description="set aside, not mailed: the comparison group")
    treated: int = Field(description="mailed (or to be mailed)")
    skipped: dict[str, int] | None = Field(description="members not mailed, by reason (opted_out, suppressed, …)")
    category: str


class CampaignStarted(CampaignCounts):
    campaign_id: str | None = Field(description="null for a dry run: nothing is stored")
    dry_run: bool
    status: str
    enqueued: int
    batch_id: str | None


class Reactivation(BaseModel):
    members: int
    reactivated: int


class CampaignResults(BaseModel):
    window_days: int
    window_ends: datetime
    final: bool = Field(description="the reactivation window has closed")
    treated: Reactivation
    holdout: Reactivation
    treated_rate: float | None
    holdout_rate: float | None
    lift: float | None = Field(description="treated rate minus holdout rate")
    relative_lift: float | None
    ci95: list[float] | None = Field(description="95% confidence interval of the lift")
    difference: float | None = Field(description="treated rate minus holdout rate")
    ci_low: float | None
    ci_high: float | None
    method: str = Field(description="the interval: Newcombe's hybrid score interval for a difference of proportions")
    min_holdout: int = Field(description="fewer held-out members than this are never significant")
    significant: bool = Field(description="window closed, holdout large enough and the interval excludes zero")


class Contamination(BaseModel):
    holdout_mailed_by: list[dict] = Field(description="later campaigns that mailed members of this holdout")
    mailed_from_holdouts_of: list[dict] = Field(description="campaigns whose open holdout this one mailed")
    contaminated: bool


class CampaignReport(CampaignCounts):
    campaign_id: str
    id: str
    name: str
    status: str
    dry_run: bool
    segment: dict
    template_id: str | None
    holdout_percent: float
    created_at: datetime | None
    created_by: str | None
    sent_at: datetime | None
    enqueued: int
    batch_id: str | None
    progress: float = Field(description="percent of the campaign's emails settled")
    delivery: dict | None = Field(description="the mail batch's status, while and after sending")
    results: CampaignResults | None
    contamination: Contamination | None


class CampaignSummary(BaseModel):
    id: str
    name: str
    status: str
    dry_run: bool
    created_at: datetime | None
    sent_at: datetime | None
    treated: int
    holdout: int
    category: str | None


class CampaignPage(BaseModel):
    items: list[CampaignSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class CohortMembersQuery(PageQuery):
    period: Interval = "week"
    mode: Literal["first_time", "recurring"] = "first_time"
    cohort: date = Field(description="the cohort's period start")
    offset: int = Field(0, ge=0, le=104, description="periods after the cohort's; 0 is the whole cohort")
    start_event: str | None = Field(None, min_length=1, max_length=200)
    return_event: str | None = Field(None, min_length=1, max_length=200)


class LifecycleMembersQuery(PageQuery):
    interval: Interval = "week"
    period: date = Field(description="the period start")
    stage: Literal["new", "returning", "resurrecting", "dormant"]
