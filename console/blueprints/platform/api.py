"""JSON endpoints of the moderation queue (CONTRACT.md, "Additions (second pass)", roles and admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from flask import json, request
from flask_login import current_user
from pydantic import Field

from console.blueprints.platform import moderation
from console.blueprints.platform import moderation_bp as bp
from console.blueprints.platform.schemas import ContentQuery, QueueQuery
from console.errors import ApiError, problem
from console.http import endpoint, parse_body, read_json
from console.timeutil import as_utc
from console.validation import RequestModel

PREFIX = "/api/phase14/moderation"
TAGS = ["moderation"]
PERMISSION = {"submissions": "submissions.review", "volunteers": "volunteers.manage"}


class Decision(RequestModel):
    decision: Literal["approve", "reject"]
    reason: str | None = Field(None, max_length=2000)
    version: int | None = Field(None, ge=0)


class BulkDecision(RequestModel):
    ids: list[str] = Field(min_length=1, max_length=200)
    decision: Literal["approve", "reject"]
    reason: str | None = Field(None, max_length=2000)


class Assignment(RequestModel):
    event_id: str | None = Field(max_length=200)
    version: int | None = Field(None, ge=0)


class Attendance(RequestModel):
    attended: bool = True
    hours: float | None = Field(None, ge=0, le=24)
    version: int | None = Field(None, ge=0)


def _actor() -> str:
    return current_user.email


def _guarded(call):
    """A stale version answers 409 with the item's current state beside the problem."""
    try:
        return call()
    except ApiError as error:
        current = getattr(error, "current", None)
        if current is None:
            raise
        response = problem(error.status, error.detail, error.errors)
        body = json.loads(response.get_data())
        body["current"] = current
        response.set_data(json.dumps(body))
        return response


def _list(kind: str, query: QueueQuery) -> dict:
    return moderation.list_items(kind, status=query.status, q=query.q, type_=query.type,
                                 since=as_utc(query.from_), until=as_utc(query.to), limit=query.limit,
                                 cursor=query.cursor, event_id=query.event_id)


@endpoint(bp, f"{PREFIX}/submissions", permission="submissions.review", query=QueueQuery, tags=TAGS,
          summary="Member submissions to review")
def list_submissions(query: QueueQuery):
    """Newest first; `status=pending` also matches documents without a status. `counts` by status."""
    return _list("submissions", query)


@endpoint(bp, f"{PREFIX}/volunteers", permission="volunteers.manage", query=QueueQuery, tags=TAGS,
          summary="Volunteers and their applications")
def list_volunteers(query: QueueQuery):
    """Newest first; filter by status, search, type, date and assigned `event_id`."""
    return _list("volunteers", query)


@endpoint(bp, f"{PREFIX}/submissions/<item_id>/decision", methods=["POST"], permission="submissions.review",
          body=Decision, tags=TAGS, summary="Approve or reject a submission", responses={404: "", 409: "", 422: ""})
def decide_submission(item_id: str, body: Decision):
    """Updates the platform's document in place and notifies the member; a stale `version` is 409."""
    return _guarded(lambda: moderation.decide("submissions", item_id, body.decision, reason=body.reason,
                                              version=body.version, actor=_actor()))


@endpoint(bp, f"{PREFIX}/volunteers/<item_id>/decision", methods=["POST"], permission="volunteers.manage",
          body=Decision, tags=TAGS, summary="Approve or decline a volunteer", responses={404: "", 409: "", 422: ""})
def decide_volunteer(item_id: str, body: Decision):
    """`reject` declines; the member is told through the volunteer.declined template."""
    return _guarded(lambda: moderation.decide("volunteers", item_id, body.decision, reason=body.reason,
                                              version=body.version, actor=_actor()))


@endpoint(bp, f"{PREFIX}/submissions/decisions", methods=["POST"], permission="submissions.review",
          body=BulkDecision, tags=TAGS, summary="Approve or reject many submissions")
def decide_submissions(body: BulkDecision):
    """Each item is its own compare-and-set; `results` says ok, conflict or not_found per id."""
    return moderation.decide_many("submissions", body.ids, body.decision, reason=body.reason, actor=_actor())


@endpoint(bp, f"{PREFIX}/volunteers/decisions", methods=["POST"], permission="volunteers.manage",
          body=BulkDecision, tags=TAGS, summary="Approve or decline many volunteers")
def decide_volunteers(body: BulkDecision):
    return moderation.decide_many("volunteers", body.ids, body.decision, reason=body.reason, actor=_actor())


@endpoint(bp, f"{PREFIX}/volunteers/<item_id>/assign", methods=["POST"], permission="volunteers.manage",
          body=Assignment, tags=TAGS, summary="Assign a volunteer to an event", responses={404: "", 409: "", 422: ""})
def assign_volunteer(item_id: str, body: Assignment):
    """`event_id: null` unassigns; an unknown event is 422."""
    return _guarded(lambda: moderation.assign_volunteer(item_id, body.event_id, version=body.version,
                                                        actor=_actor()))


