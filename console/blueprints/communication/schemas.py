"""Request and response shapes for the communication API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator

from console.pagination import PageQuery
from console.validation import QueryModel, RequestModel

Priority = Literal["high", "normal", "low"]
SLUG = r"^[a-z][a-z0-9_-]{0,39}$"
KEY = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+){0,4}$"


class DeclaredVariable(RequestModel):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    description: str = Field("", max_length=300)
    required: bool = False


def _one_template(value, info):
    if bool(value) == bool(info.data.get("template_key")):
        raise ValueError("give exactly one of template_id or template_key")
    return value


class TemplateIn(RequestModel):
    name: str = Field(min_length=1, max_length=120)
    subject: str = Field(min_length=1, max_length=500)
    html_body: str = Field(min_length=1, max_length=200_000)
    text_body: str | None = Field(None, max_length=200_000)
    category: str = Field(pattern=SLUG, description="lowercase letters, digits, '-' or '_'")
    description: str | None = Field(None, max_length=1000)
    sample_data: dict = Field(default_factory=dict)
    key: str | None = Field(None, pattern=KEY, max_length=80,
                            description="Stable name for code and bindings, e.g. event.registered (set once)")
    declared: list[DeclaredVariable] | None = Field(
        None, max_length=100, description="The variables a sender gives; `required` ones must be present (422)")


class TemplateUpdate(TemplateIn):
    version: int | None = Field(None, ge=1, description="The version you edited; 409 when it is stale")


class TemplateQuery(PageQuery):
    category: str | None = Field(None, max_length=40)
    q: str | None = Field(None, max_length=120)


class VersionSummary(BaseModel):
    version: int
    saved_at: datetime | None
    saved_by: str | None
    subject: str | None
    current: bool


class TemplateOut(BaseModel):
    id: str
    name: str
    subject: str
    html_body: str
    text_body: str | None
    category: str
    description: str
    sample_data: dict
    variables: list[str]
    version: int
    created_at: datetime | None
    updated_at: datetime | None
    versions: list[VersionSummary] | None = None
    key: str | None = None
    builtin: bool = False
    enabled: bool = True
    declared: list[dict] = []
    required_variables: list[str] = []


class TemplateEnabledIn(RequestModel):
    enabled: bool


class TemplateResetIn(RequestModel):
    version: int | None = Field(None, ge=1, description="The version you looked at; 409 when it is stale")


class TemplateList(BaseModel):
    items: list[TemplateOut]
    next_cursor: str | None


class Recipient(RequestModel):
    user_id: str | None = Field(None, min_length=1, max_length=200)
    email: str | None = Field(None, min_length=3, max_length=254)
    variables: dict = Field(default_factory=dict)


class SendTo(RequestModel):
    user_id: str | None = Field(None, min_length=1, max_length=200)
    email: str | None = Field(None, min_length=3, max_length=254)

    @model_validator(mode="after")
    def _one(self):
        if bool(self.user_id) == bool(self.email):
            raise ValueError("give exactly one of user_id or email")
        return self


class SendEmailIn(RequestModel):
    template_key: str | None = Field(None, pattern=KEY, max_length=80, description="Or name it by its key")
    template_id: str | None = Field(None, min_length=1, max_length=64, validate_default=True)
    to: SendTo
    variables: dict = Field(default_factory=dict)
    priority: Priority = "normal"
    category: str | None = Field(None, pattern=SLUG, description="Defaults to the template's category")
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    send_at: datetime | None = None

    _template = field_validator("template_id")(_one_template)


class SendEmailOut(BaseModel):
    email_id: str
    status: str
    reason: str | None = None
    duplicate: bool = False


class QueueQuery(PageQuery):
    status: Literal["queued", "sending", "deferred", "sent", "failed", "skipped", "delivered", "bounced",
                    "complained"] | None = None
    priority: Priority | None = None
    batch_id: str | None = Field(None, max_length=64)
    q: str | None = Field(None, max_length=254, description="Recipient email address")


class QuietHours(RequestModel):
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM local time")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM local time")
    timezone: str = Field("UTC", min_length=1, max_length=64)


class FrequencyCap(RequestModel):
    max: int = Field(ge=0, le=1000, description="Emails allowed per period (security notices are exempt)")
    period_hours: int = Field(24, ge=1, le=24 * 31)


class Channels(RequestModel):
    email: bool | None = None
    sms: bool | None = None


class PreferencesIn(RequestModel):
    channels: Channels = Field(default_factory=Channels)
    categories: dict[Annotated[str, StringConstraints(pattern=SLUG)], bool] = Field(
        default_factory=dict, description="Category name (lowercase slug) → on/off; security stays on")
    quiet_hours: QuietHours | None = None
    frequency_cap: FrequencyCap | None = None


class PreferencesOut(BaseModel):
    user_id: str
    channels: dict[str, bool]
    categories: dict[str, bool]
    quiet_hours: dict | None
    frequency_cap: dict | None
    updated_at: datetime | None


class TrackingEvent(BaseModel):
    type: str
    at: datetime | None
    approximate: bool | None = None
    url: str | None = None
    detail: str | None = None
    bounce_type: Literal["hard", "soft"] | None = None
    machine: str | None = Field(None, description="set when a privacy proxy or link scanner made this, not a person")


class TrackingOut(BaseModel):
    email_id: str
    status: str
    reason: str | None
    attempts: int
    events: list[TrackingEvent]
    opens: int
    clicks: int
    first_opened_at: datetime | None


class HistoryQuery(PageQuery):
    include_preferences: bool = Field(False, description="Also the member's preference changes (opted_in, "
                                                          "opted_out, quiet_hours_changed)")


class HistoryItem(BaseModel):
    id: str
    channel: str
    category: str | None
    template: str | None
    status: str
    created_at: datetime


class HistoryOut(BaseModel):
    user_id: str
    items: list[HistoryItem]
    next_cursor: str | None


class BatchIn(RequestModel):
    template_key: str | None = Field(None, pattern=KEY, max_length=80, description="Or name it by its key")
    template_id: str | None = Field(None, min_length=1, max_length=64, validate_default=True)
    recipients: list[Recipient] = Field(min_length=1, max_length=10_000)
    variables: dict = Field(default_factory=dict)
    priority: Priority = "low"
    category: str | None = Field(None, pattern=SLUG, description="Defaults to the template's category")

    _template = field_validator("template_id")(_one_template)


class BatchOut(BaseModel):
    batch_id: str
    queued: int
    skipped: int


class BatchStatus(BaseModel):
    batch_id: str
    status: Literal["queued", "sending", "complete", "failed"]
    total: int
    sent: int = Field(description="handed over to the SMTP server, whatever was reported after")
    delivered: int = 0
    bounced: int = 0
    complained: int = 0
    failed: int
    skipped: int
    progress: float


class QueueItem(BaseModel):
    id: str
    to: str | None
    subject: str | None
    status: str
    priority: str | None
    created_at: datetime | None


class QueueOut(BaseModel):
    counts: dict[str, int]
    items: list[QueueItem]
    next_cursor: str | None


class EmptyQuery(QueryModel):
    pass


class StatsQuery(QueryModel):
    template_id: str | None = Field(None, max_length=64)
    batch_id: str | None = Field(None, max_length=64)
    campaign_id: str | None = Field(None, max_length=64)
    start: datetime | None = Field(None, alias="from", description="Emails created at or after (ISO 8601)")
    end: datetime | None = Field(None, alias="to", description="Emails created before (ISO 8601)")


class Measure(BaseModel):
    count: int
    rate: float = Field(description="sent: of the emails not skipped; the others: of the emails sent")


class StatsDay(BaseModel):
    day: datetime
    sent: int
    delivered: int
    bounced: int
    complained: int
    opens: int
    clicks: int
    unsubscribes: int


class MachineCounts(BaseModel):
    opens: int = Field(description="emails opened only by privacy proxies")
    clicks: int = Field(description="emails clicked by link scanners")


class StatsOut(BaseModel):
    total: int
    skipped: int
    sent: Measure
    delivered: Measure
    bounced: Measure
    complained: Measure
    opens: Measure = Field(description="unique human opens")
    clicks: Measure = Field(description="unique human clicks")
    unsubscribes: Measure
    machine: MachineCounts
    series: list[StatsDay]


class SmsTo(RequestModel):
    user_id: str | None = Field(None, min_length=1, max_length=200)
    phone: str | None = Field(None, min_length=3, max_length=40, description="Any format; stored in E.164")

    @model_validator(mode="after")
    def _one(self):
        if bool(self.user_id) == bool(self.phone):
            raise ValueError("give exactly one of user_id or phone")
        return self


class SendSmsIn(RequestModel):
    to: SmsTo
    text: str | None = Field(None, min_length=1, max_length=1600)
    template_key: str | None = Field(None, min_length=1, max_length=120)
    template_id: str | None = Field(None, min_length=1, max_length=64)
    variables: dict = Field(default_factory=dict)
    category: str | None = Field(None, pattern=SLUG, description="Defaults to the template's category, or product")
    priority: Priority = "normal"
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one_source(self):
        if sum(x is not None for x in (self.text, self.template_key, self.template_id)) != 1:
            raise ValueError("give exactly one of text, template_key or template_id")
        return self


class SendSmsOut(BaseModel):
    sms_id: str
    status: str
    reason: str | None = None
    duplicate: bool = False


class NotifyIn(RequestModel):
    event: str = Field(pattern=KEY, max_length=80, description="A platform event, e.g. submission.approved")
    user_id: str | None = Field(None, min_length=1, max_length=200)
    email: str | None = Field(None, min_length=3, max_length=254)
    data: dict = Field(default_factory=dict, description="The template's variables")
    event_id: str | None = Field(None, min_length=1, max_length=200,
                                 description="The occurrence's id: the same one again (same recipient) sends once")

    @model_validator(mode="after")
    def _one(self):
        if bool(self.user_id) == bool(self.email):
            raise ValueError("give exactly one of user_id or email")
        return self


class NotifyOut(BaseModel):
    email_id: str | None = None
    status: str | None = None
    skipped: str | None = None
    duplicate: bool = False


class BindingIn(RequestModel):
    template_key: str | None = Field(None, pattern=KEY, max_length=80)
    category: str | None = Field(None, pattern=SLUG, description="null: the template's category")
    priority: Priority | None = None
    enabled: bool | None = None
    description: str | None = Field(None, max_length=300)
    version: int | None = Field(None, ge=1, description="The version you edited; 409 when it is stale")


class BindingOut(BaseModel):
    event: str
    template_key: str
    template_id: str | None
    template_name: str | None
    template_enabled: bool
    category: str | None
    effective_category: str | None
    priority: str
    enabled: bool
    description: str
    builtin: bool
    version: int
    updated_at: datetime | None


class BindingList(BaseModel):
    items: list[BindingOut]


class SuppressionIn(RequestModel):
    email: str = Field(min_length=3, max_length=254)
    reason: Literal["manual", "unsubscribed", "hard_bounce", "complaint"] = "manual"
    detail: str = Field("", max_length=500, description="Why, in a few words")


class SuppressionOut(BaseModel):
    email: str
    reason: str | None
    detail: str
    email_id: str | None
    created_at: datetime | None
    created_by: str | None
    created: bool | None = None


class SuppressionList(BaseModel):
    items: list[SuppressionOut]
    next_cursor: str | None


class SuppressionQuery(PageQuery):
    q: str | None = Field(None, max_length=254, description="Part of the address")
    reason: Literal["manual", "unsubscribed", "hard_bounce", "complaint"] | None = None
    format: Literal["json", "csv"] = "json"


class SuppressionRemoveQuery(QueryModel):
    reason: str = Field("lifted through the API", min_length=1, max_length=500,
                        description="Why the address may get email again (kept in the audit log)")


class LayoutIn(RequestModel):
    html: str = Field(min_length=1, max_length=200_000)
    text: str = Field(min_length=1, max_length=50_000)
    version: int | None = Field(None, ge=1)


class LayoutOut(BaseModel):
    html: str
    text: str
    version: int
    updated_at: datetime | None
    updated_by: str | None
