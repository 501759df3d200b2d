"""Tracking: signed tokens, link rewriting, and open/click/unsubscribe events (layout.py composes emails)."""

from __future__ import annotations

import re
from functools import lru_cache

from bson import ObjectId
from bson.errors import InvalidId
from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

from console.blueprints.communication.models import EmailQueue, EmailTracking
from console.timeutil import utcnow

SALTS = {"open": "mail-open", "click": "mail-click", "unsubscribe": "mail-unsubscribe"}
HREF = re.compile(r'''(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"'\s]+)\2''', re.IGNORECASE)


def _serializer(kind: str) -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=SALTS[kind])


def make_token(kind: str, email_id, link: int | None = None) -> str:
    payload = [str(email_id)] if link is None else [str(email_id), int(link)]
    return _serializer(kind).dumps(payload)


def read_token(kind: str, token: str) -> tuple[ObjectId, int | None] | None:
    """The email id (and link index) a token names, or None when forged or malformed."""
    try:
        payload = _serializer(kind).loads(token)
        email_id = ObjectId(payload[0])
    except (BadSignature, InvalidId, TypeError, IndexError, KeyError, ValueError):
        return None
    link = payload[1] if len(payload) > 1 else None
    if link is not None and not isinstance(link, int):
        return None
    return email_id, link


@lru_cache(maxsize=8)
def _adapter(app_id: int):
    return current_app.url_map.bind("localhost")


def public_url(endpoint: str, **values) -> str:
    """An absolute URL on PUBLIC_BASE_URL; works in the worker, which has no request."""
    path = _adapter(id(current_app._get_current_object())).build(endpoint, values)
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + path


def rewrite_links(markup: str, email_id) -> tuple[str, list[str]]:
    """Point every http(s) link at the click route; return the new HTML and the recorded URLs."""
    links: list[str] = []

    def swap(match: re.Match) -> str:
        links.append(match.group(3).replace("&amp;", "&"))
        token = make_token("click", email_id, len(links) - 1)
        return f"{match.group(1)}{match.group(2)}{public_url('tracking.click', token=token)}{match.group(2)}"

    return HREF.sub(swap, markup), links


# --- events ------------------------------------------------------------------------------------------------

def record_open(email_id: ObjectId) -> bool:
    now = utcnow()
    coll = EmailQueue._get_collection()
    if not coll.update_one({"_id": email_id}, {"$inc": {"opens": 1}}).matched_count:
        return False
    coll.update_one({"_id": email_id, "first_opened_at": None}, {"$set": {"first_opened_at": now}})
    EmailTracking._get_collection().insert_one({"email_id": email_id, "type": "open", "at": now})
    return True


def click_target(email_id: ObjectId, link: int) -> str | None:
    """The URL recorded for this email's link, after counting the click; None when there is none."""
    doc = EmailQueue._get_collection().find_one({"_id": email_id}, {"links": 1})
    links = (doc or {}).get("links") or []
    if link < 0 or link >= len(links):
        return None
    now = utcnow()
    EmailQueue._get_collection().update_one({"_id": email_id}, {"$inc": {"clicks": 1}})
    EmailTracking._get_collection().insert_one({"email_id": email_id, "type": "click", "at": now,
                                                "link_index": link, "url": links[link]})
    return links[link]


def email_for_unsubscribe(email_id: ObjectId) -> dict | None:
    return EmailQueue._get_collection().find_one({"_id": email_id}, {"to_email": 1, "user_id": 1, "category": 1})


def unsubscribe(email: dict) -> dict:
    """Turn the email's category off for its member (or suppress a bare address) and record the event."""
    from console.blueprints.communication.prefs import ALWAYS_ON, save_preferences, suppress

    category = email.get("category") or "marketing"
    if category == ALWAYS_ON:
        outcome = {"category": category, "changed": False,
                   "message": "Security notices cannot be turned off; they protect your account."}
    elif email.get("user_id"):
        save_preferences(email["user_id"], {"categories": {category: False}}, actor="unsubscribe-link")
        outcome = {"category": category, "changed": True, "message": f"You will no longer get {category} emails."}
    else:
        suppress(email["to_email"], "unsubscribed", f"one-click unsubscribe from {category}", email["_id"])
        outcome = {"category": category, "changed": True, "message": "You will no longer get emails from us."}
    EmailTracking._get_collection().insert_one({"email_id": email["_id"], "type": "unsubscribe", "at": utcnow(),
                                                "detail": outcome["message"]})
    return outcome
