"""What happens to an email after the SMTP hand-over: delivered, bounced (hard or soft), complained.

Reported by provider webhooks (hooks.py) and by bounce reports read from a mailbox (bounces.py); both turn
their input into `DeliveryEvent`s and call `apply_events`. Each event is stored once in email_tracking under
its `key` (a unique index), so a replayed webhook changes nothing; a status only moves up the ranking, so a
late "delivered" never overwrites "bounced". A hard bounce or a complaint suppresses the address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bson import ObjectId
from pymongo.errors import BulkWriteError

from console.blueprints.communication.models import EmailQueue, EmailTracking, NotificationHistory
from console.blueprints.communication.prefs import suppress
from console.timeutil import utcnow

EVENT_TYPES = ("delivered", "bounced", "complained")
# The statuses each event may replace: an email moves only forward, whatever order the reports arrive in.
REPLACES = {"delivered": ("sending", "sent"),
            "bounced": ("sending", "sent", "delivered"),
            "complained": ("sending", "sent", "delivered", "bounced")}
DATE_FIELD = {"delivered": "delivered_at", "bounced": "bounced_at", "complained": "complained_at"}


@dataclass
class DeliveryEvent:
    type: str  # one of EVENT_TYPES
    message_id: str  # the email's Message-ID, with or without <>
    at: datetime
    key: str  # unique for this report of this event: the same key twice is processed once
    bounce_type: str | None = None  # "hard" | "soft" for bounces
    reason: str | None = None
    email_id: ObjectId | None = None  # when the report names the email itself (a VERP return path)


def email_id_for(message_id: str) -> ObjectId | None:
    """Our Message-IDs are <email id@domain>: the id is read back from the local part."""
    local = (message_id or "").strip().strip("<>").partition("@")[0]
    return ObjectId(local) if ObjectId.is_valid(local) else None


def _same_message_id(stored: str | None, given: str) -> bool:
    return (stored or "").strip("<>").lower() == given.strip().strip("<>").lower()


def apply_events(events: list[DeliveryEvent], source: str) -> dict:
    """Apply reported events: {"processed", "unknown", "duplicates"}. Unknown message ids change nothing."""
    ids = {}
    for event in events:
        ids[id(event)] = event.email_id or email_id_for(event.message_id)
    wanted = list({oid for oid in ids.values() if oid is not None})
    docs = {doc["_id"]: doc for doc in EmailQueue._get_collection().find(
        {"_id": {"$in": wanted}}, {"message_id": 1, "to_email": 1, "status": 1})} if wanted else {}
    known = []
    for event in events:
        doc = docs.get(ids[id(event)])
        if doc is not None and (event.email_id is not None or _same_message_id(doc.get("message_id"),
                                                                                 event.message_id)):
            known.append((event, doc))
    fresh = _store_once(known, source)
    for event, doc in sorted(fresh, key=lambda pair: pair[0].at):
        _advance(event, doc)
    return {"processed": len(fresh), "unknown": len(events) - len(known), "duplicates": len(known) - len(fresh)}


def _store_once(known: list[tuple], source: str) -> list[tuple]:
    """Insert each event into the timeline under its key; those whose key was there already are dropped."""
    if not known:
        return []
    now = utcnow()
    rows = [{"email_id": doc["_id"], "type": event.type, "at": event.at, "received_at": now, "source": source,
             "event_key": f"{source}:{event.key}", "bounce_type": event.bounce_type,
             "detail": (event.reason or "")[:1000] or None} for event, doc in known]
    try:
        EmailTracking._get_collection().insert_many(rows, ordered=False)
    except BulkWriteError as error:
        duplicate = {e["index"] for e in error.details.get("writeErrors", []) if e.get("code") == 11000}
        if len(duplicate) != len(error.details.get("writeErrors", [])):
            raise
        return [pair for index, pair in enumerate(known) if index not in duplicate]
    return known


def _advance(event: DeliveryEvent, doc: dict) -> None:
    fields = {"status": event.type, DATE_FIELD[event.type]: event.at, "updated_at": utcnow()}
    if event.type == "bounced":
        fields.update(bounce_type=event.bounce_type or "hard", reason=event.reason)
    elif event.type == "complained":
        fields["reason"] = event.reason or "the recipient reported this email as spam"
    changed = EmailQueue._get_collection().update_one(
        {"_id": doc["_id"], "status": {"$in": list(REPLACES[event.type])}}, {"$set": fields}).modified_count
    if changed:
        NotificationHistory._get_collection().update_many(
            {"email_id": doc["_id"]}, {"$set": {"status": event.type, "reason": fields.get("reason")}})
    if not doc.get("to_email"):
        return  # a text message: its number is not an email address to suppress
    if event.type == "complained" or (event.type == "bounced" and (event.bounce_type or "hard") == "hard"):
        reason = "complaint" if event.type == "complained" else "hard_bounce"
        suppress(doc["to_email"], reason, event.reason or event.type, doc["_id"])
