"""Tracking: signed tokens, link rewriting, and open/click/unsubscribe events (layout.py composes emails)."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from ipaddress import ip_address, ip_network

from bson import ObjectId
from bson.errors import InvalidId
from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from limits import parse as parse_limit

from console.blueprints.communication.htmltokens import tokens
from console.blueprints.communication.models import EmailQueue, EmailTracking
from console.timeutil import as_utc, utcnow

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


def should_record(kind: str, email_id: ObjectId, link: int | None = None, *, ip: str = "") -> bool:
    """Whether this hit is written: once per token within TRACKING_DEDUP_SECONDS, and within the client IP's
    TRACKING_RATE_LIMIT. A refused hit still gets its pixel or redirect; it only is not counted."""
    from console.extensions import limiter
    from console.queues import get_redis

    config = current_app.config
    try:
        if config.get("RATELIMIT_ENABLED", True) and not limiter.limiter.hit(
                parse_limit(config["TRACKING_RATE_LIMIT"]), "tracking", ip or "unknown"):
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


# --- events ------------------------------------------------------------------------------------------------

# Opens fetched by mail privacy proxies (Apple Mail Privacy Protection, Google's and Yahoo's image proxies)
# and clicks by link scanners (mail security gateways, previews) are kept, flagged as machine, and counted apart.
PROXY_AGENTS = ("googleimageproxy", "ggpht.com", "yahoomailproxy", "yahoo! slurp")
PROXY_NETWORKS = tuple(ip_network(n) for n in (
    "17.0.0.0/8",  # Apple: Mail Privacy Protection fetches from Apple's own network
    "66.102.0.0/20", "66.249.80.0/20", "64.233.160.0/19", "72.14.192.0/18", "74.125.0.0/16",  # Google's proxy
))
SCANNER_AGENTS = ("barracuda", "mimecast", "proofpoint", "urldefense", "safelinks", "messagelabs", "symantec",
                  "trend micro", "forcepoint", "cisco", "ironport", "fortiguard", "sophos", "zscaler",
                  "headlesschrome", "phantomjs", "python-requests", "python-urllib", "go-http-client", "curl/",
                  "wget/", "java/", "okhttp", "bot", "spider", "crawler", "preview", "facebookexternalhit",
                  "microsoft office existence discovery", "ms-office", "linkchecker")
SCANNER_WINDOW = 10  # seconds: no person opens an email and clicks within this long of its delivery
ALL_AT_ONCE = 5  # seconds: every link of an email clicked within this long is a scanner's sweep


@dataclass(frozen=True)
class Visitor:
    """Who fetched a tracking URL, as far as the request tells."""

    user_agent: str = ""
    ip: str = ""


def _in(networks, ip: str) -> bool:
    try:
        address = ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in networks)


def machine_open(visitor: Visitor) -> str | None:
    """Why an open was not a person (a privacy proxy), or None."""
    agent = visitor.user_agent.strip().lower()
    if any(marker in agent for marker in PROXY_AGENTS):
        return "privacy proxy (user agent)"
    if agent == "mozilla/5.0":  # Apple's proxy sends exactly this and nothing more
        return "privacy proxy (Apple Mail Privacy Protection)"
    if _in(PROXY_NETWORKS, visitor.ip):
        return "privacy proxy (network)"
    return None


def machine_click(visitor: Visitor, handed_over_at: datetime | None, now: datetime) -> str | None:
    """Why a click was not a person (a link scanner), or None."""
    agent = visitor.user_agent.strip().lower()
    if not agent:
        return "link scanner (no user agent)"
    if any(marker in agent for marker in SCANNER_AGENTS):
        return "link scanner (user agent)"
    if handed_over_at is not None and (now - as_utc(handed_over_at)).total_seconds() < SCANNER_WINDOW:
        return f"link scanner (clicked within {SCANNER_WINDOW} s of delivery)"
    return None


def record_open(email_id: ObjectId, visitor: Visitor | None = None) -> bool:
    """Count an open; False when there is no such email. Repeats and floods are answered but not written."""
    now = utcnow()
    machine = machine_open(visitor or Visitor())
    coll = EmailQueue._get_collection()
    if not should_record("open", email_id, ip=visitor.ip if visitor else ""):
        return coll.find_one({"_id": email_id}, {"_id": 1}) is not None
    if not coll.update_one({"_id": email_id}, {"$inc": {"opens": 1, "human_opens": 0 if machine else 1}}).matched_count:
        return False
    coll.update_one({"_id": email_id, "first_opened_at": None}, {"$set": {"first_opened_at": now}})
    EmailTracking._get_collection().insert_one({"email_id": email_id, "type": "open", "at": now, "machine": machine,
                                                "user_agent": (visitor.user_agent if visitor else "")[:300]})
    return True


def click_target(email_id: ObjectId, link: int, visitor: Visitor | None = None) -> str | None:
    """The URL recorded for this email's link, after counting the click; None when there is none."""
    coll = EmailQueue._get_collection()
    doc = coll.find_one({"_id": email_id}, {"links": 1, "sent_at": 1, "delivered_at": 1})
    links = (doc or {}).get("links") or []
    if link < 0 or link >= len(links):
        return None
    if not should_record("click", email_id, link, ip=visitor.ip if visitor else ""):
        return links[link]
    now = utcnow()
    machine = machine_click(visitor or Visitor(), doc.get("delivered_at") or doc.get("sent_at"), now)
    events = EmailTracking._get_collection()
    inserted = events.insert_one({"email_id": email_id, "type": "click", "at": now, "link_index": link,
                                  "url": links[link], "machine": machine,
                                  "user_agent": (visitor.user_agent if visitor else "")[:300]}).inserted_id
    coll.update_one({"_id": email_id}, {"$inc": {"clicks": 1, "human_clicks": 0 if machine else 1}})
    if not machine and len(links) > 1:
        _flag_sweep(email_id, len(links), now, inserted)
    return links[link]


def _flag_sweep(email_id: ObjectId, link_count: int, now: datetime, latest) -> None:
    """Every link clicked within a few seconds: a scanner's sweep. Its clicks become machine ones."""
    events = EmailTracking._get_collection()
    recent = list(events.find({"email_id": email_id, "type": "click", "at": {"$gte": now - timedelta(
        seconds=ALL_AT_ONCE)}}, {"link_index": 1, "machine": 1}))
    if len({row.get("link_index") for row in recent}) < link_count:
        return
    human = [row["_id"] for row in recent if not row.get("machine")]
    events.update_many({"_id": {"$in": human}}, {"$set": {"machine": "link scanner (every link at once)"}})
    EmailQueue._get_collection().update_one({"_id": email_id}, {"$inc": {"human_clicks": -len(human)}})


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
    now = utcnow()
    EmailTracking._get_collection().insert_one({"email_id": email["_id"], "type": "unsubscribe", "at": now,
                                                "detail": outcome["message"]})
    if outcome["changed"]:
        EmailQueue._get_collection().update_one({"_id": email["_id"], "unsubscribed_at": None},
                                                {"$set": {"unsubscribed_at": now}})
    return outcome
