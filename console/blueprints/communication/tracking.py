"""Tracking: signed tokens, link rewriting, the layout every email wears, and open/click/unsubscribe events."""

from __future__ import annotations

import html
import logging
from datetime import timedelta
from functools import lru_cache

from bson import ObjectId
from bson.errors import InvalidId
from flask import current_app, request
from itsdangerous import BadSignature, URLSafeSerializer
from limits import parse as parse_limit
from markupsafe import Markup

from console.blueprints.communication.htmltokens import tokens
from console.blueprints.communication.models import EmailQueue, EmailTracking
from console.timeutil import utcnow

log = logging.getLogger(__name__)
SALTS = {"open": "mail-open", "click": "mail-click", "unsubscribe": "mail-unsubscribe"}


def _serializer(kind: str) -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=SALTS[kind])


def make_token(kind: str, email_id, link: int | None = None) -> str:
    payload = [str(email_id)] if link is None else [str(email_id), int(link)]
    return _serializer(kind).dumps(payload)


def read_token(kind: str, token: str) -> tuple[ObjectId, int | None] | None:
    """The email id (and link index) a token names, or None when forged, malformed or (open and click links)
    older than TRACKING_TOKEN_MAX_AGE_DAYS. The age is the email's own: its id holds its creation time."""
    try:
        payload = _serializer(kind).loads(token)
        email_id = ObjectId(payload[0])
    except (BadSignature, InvalidId, TypeError, IndexError, KeyError, ValueError):
        return None
    link = payload[1] if len(payload) > 1 else None
    if link is not None and not isinstance(link, int):
        return None
    max_age = int(current_app.config.get("TRACKING_TOKEN_MAX_AGE_DAYS") or 0)
    if kind != "unsubscribe" and max_age > 0 and email_id.generation_time < utcnow() - timedelta(days=max_age):
        return None
    return email_id, link


def should_record(kind: str, email_id: ObjectId, link: int | None = None) -> bool:
    """Whether this hit is written: once per token within TRACKING_DEDUP_SECONDS, and within the client IP's
    TRACKING_RATE_LIMIT. A refused hit still gets its pixel or redirect; it only is not counted."""
    from console.extensions import limiter
    from console.queues import get_redis

    config = current_app.config
    try:
        if config.get("RATELIMIT_ENABLED", True) and not limiter.limiter.hit(
                parse_limit(config["TRACKING_RATE_LIMIT"]), "tracking", request.remote_addr or "unknown"):
            return False
    except Exception:  # the limiter's storage down: count the hit rather than lose it
        log.warning("tracking: rate limit unavailable", exc_info=True)
    window = int(config.get("TRACKING_DEDUP_SECONDS") or 0)
    if window <= 0:
        return True
    try:
        return bool(get_redis().set(f"track:{kind}:{email_id}:{link}", 1, nx=True, ex=window))
    except Exception:
        log.warning("tracking: could not de-duplicate", exc_info=True)
        return True


@lru_cache(maxsize=8)
def _adapter(app_id: int):
    return current_app.url_map.bind("localhost")


def public_url(endpoint: str, **values) -> str:
    """An absolute URL on PUBLIC_BASE_URL; works in the worker, which has no request."""
    path = _adapter(id(current_app._get_current_object())).build(endpoint, values)
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + path


def rewrite_links(markup: str, email_id) -> tuple[str, list[str]]:
    """Point every http(s) link at the click route; return the new HTML and the recorded URLs.

    One pass of a linear tokenizer: time grows with the size of the HTML, whatever it holds."""
    links: list[str] = []
    pieces, done = [], 0
    for token in tokens(markup):
        href = token.attr("href") if token.kind == "start" and token.name == "a" else None
        url = html.unescape(href.value).strip() if href is not None and href.value else ""
        if not url.lower().startswith(("http://", "https://")):
            continue
        links.append(url)
        target = public_url("tracking.click", token=make_token("click", email_id, len(links) - 1))
        pieces += [markup[done:href.start], target if href.quote else f'"{target}"']
        done = href.end
    pieces.append(markup[done:])
    return "".join(pieces), links


def compose(rendered: dict, email_id, *, category: str | None, track: bool = True) -> dict:
    """Wrap rendered content in the shared layout with the unsubscribe footer and the tracking pixel."""
    env = current_app.jinja_env
    unsubscribe_url = public_url("tracking.unsubscribe", token=make_token("unsubscribe", email_id))
    content, links = rewrite_links(rendered["html_body"], email_id) if track else (rendered["html_body"], [])
    pixel = public_url("tracking.open_pixel", token=make_token("open", email_id)) if track else None
    from console.blueprints.communication.render import html_to_text

    text = rendered.get("text_body") or html_to_text(rendered["html_body"])
    safe_content = Markup(content)  # noqa: S704  (rendered by the autoescaping sandbox)
    context = {"subject": rendered["subject"], "content": safe_content, "text": text, "category": category,
               "unsubscribe_url": unsubscribe_url, "pixel_url": pixel,
               "brand": current_app.config.get("MAIL_BRAND", "Community")}
    return {
        "subject": rendered["subject"],
        "html_body": env.get_template("email/layout.html").render(context),
        "text_body": env.get_template("email/layout.txt").render(context),
        "links": links,
        "unsubscribe_url": unsubscribe_url,
    }


# --- events ------------------------------------------------------------------------------------------------

def record_open(email_id: ObjectId) -> bool:
    """Count an open; False when there is no such email. Repeats and floods are answered but not written."""
    now = utcnow()
    coll = EmailQueue._get_collection()
    if not should_record("open", email_id):
        return coll.find_one({"_id": email_id}, {"_id": 1}) is not None
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
    if not should_record("click", email_id, link):
        return links[link]
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
