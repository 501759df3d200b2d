"""Request and response models of the hardening endpoints."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from console import maintenance
from console.errors import ApiError
from console.validation import QueryModel, RequestModel


class HoursQuery(QueryModel):
    hours: int = Field(24, ge=1, le=24 * 30, description="Window in hours (1-720)")


class ErrorAnalysisQuery(HoursQuery):
    state: Literal["active", "open", "resolved", "ignored", "regressed", "all"] = Field(
        "active", description="active (open, regressions first) by default; all for every state")
    source: Literal["request", "job"] | None = Field(None, description="request errors or failed RQ jobs only")


class IgnoreRequest(RequestModel):
    minutes: int | None = Field(None, ge=1, le=60 * 24 * 365,
                                description="Ignore for this long; absent or null: for good")


class EmptyRequest(RequestModel):
    pass


class SlowQueriesQuery(QueryModel):
    threshold_ms: float | None = Field(None, ge=0, le=600_000,
                                       description="Minimum duration; SLOW_QUERY_MS when absent")
    limit: int = Field(50, ge=1, le=500)


class OptimizeRequest(RequestModel):
    tasks: list[str] = Field(min_length=1, max_length=50,
                             description="Task names, e.g. ensure_indexes, purge_expired, rebuild_rollups, "
                                         "compact_caches (the System page lists every registered task)")
    confirm: bool = Field(False, description="Required (true) when any task is destructive")
    start: date | None = Field(None, description="rebuild_rollups: first day (default: 30 days ago)")
    end: date | None = Field(None, description="rebuild_rollups: last day (default: today)")

    @model_validator(mode="after")
    def _known_and_confirmed(self):
        known = maintenance.tasks()
        errors = [{"field": f"tasks.{i}", "message": f"unknown task {name!r}; known: {', '.join(known)}"}
                  for i, name in enumerate(self.tasks) if name not in known]
        if len(set(self.tasks)) != len(self.tasks):
            errors.append({"field": "tasks", "message": "a task is listed twice"})
        if self.start and self.end and self.start > self.end:
            errors.append({"field": "start", "message": "start must not be after end"})
        if errors:
            raise ApiError(422, "The request body failed validation.", errors)
        destructive = [name for name in self.tasks if known[name].destructive]
        if destructive and not self.confirm:
            raise ApiError(422, f"{', '.join(destructive)} delete or rewrite data: send \"confirm\": true to run them.",
                           [{"field": "confirm", "message": "required (true) for destructive tasks"}])
        return self


class Check(BaseModel):
    id: str
    title: str
    status: Literal["pass", "warn", "fail"]
    severity: Literal["critical", "high", "medium", "low"]
    detail: str
    remediation: str


class SecurityAuditOut(BaseModel):
    score: int
    summary: dict[str, int]
    checks: list[Check]


class FailedJob(BaseModel):
    name: str | None
    func: str | None
    queue: str | None
    attempts: int | None
    will_retry: bool | None
    job_id: str | None
    traceback: str | None = Field(None, description="The last failure's frames and scrubbed message; no values")
    failed_jobs: int = Field(description="Failed runs still in RQ's failed registry that can be retried")


class ErrorGroup(BaseModel):
    fingerprint: str
    exception: str | None
    message: str | None
    endpoint: str | None
    count: int
    total_count: int
    first_seen: datetime | None
    last_seen: datetime | None
    frames: list[str]
    sample: dict[str, Any]
    source: Literal["request", "job"]
    job: FailedJob | None
    state: Literal["open", "resolved", "ignored"]
    regressed: bool
    regressed_at: datetime | None
    resolved_at: datetime | None
    ignored_until: datetime | None


class ErrorAnalysisOut(BaseModel):
    hours: int
    total: int
    requests: int
    job_failures: int
    error_rate: float
    states: dict[str, int]
    state: str
    groups: list[ErrorGroup]


class TrendPoint(BaseModel):
    hour: datetime
    requests: int
    errors: int
    job_failures: int
    error_rate: float | None


class ErrorTrendOut(BaseModel):
    hours: int
    series: list[TrendPoint]


class JobActionOut(BaseModel):
    fingerprint: str
    action: Literal["retry", "discard"]
    jobs: list[str]
    already_gone: int


class EndpointPerformance(BaseModel):
    endpoint: str
    method: str
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    error_rate: float


class PerformanceOut(BaseModel):
    hours: int
    endpoints: list[EndpointPerformance]


class SlowQueryItem(BaseModel):
    collection: str | None
    command_name: str | None
    command: dict[str, Any]
    duration_ms: float | None
    at: datetime | None
    plan: dict[str, Any] | None
    suggested_index: dict[str, Any] | None


class SlowQueriesOut(BaseModel):
    threshold_ms: float
    items: list[SlowQueryItem]


class HealthOut(BaseModel):
    status: Literal["UP", "DEGRADED", "DOWN"]
    checked_at: datetime
    checks: dict[str, dict[str, Any]]


class ChecklistItem(BaseModel):
    id: str
    title: str
    status: Literal["pass", "warn", "fail"]
    detail: str


class ChecklistOut(BaseModel):
    ready: bool
    summary: dict[str, int]
    items: list[ChecklistItem]


class OptimizeAccepted(BaseModel):
    job_id: str


class OptimizeStatus(BaseModel):
    job_id: str
    status: Literal["queued", "started", "finished", "failed"]
    progress: int
    current: str | None
    tasks: list[str]
    result: dict[str, Any] | None
    enqueued_at: datetime | None
    ended_at: datetime | None


class AlertRuleUpdate(RequestModel):
    enabled: bool | None = None
    threshold: float | None = Field(None, ge=0, le=1_000_000)
    window_minutes: int | None = Field(None, ge=0, le=7 * 24 * 60,
                                       description="Rate rules: the measuring window; state rules: how long the "
                                                   "condition must hold before firing")
    cooldown_minutes: int | None = Field(None, ge=0, le=7 * 24 * 60,
                                         description="Minimum time between notifications of this rule")


class AlertRuleOut(BaseModel):
    rule: str
    title: str
    unit: str
    kind: Literal["rate", "state"]
    direction: Literal["above", "below"]
    help: str
    enabled: bool
    threshold: float
    window_minutes: int
    cooldown_minutes: int
    defaults: dict[str, float]
    state: Literal["ok", "pending", "firing"]
    value: float | None
    detail: str | None
    fired_at: datetime | None
    evaluated_at: datetime | None
    updated_by: str | None


class AlertEventOut(BaseModel):
    rule: str
    title: str
    kind: Literal["fired", "reminder", "resolved"]
    value: float | None
    threshold: float | None
    detail: str | None
    at: datetime
    notified: bool
    delivery: dict[str, Any]


class AlertsOut(BaseModel):
    firing: list[str]
    rules: list[AlertRuleOut]
    history: list[AlertEventOut]


class AlertsQuery(QueryModel):
    limit: int = Field(50, ge=1, le=500, description="History entries, newest first")