@endpoint(bp, f"{PREFIX}/volunteers/<item_id>/attendance", methods=["POST"], permission="volunteers.manage",
          body=Attendance, tags=TAGS, summary="Mark a volunteer attended", responses={404: "", 409: ""})
def volunteer_attendance(item_id: str, body: Attendance):
    """`hours` are added to the volunteer's `hours_logged`."""
    return _guarded(lambda: moderation.mark_attended(item_id, body.attended, hours=body.hours,
                                                     version=body.version, actor=_actor()))


# --- content: blogs and events ---------------------------------------------------------------------------------

CONTENT = "/api/phase14/content"
CONTENT_TAGS = ["content"]


class BlogIn(RequestModel):
    title: str = Field(min_length=1, max_length=300)
    body: str = Field("", max_length=200_000)
    body_format: Literal["html", "markdown"] = "html"
    excerpt: str | None = Field(None, max_length=2000)
    tags: list[str] = Field(default_factory=list, max_length=30)
    author: str | None = Field(None, max_length=200)


class EventIn(BlogIn):
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    location: str | None = Field(None, max_length=300)
    capacity: int | None = Field(None, ge=0, le=1_000_000)
    template_id: str | None = Field(None, max_length=40, description="The email template for its attendees")


class ContentUpdate(RequestModel):
    """Only the fields sent change; `version` guards against overwriting someone else's edit."""

    title: str | None = Field(None, min_length=1, max_length=300)
    body: str | None = Field(None, max_length=200_000)
    body_format: Literal["html", "markdown"] | None = None
    excerpt: str | None = Field(None, max_length=2000)
    tags: list[str] | None = Field(None, max_length=30)
    author: str | None = Field(None, max_length=200)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    location: str | None = Field(None, max_length=300)
    capacity: int | None = Field(None, ge=0, le=1_000_000)
    template_id: str | None = Field(None, max_length=40)
    status: Literal["archived"] | None = None
    version: int | None = Field(None, ge=0)


class PublishIn(RequestModel):
    at: datetime | None = Field(None, description="Schedule for this time instead of publishing now")
    version: int | None = Field(None, ge=0)


def _optional_body(model):
    """An empty body is the model's defaults; anything else is parsed and validated like any JSON body."""
    if not request.get_data(cache=True).strip():
        return model()
    return parse_body(model, read_json())


def _content_routes(kind: str, read: str, create: str, edit: str) -> None:
    from console.blueprints.platform import content

    def listing(query: ContentQuery):
        return content.list_items(kind, status=query.status, q=query.q, limit=query.limit, cursor=query.cursor)

    def creating(body):
        return content.create(kind, body.model_dump(exclude_none=True), _actor()), 201

    def updating(item_id: str, body: ContentUpdate):
        data = body.model_dump(exclude_unset=True)
        version = data.pop("version", None)
        if kind == "blogs":
            for key in EVENT_FIELDS_ONLY:
                data.pop(key, None)
        return _guarded(lambda: content.update(kind, item_id, data, version, _actor()))

    def publishing(item_id: str):
        body = _optional_body(PublishIn)
        return _guarded(lambda: content.publish(kind, item_id, at=body.at, version=body.version, actor=_actor()))

    def unpublishing(item_id: str):
        body = _optional_body(PublishIn)
        return _guarded(lambda: content.unpublish(kind, item_id, version=body.version, actor=_actor()))

    for view in (listing, creating, updating, publishing, unpublishing):
        view.__name__ = f"{view.__name__}_{kind}"
    noun = kind[:-1]
    endpoint(bp, f"{CONTENT}/{kind}", permission=read, query=ContentQuery, tags=CONTENT_TAGS,
             summary=f"List {kind} with their status")(listing)
    endpoint(bp, f"{CONTENT}/{kind}", methods=["POST"], permission=create, body=EventIn if kind == "events" else BlogIn,
             status=201, tags=CONTENT_TAGS, summary=f"Create a {noun} (a draft)")(creating)
    endpoint(bp, f"{CONTENT}/{kind}/<item_id>", methods=["PUT"], permission=edit, body=ContentUpdate,
             tags=CONTENT_TAGS, summary=f"Edit a {noun}; a stale version is 409",
             responses={404: "", 409: "", 422: ""})(updating)
    endpoint(bp, f"{CONTENT}/{kind}/<item_id>/publish", methods=["POST"], permission=edit, tags=CONTENT_TAGS,
             summary=f"Publish a {noun} now, or schedule it with {{\"at\"}}", responses={404: "", 409: ""})(publishing)
    endpoint(bp, f"{CONTENT}/{kind}/<item_id>/unpublish", methods=["POST"], permission=edit,
             tags=CONTENT_TAGS, summary=f"Take a {noun} back to draft", responses={404: "", 409: ""})(unpublishing)


EVENT_FIELDS_ONLY = ("starts_at", "ends_at", "location", "capacity", "template_id")
_content_routes("blogs", "blogs.edit", "blogs.create", "blogs.edit")
_content_routes("events", "events.manage", "events.manage", "events.manage")
