"""JSON endpoints of the moderation queue (CONTRACT.md, "Additions (second pass)", roles and admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from flask import json
from flask_login import current_user
from pydantic import Field

from console.blueprints.platform import moderation
from console.blueprints.platform import moderation_bp as bp
from console.errors import ApiError, problem
from console.http import endpoint
from console.pagination import PageQuery
from console.timeutil import as_utc
from console.validation import RequestModel

PREFIX = "/api/phase14/moderation"
TAGS = ["moderation"]
PERMISSION = {"submissions": "submissions.review", "volunteers": "volunteers.manage"}


class QueueQuery(PageQuery):
    status: str | None = Field(None, max_length=40, pattern=r"^[a-z_]+$")
    q: str | None = Field(None, max_length=200)
    type: str | None = Field(None, max_length=60)
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None
    event_id: str | None = Field(None, max_length=200)


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
