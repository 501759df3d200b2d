"""Blog posts and events in the platform's `blogs` and `events` collections: create, edit, publish, schedule.

Bodies are HTML or Markdown; what the platform shows (`body_html`) is always sanitised with nh3. Writes set only
the fields the console edits and compare-and-set on `version` (409 with the current state when stale), so fields
the platform stores that the console does not know survive. Every change is audited.
"""

from __future__ import annotations

from datetime import datetime

import nh3
from markdown_it import MarkdownIt

from console.audit import record
from console.blueprints.platform.moderation import _id_filter, _plain, _write
from console.db import get_db
from console.errors import ApiError
from console.pagination import decode_id_cursor, encode_id_cursor
from console.timeutil import as_utc, isoformat, utcnow

KINDS = {"blogs": "blog", "events": "event"}
STATUSES = ("draft", "scheduled", "published", "archived")
COMMON = ("title", "body", "body_format", "excerpt", "tags", "author")
EVENT_FIELDS = ("starts_at", "ends_at", "location", "capacity", "template_id")
_markdown = MarkdownIt("commonmark", {"html": False})


def sanitize(body: str, body_format: str) -> str:
    """The HTML the platform may show: Markdown rendered first, then nh3's allow-list (no scripts, no handlers)."""
    html = _markdown.render(body or "") if body_format == "markdown" else (body or "")
    return nh3.clean(html, link_rel="noopener noreferrer nofollow")


def item_dict(kind: str, doc: dict) -> dict:
    out = _plain({k: v for k, v in doc.items() if k != "_id"})
    out.update(id=str(doc["_id"]), kind=kind, version=int(doc.get("version") or 0),
               status=doc.get("status") or "draft")
    return out


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ApiError(404, f"There is no content kind {kind!r}.")
    return kind


def publish_due(kind: str, actor: str = "scheduler") -> int:
    """Publish the scheduled items whose time has come (the periodic job, and every list so it is never stale).

    Each item is claimed by one conditional write (still scheduled, still due), so however many workers and lists
    run at once, an item is published, versioned and audited exactly once."""
    collection = get_db()[_kind(kind)]
    now = utcnow()
    due = {"status": "scheduled", "publish_at": {"$lte": now}}
    published = 0
    for doc in collection.find(due, {"_id": 1}).limit(500):
        after = collection.find_one_and_update(
            {"_id": doc["_id"], **due},
            {"$set": {"status": "published", "published_at": now, "updated_at": now, "updated_by": actor},
             "$inc": {"version": 1}}, return_document=True)
        if after is None:
            continue  # another worker (or a person) got there first
        published += 1
        record(f"{KINDS[kind]}.published", f"{KINDS[kind]}:{after['_id']}", {"status": "scheduled"},
               {"status": "published", "publish_at": isoformat(after.get("publish_at")), "scheduled": True},
               actor=actor)
    return published


def list_items(kind: str, *, status=None, q=None, limit=50, cursor=None) -> dict:
    _kind(kind)
    publish_due(kind)
    clauses = []
    if status == "draft":
        clauses.append({"$or": [{"status": "draft"}, {"status": None}]})
    elif status:
        clauses.append({"status": status})
    if q:
        import re
        clauses.append({"title": {"$regex": re.escape(q), "$options": "i"}})
    after = decode_id_cursor(cursor)
    if after is not None:
        clauses.append({"_id": {"$lt": after}})
    docs = list(get_db()[kind].find({"$and": clauses} if clauses else {}).sort("_id", -1).limit(limit + 1))
    more, docs = len(docs) > limit, docs[:limit]
    rows = get_db()[kind].aggregate([{"$group": {"_id": {"$ifNull": ["$status", "draft"]}, "n": {"$sum": 1}}}])
    counts = {str(r["_id"]): r["n"] for r in rows}
    next_cursor = None
    if more and docs:
        next_cursor = encode_id_cursor(docs[-1]["_id"])
    return {"items": [item_dict(kind, d) for d in docs], "next_cursor": next_cursor, "counts": counts}


def get_item(kind: str, item_id: str) -> dict:
    doc = get_db()[_kind(kind)].find_one(_id_filter(item_id))
    if doc is None:
        raise ApiError(404, f"No {KINDS[kind]} has the id {item_id}.")
    return doc


