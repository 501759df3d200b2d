"""A member's communication data, for data-rights requests (engagement's export and erase call these).

Mail sent or queued to the member (by user_id or address) with its tracking, preferences, notification
history, and the suppression that keeps an erased address from being mailed again.
"""

from __future__ import annotations

from console.blueprints.communication import prefs
from console.blueprints.communication.models import (
    EmailQueue,
    EmailTracking,
    NotificationHistory,
    NotificationPreference,
    Suppression,
)

_MAIL_FIELDS = {"_id": 1, "channel": 1, "to_email": 1, "template_name": 1, "subject": 1, "text_body": 1,
                "category": 1, "priority": 1, "status": 1, "reason": 1, "attempts": 1, "created_at": 1,
                "sent_at": 1, "opens": 1, "clicks": 1, "first_opened_at": 1}


def _mail_query(user_id: str, email: str | None) -> dict:
    clauses = [{"user_id": user_id}]
    if email:
        clauses.append({"to_email": email.lower()})
        clauses.append({"to_email": email})
    return {"$or": clauses}


def export_member(user_id: str, email: str | None) -> dict:
    """{"mail" (each with its "tracking"), "preferences", "history", "suppression"} of one member."""
    mail = list(EmailQueue._get_collection().find(_mail_query(user_id, email), _MAIL_FIELDS).sort("created_at", 1))
    tracking: dict[str, list] = {}
    if mail:
        for row in EmailTracking._get_collection().find({"email_id": {"$in": [m["_id"] for m in mail]}},
                                                        {"_id": 0, "email_id": 1, "type": 1, "at": 1, "url": 1}):
            tracking.setdefault(str(row["email_id"]), []).append({"type": row["type"], "at": row["at"],
                                                                  "url": row.get("url")})
    history = list(NotificationHistory._get_collection().find({"user_id": user_id}, {"_id": 0, "counted": 0})
                   .sort("created_at", 1))
    return {
        "mail": [{**{k: v for k, v in m.items() if k != "_id"}, "id": str(m["_id"]),
                  "tracking": tracking.get(str(m["_id"]), [])} for m in mail],
        "preferences": NotificationPreference._get_collection().find_one({"user_id": user_id}, {"_id": 0}),
        "history": history,
        "suppression": Suppression._get_collection().find_one({"email": email.lower()}, {"_id": 0})
        if email else None,
    }


def erase_member(user_id: str, email: str | None) -> dict[str, int]:
    """Delete the member's mail, tracking, history and preferences, then suppress the address; the counts."""
    removed: dict[str, int] = {}
    mail_ids = [doc["_id"] for doc in EmailQueue._get_collection().find(_mail_query(user_id, email), {"_id": 1})]
    removed["tracking"] = EmailTracking._get_collection().delete_many(
        {"email_id": {"$in": mail_ids}}).deleted_count if mail_ids else 0
    removed["mail"] = EmailQueue._get_collection().delete_many({"_id": {"$in": mail_ids}}).deleted_count \
        if mail_ids else 0
    history = {"$or": [{"user_id": user_id}, *([{"recipient": email}] if email else [])]}
    removed["history"] = NotificationHistory._get_collection().delete_many(history).deleted_count
    removed["preferences"] = NotificationPreference._get_collection().delete_many({"user_id": user_id}).deleted_count
    if email:
        prefs.suppress(email, "erased", "the member's data was erased")
    return removed
