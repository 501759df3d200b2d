"""The moderation queue over the platform's `submissions` and `volunteers` collections.

The platform owns these documents: a decision sets only `status`, `reviewed_by`, `reviewed_at`,
`review_reason` (and bumps `version`), so every field the console does not know survives. Each write is a
compare-and-set on `version`: of two moderators deciding at once, one wins and the other gets 409 with the
current state. Members hear of decisions through communication (see `notify_member`).
"""

from __future__ import annotations

import re
from datetime import datetime

from bson import ObjectId
from bson.errors import InvalidId

from console.audit import record
from console.blueprints.communication import notify
from console.db import get_db
from console.errors import ApiError
from console.pagination import decode_id_cursor, encode_id_cursor
from console.timeutil import isoformat, utcnow

KINDS = {"submissions": {"date": "submitted_at", "noun": "submission", "default": "pending",
                         "events": {"approve": "submission.approved", "reject": "submission.rejected"}},
         "volunteers": {"date": "joined_at", "noun": "volunteer", "default": "applied",
                        "events": {"approve": "volunteer.approved", "reject": "volunteer.declined"}}}
PENDING = ("pending", "submitted", "in_review", "new", "applied")
DECIDED = {"approve": "approved", "reject": "rejected"}
def notify_member(event: str, user_id: str | None, email: str | None, data: dict, event_id: str) -> dict:
    """The one place moderation sends mail: communication's notify() (the template bound to the event)."""
    return notify(event, user_id=user_id, email=email, data=data, event_id=event_id)


# --- reading -------------------------------------------------------------------------------------------------

def _kind(kind: str) -> dict:
    if kind not in KINDS:
        raise ApiError(404, f"There is no moderation queue named {kind!r}.")
    return KINDS[kind]


def _id_filter(item_id: str) -> dict:
    """Platform ids are ObjectIds or strings; match either, never an operator."""
    if not isinstance(item_id, str) or not item_id or len(item_id) > 200:
        raise ApiError(404, "No item has this id.")
    try:
        return {"_id": {"$in": [ObjectId(item_id), item_id]}}
    except (InvalidId, TypeError):
        return {"_id": item_id}