def _fields(kind: str, data: dict, stored_format: str | None = None) -> dict:
    allowed = COMMON + (EVENT_FIELDS if kind == "events" else ())
    out = {k: data[k] for k in allowed if k in data}
    for key in ("starts_at", "ends_at"):
        if isinstance(out.get(key), datetime):
            out[key] = as_utc(out[key])
    if "body" in out or "body_format" in out:
        out.setdefault("body_format", stored_format or "html")
        out["body_html"] = sanitize(out.get("body", data.get("body") or ""), out["body_format"])
    if kind == "events" and out.get("starts_at") and out.get("ends_at") and out["ends_at"] < out["starts_at"]:
        raise ApiError(422, "An event cannot end before it starts.",
                       [{"field": "ends_at", "message": "before starts_at"}])
    return out


def create(kind: str, data: dict, actor: str) -> dict:
    _kind(kind)
    now = utcnow()
    doc = {**_fields(kind, data), "status": "draft", "version": 0, "created_at": now, "created_by": actor,
           "updated_at": now, "updated_by": actor}
    doc["_id"] = get_db()[kind].insert_one(doc).inserted_id
    record(f"{KINDS[kind]}.created", f"{KINDS[kind]}:{doc['_id']}", None, {"title": doc.get("title")}, actor=actor)
    return item_dict(kind, doc)


def update(kind: str, item_id: str, data: dict, version: int | None, actor: str) -> dict:
    doc = get_item(kind, item_id)
    changes = {**_fields(kind, data, doc.get("body_format")), "updated_at": utcnow(), "updated_by": actor}
    if data.get("status") == "archived":
        changes["status"] = "archived"
    after = _write(kind, doc, version, changes)
    record(f"{KINDS[kind]}.updated", f"{KINDS[kind]}:{after['_id']}",
           {k: _plain(doc.get(k)) for k in changes if k not in ("updated_at", "updated_by")},
           {k: _plain(after.get(k)) for k in changes if k not in ("updated_at", "updated_by")}, actor=actor)
    return item_dict(kind, after)


def publish(kind: str, item_id: str, *, at: datetime | None = None, version: int | None = None,
            actor: str = "system") -> dict:
    """Publish now, or schedule for `at` (status scheduled until then)."""
    doc = get_item(kind, item_id)
    now = utcnow()
    at = as_utc(at)
    if at and at > now:
        changes = {"status": "scheduled", "publish_at": at}
    else:
        changes = {"status": "published", "published_at": now, "publish_at": None}
    after = _write(kind, doc, version, {**changes, "updated_at": now, "updated_by": actor})
    record(f"{KINDS[kind]}.{changes['status']}", f"{KINDS[kind]}:{after['_id']}", {"status": doc.get("status")},
           {"status": after["status"], "publish_at": isoformat(at) if at else None}, actor=actor)
    return item_dict(kind, after)


def unpublish(kind: str, item_id: str, *, version: int | None = None, actor: str = "system") -> dict:
    doc = get_item(kind, item_id)
    after = _write(kind, doc, version, {"status": "draft", "publish_at": None, "updated_at": utcnow(),
                                        "updated_by": actor})
    record(f"{KINDS[kind]}.unpublished", f"{KINDS[kind]}:{after['_id']}", {"status": doc.get("status")},
           {"status": "draft"}, actor=actor)
    return item_dict(kind, after)


def attendees(event: dict) -> list[dict]:
    """Who attends, from the platform's data: the event's `attendees` (ids or objects) and assigned volunteers."""
    ids = []
    for entry in event.get("attendees") or []:
        user_id = entry.get("user_id") if isinstance(entry, dict) else entry
        if isinstance(user_id, str):
            ids.append(user_id)
    volunteers = get_db().volunteers.find({"event_id": str(event["_id"])}, {"user_id": 1})
    ids += [v["user_id"] for v in volunteers if isinstance(v.get("user_id"), str)]
    ids = list(dict.fromkeys(ids))
    members = {m["user_id"]: m for m in get_db().users.find({"user_id": {"$in": ids}},
                                                           {"user_id": 1, "name": 1, "email": 1})}
    return [{"user_id": i, "name": (members.get(i) or {}).get("name"), "email": (members.get(i) or {}).get("email")}
            for i in ids]
