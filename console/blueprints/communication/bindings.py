"""Platform events → email: `notify()` sends the template bound to an event, honouring preferences, quiet hours,
frequency caps and suppressions; the bindings (event → template, category, priority, on/off) are data."""

from __future__ import annotations

import re

from console import audit
from console.blueprints.communication.models import EmailTemplate, NotificationBinding
from console.blueprints.communication.queue import PRIORITIES
from console.errors import ApiError
from console.timeutil import utcnow

EVENT_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+){0,4}$")


def binding_dict(doc: dict, templates: dict | None = None) -> dict:
    template = (templates or {}).get(doc["template_key"])
    return {"event": doc["event"], "template_key": doc["template_key"],
            "template_id": str(template["_id"]) if template else None,
            "template_name": template["name"] if template else None,
            "template_enabled": bool(template) and template.get("enabled", True) is not False,
            "category": doc.get("category"), "effective_category": doc.get("category") or (template or {}).get(
                "category"), "priority": doc.get("priority") or "normal", "enabled": doc.get("enabled", True),
            "description": doc.get("description") or "", "builtin": bool(doc.get("builtin")),
            "version": doc.get("version", 1), "updated_at": doc.get("updated_at"), "updated_by": doc.get("updated_by")}


def _templates(keys) -> dict:
    cursor = EmailTemplate._get_collection().find({"key": {"$in": list(set(keys))}},
                                                  {"key": 1, "name": 1, "enabled": 1, "category": 1})
    return {doc["key"]: doc for doc in cursor}


def list_bindings() -> list[dict]:
    docs = list(NotificationBinding._get_collection().find().sort("event", 1))
    templates = _templates(doc["template_key"] for doc in docs)
    return [binding_dict(doc, templates) for doc in docs]


def get_binding(event: str) -> dict:
    doc = NotificationBinding._get_collection().find_one({"event": event})
    if doc is None:
        raise ApiError(404, f"No binding for the event {event!r}.")
    return binding_dict(doc, _templates([doc["template_key"]]))


def save_binding(event: str, data: dict, actor: str | None = None) -> dict:
    """Create or change the binding of an event: {"template_key", "category"?, "priority"?, "enabled"?}."""
    if not EVENT_RE.match(event or ""):
        raise ApiError(422, "Bad event name.", [{"field": "event", "message": "dotted lowercase words, e.g. "
                                                                               "submission.approved"}])
    if data.get("priority") and data["priority"] not in PRIORITIES:
        raise ApiError(422, "Unknown priority.", [{"field": "priority", "message": "one of high, normal, low"}])
    coll = NotificationBinding._get_collection()
    before = coll.find_one({"event": event})
    key = data.get("template_key") or (before or {}).get("template_key")
    if not key or not EmailTemplate.objects(key=key).first():
        raise ApiError(422, "Unknown template.", [{"field": "template_key", "message": f"no template has the key "
                                                                                       f"{key!r}"}])
    if before and data.get("version") is not None and data["version"] != before.get("version", 1):
        raise ApiError(409, "The binding changed meanwhile; reload.", [{"field": "version", "message": "stale"}])
    changes = {"template_key": key, "updated_at": utcnow(), "updated_by": actor}
    for name in ("priority", "enabled", "description"):
        if data.get(name) is not None:
            changes[name] = data[name]
    if "category" in data:  # None: the template's own category
        changes["category"] = data["category"] or None
    coll.update_one({"event": event}, {"$set": changes, "$inc": {"version": 1},
                                       "$setOnInsert": {"event": event, "builtin": False}}, upsert=True)
    after = get_binding(event)
    audit.record("binding.update" if before else "binding.create", f"binding:{event}",
                 {k: before.get(k) for k in ("template_key", "category", "priority", "enabled")} if before else None,
                 {k: after[k] for k in ("template_key", "category", "priority", "enabled")}, actor=actor)
    return after


def notify(event: str, user_id: str | None = None, email: str | None = None, data: dict | None = None,
           event_id: str | None = None) -> dict:
    """Send the template bound to a platform event to one member (or address).

    → {"email_id", "status"} when queued or deferred (quiet hours); {"skipped": reason, "email_id"?} when the
    binding or template is off, or the member's preferences, a frequency cap or a suppression hold it back.
    The same `event_id` for the same event and recipient sends once. Unknown event, recipient or a missing
    required variable: ApiError(422)."""
    from console.blueprints.communication.sending import send_email

    binding = NotificationBinding._get_collection().find_one({"event": event})
    if binding is None:
        raise ApiError(422, f"No template is bound to the event {event!r}.",
                       [{"field": "event", "message": "unknown event; bind it to a template first"}])
    if not binding.get("enabled", True):
        return {"skipped": "binding_disabled"}
    template = EmailTemplate.objects(key=binding["template_key"]).only("id", "enabled").first()
    if template is None or template.enabled is False:
        return {"skipped": "template_disabled"}
    to = {"user_id": user_id} if user_id else {"email": email}
    key = f"notify:{event}:{event_id}:{user_id or (email or '').lower()}" if event_id else None
    result = send_email(str(template.id), to, variables=data or {}, priority=binding.get("priority") or "normal",
                        category=binding.get("category") or None, idempotency_key=key,
                        source={"event": event, "event_id": event_id})
    if result["status"] == "skipped":
        return {"skipped": result["reason"], "email_id": result["email_id"], "duplicate": result["duplicate"]}
    return {"email_id": result["email_id"], "status": result["status"], "duplicate": result["duplicate"]}