def _plain(value):
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return isoformat(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def item_dict(kind: str, doc: dict, member: dict | None = None) -> dict:
    """The whole platform document (unknown fields included) with `id`, `version` and the member."""
    out = _plain({k: v for k, v in doc.items() if k != "_id"})
    out["id"] = str(doc["_id"])
    out["kind"] = kind
    out["version"] = int(doc.get("version") or 0)
    out["status"] = doc.get("status") or KINDS.get(kind, {}).get("default", "draft")
    if member:
        out["member"] = {"user_id": member.get("user_id"), "name": member.get("name"), "email": member.get("email")}
    return out


def _members(docs: list[dict]) -> dict[str, dict]:
    ids = sorted({d["user_id"] for d in docs if isinstance(d.get("user_id"), str)})
    if not ids:
        return {}
    found = get_db().users.find({"user_id": {"$in": ids}}, {"user_id": 1, "name": 1, "email": 1})
    return {m["user_id"]: m for m in found}


def counts(kind: str) -> dict[str, int]:
    spec = _kind(kind)
    rows = get_db()[kind].aggregate([{"$group": {"_id": {"$ifNull": ["$status", spec["default"]]}, "n": {"$sum": 1}}}])
    out = {str(row["_id"]): row["n"] for row in rows}
    total = sum(out.values())  # before "pending" (a status of its own) becomes the sum of every waiting status
    out["pending"] = sum(out.get(s, 0) for s in PENDING)
    out["total"] = total
    return out


def _status_filter(kind: str, status: str | None) -> dict:
    if not status:
        return {}
    if status == "pending":
        return {"$or": [{"status": {"$in": list(PENDING)}}, {"status": None}]}
    return {"status": status}


def list_items(kind: str, *, status=None, q=None, type_=None, since=None, until=None, limit=50, cursor=None,
               event_id=None) -> dict:
    """Newest first, keyset-paged by _id: {"items", "next_cursor", "counts"}."""
    spec = _kind(kind)
    clauses = [c for c in (_status_filter(kind, status),) if c]
    if q:
        pattern = {"$regex": re.escape(q), "$options": "i"}
        clauses.append({"$or": [{"title": pattern}, {"name": pattern}, {"email": pattern}, {"user_id": pattern},
                                {"skills": pattern}]})
    if type_:
        clauses.append({"$or": [{"kind": type_}, {"type": type_}]})
    if since or until:
        clauses.append({spec["date"]: {**({"$gte": since} if since else {}), **({"$lt": until} if until else {})}})
    if event_id:
        clauses.append({"event_id": event_id})
    after = decode_id_cursor(cursor)
    if after is not None:
        clauses.append({"_id": {"$lt": after}})
    query = {"$and": clauses} if clauses else {}
    docs = list(get_db()[kind].find(query).sort("_id", -1).limit(limit + 1))
    more = len(docs) > limit
    docs = docs[:limit]
    members = _members(docs)
    next_cursor = None
    if more and docs:
        next_cursor = encode_id_cursor(docs[-1]["_id"])
    return {"items": [item_dict(kind, d, members.get(d.get("user_id"))) for d in docs], "next_cursor": next_cursor,
            "counts": counts(kind)}


def get_item(kind: str, item_id: str) -> dict:
    _kind(kind)
    doc = get_db()[kind].find_one(_id_filter(item_id))
    if doc is None:
        raise ApiError(404, f"No {KINDS[kind]['noun']} has the id {item_id}.")
    return doc


# --- writing -------------------------------------------------------------------------------------------------

def _version_filter(version: int) -> dict:
    return {"version": version} if version else {"version": {"$in": [0, None]}}


def _write(kind: str, doc: dict, version: int | None, changes: dict) -> dict:
    """Compare-and-set on `version`; 409 with the current document when someone else wrote first."""
    current = int(doc.get("version") or 0)
    expected = current if version is None else version
    if expected != current:
        raise _conflict(kind, doc)
    result = get_db()[kind].find_one_and_update(
        {"_id": doc["_id"], **_version_filter(expected)},
        {"$set": changes, "$inc": {"version": 1}}, return_document=True)
    if result is None:
        raise _conflict(kind, get_db()[kind].find_one({"_id": doc["_id"]}) or doc)
    return result


def _conflict(kind: str, doc: dict) -> ApiError:
    error = ApiError(409, "Someone changed this item meanwhile; here is its current state. Decide again if "
                          "you still want to.", [{"field": "version", "message": "stale"}])
    error.current = item_dict(kind, doc)
    return error


def decide(kind: str, item_id: str, decision: str, *, reason: str | None = None, version: int | None = None,
           actor: str = "system") -> dict:
    """Approve or reject one item in place; audited; the member is notified (honouring their preferences)."""
    spec = _kind(kind)
    if decision not in DECIDED:
        raise ApiError(422, "decision must be approve or reject", [{"field": "decision", "message": "approve|reject"}])
    doc = get_item(kind, item_id)
    now = utcnow()
    changes = {"status": DECIDED[decision], "reviewed_by": actor, "reviewed_at": now, "review_reason": reason}
    after = _write(kind, doc, version, changes)
    record(f"{spec['noun']}.{DECIDED[decision]}", f"{spec['noun']}:{after['_id']}",
           {"status": doc.get("status"), "version": int(doc.get("version") or 0)},
           {"status": after["status"], "version": after["version"], "review_reason": reason}, actor=actor)
    event = spec["events"][decision]
    notice = None
    if after.get("user_id") or after.get("email"):
        notice = notify_member(event, after.get("user_id"), after.get("email"),
                               {"title": after.get("title") or after.get("opportunity") or "",
                                "reason": reason or "", "opportunity": after.get("opportunity") or ""},
                               event_id=f"{after['_id']}:{after['version']}")
    out = item_dict(kind, after)
    out["notification"] = _plain(notice)
    return out


def decide_many(kind: str, ids: list[str], decision: str, *, reason: str | None = None, actor: str = "system") -> dict:
    """Bulk decisions, each with its own compare-and-set: {"results": [{"id", "outcome", "item"?}]}."""
    results = []
    for item_id in ids:
        try:
            results.append({"id": item_id, "outcome": "ok", "item": decide(kind, item_id, decision, reason=reason,
                                                                            actor=actor)})
        except ApiError as error:
            outcome = {404: "not_found", 409: "conflict"}.get(error.status, "refused")
            results.append({"id": item_id, "outcome": outcome, "detail": error.detail})
    return {"results": results, "decided": sum(r["outcome"] == "ok" for r in results)}


def assign_volunteer(item_id: str, event_id: str | None, *, version: int | None = None, actor: str = "system") -> dict:
    """Assign a volunteer to an event (None unassigns); the event must exist."""
    doc = get_item("volunteers", item_id)
    if event_id is not None and get_db().events.find_one(_id_filter(event_id), {"_id": 1}) is None:
        raise ApiError(422, "No event has this id.", [{"field": "event_id", "message": "unknown event"}])
    after = _write("volunteers", doc, version, {"event_id": event_id, "assigned_by": actor, "assigned_at": utcnow()})
    record("volunteer.assigned", f"volunteer:{after['_id']}", {"event_id": doc.get("event_id")},
           {"event_id": event_id}, actor=actor)
    return item_dict("volunteers", after)


def mark_attended(item_id: str, attended: bool, *, hours: float | None = None, version: int | None = None,
                  actor: str = "system") -> dict:
    doc = get_item("volunteers", item_id)
    changes = {"attended": attended, "attended_at": utcnow() if attended else None, "attendance_by": actor}
    inc_hours = hours if attended and hours else None
    if inc_hours:
        changes["hours_logged"] = (doc.get("hours_logged") or 0) + inc_hours
    after = _write("volunteers", doc, version, changes)
    record("volunteer.attended" if attended else "volunteer.not_attended", f"volunteer:{after['_id']}",
           {"attended": doc.get("attended")}, {"attended": attended, "hours": inc_hours}, actor=actor)
    return item_dict("volunteers", after)
