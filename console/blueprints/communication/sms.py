"""Text messages through the same durable queue as mail: queue documents with `channel: "sms"` in email_queue,
delivered by the same job (delivery.deliver), with the same priorities, retries, reconcile and claims.

Numbers are validated and stored in E.164. A provider is a class with `send(to, body, callback_url) -> id` and
`find(to, body, since) -> id | None`, registered in PROVIDERS and chosen with SMS_PROVIDER: "log" writes to
the log (development), "twilio" speaks Twilio's Messages REST API (TWILIO_* settings).

Exactly once: before a message goes to the provider its journal entry (handover.HANDOVER_KEY) is set to
"c<time>" and Redis has confirmed it; the provider's answer turns it into "a<time>". An email's SMTP hand-over
has one moment that decides it; an HTTP request has none, so an entry still "c" (the worker died, or the
connection broke, while the provider had the request) is settled by asking the provider whether a message
with this body went to this number since then: if so, it is recorded as sent, never sent again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import phonenumbers
from bson import ObjectId
from flask import current_app
from pymongo.errors import DuplicateKeyError

from console.audit import record
from console.blueprints.communication.models import EmailQueue, NotificationHistory, Suppression
from console.blueprints.communication.prefs import decide, save_preferences
from console.blueprints.communication.queue import HANDOVER_KEY, enqueue_delivery, history_entry, normalize_priority
from console.blueprints.communication.render import RenderError, html_to_text, render_fields
from console.errors import ApiError
from console.members import Member
from console.queues import get_redis
from console.timeutil import utcnow

log = logging.getLogger(__name__)
MAX_LENGTH = 1600  # Twilio's limit for one message (it splits into segments itself)
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
START_WORDS = {"START", "YES", "UNSTOP", "OPTIN"}
JOURNAL_TTL = 14 * 24 * 3600


class SmsTransient(Exception):
    """The provider could not take the message now; it is retried."""


class SmsPermanent(Exception):
    """The provider refused the message for good (a bad number, say)."""


def normalize_phone(raw: str | None, region: str | None = None) -> str | None:
    """The number in E.164 (+14155550100), or None when it is not a possible, valid number."""
    if not raw or len(raw) > 40:
        return None
    try:
        number = phonenumbers.parse(raw, region or current_app.config.get("SMS_DEFAULT_REGION") or "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- providers ---------------------------------------------------------------------------------------------

class LogSmsProvider:
    """Development: write the message to the log instead of sending it."""

    def send(self, to: str, body: str, callback_url: str | None = None) -> str:
        message_id = f"log-{uuid.uuid4().hex[:12]}"
        log.info("SMS to %s (%s): %s", to, message_id, body)
        return message_id

    def find(self, to: str, body: str, since: float) -> str | None:
        return None  # nothing to ask: a log line written twice harms no one


class TwilioProvider:
    """Twilio's Messages REST API (2010-04-01): form-encoded POST with HTTP basic auth, JSON answers."""

    def __init__(self, config=None):
        config = config or current_app.config
        self.sid, self.token = config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"]
        self.sender = config["TWILIO_FROM"]
        self.base = config["TWILIO_API_BASE"].rstrip("/")
        if not self.base.startswith(("https://", "http://")):
            raise SmsPermanent("TWILIO_API_BASE must be an http(s) URL")
        if not (self.sid and self.token and self.sender):
            raise SmsPermanent("Twilio is not configured (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM)")
        self.auth = "Basic " + base64.b64encode(f"{self.sid}:{self.token}".encode()).decode()

    def _url(self, query: dict | None = None) -> str:
        url = f"{self.base}/2010-04-01/Accounts/{urllib.parse.quote(self.sid)}/Messages.json"
        return f"{url}?{urllib.parse.urlencode(query)}" if query else url

    def _call(self, request: urllib.request.Request) -> dict:
        request.add_header("Authorization", self.auth)
        request.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  (checked: http(s) only)
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            try:
                detail = json.loads(error.read() or b"{}")
            except ValueError:
                detail = {}
            reason = f"{error.code} {detail.get('code', '')} {detail.get('message') or error.reason}".strip()
            if error.code == 429 or error.code >= 500:
                raise SmsTransient(f"provider busy: {reason}") from None
            raise SmsPermanent(f"provider refused: {reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise SmsTransient(f"provider unreachable: {type(error).__name__}: {error}") from None

    def send(self, to: str, body: str, callback_url: str | None = None) -> str:
        form = {"To": to, "From": self.sender, "Body": body, **({"StatusCallback": callback_url} if callback_url
                                                                else {})}
        data = urllib.parse.urlencode(form).encode()
        answer = self._call(urllib.request.Request(self._url(), data=data, method="POST",  # noqa: S310
                                                   headers={"Content-Type": "application/x-www-form-urlencoded"}))
        if not answer.get("sid"):
            raise SmsTransient("the provider answered without a message sid")
        return answer["sid"]

    def find(self, to: str, body: str, since: float) -> str | None:
        day = datetime.fromtimestamp(since - 86400, UTC).strftime("%Y-%m-%d")
        answer = self._call(urllib.request.Request(self._url({"To": to, "DateSent>": day, "PageSize": 100})))  # noqa: S310
        for item in answer.get("messages") or []:
            try:
                created = parsedate_to_datetime(item.get("date_created") or "").timestamp()
            except (TypeError, ValueError):
                continue
            if item.get("body") == body and created >= int(since) - 1:
                return item.get("sid")
        return None


PROVIDERS = {"log": LogSmsProvider, "twilio": TwilioProvider}


def provider():
    name = current_app.config.get("SMS_PROVIDER") or "log"
    if name not in PROVIDERS:
        raise SmsPermanent(f"unknown SMS_PROVIDER {name!r}")
    return PROVIDERS[name]()


# --- queueing ----------------------------------------------------------------------------------------------

def _template_text(template_key: str | None, template_id: str | None) -> tuple[dict, str]:
    from console.blueprints.communication.models import EmailTemplate

    coll = EmailTemplate._get_collection()
    if template_key:
        doc, field, value = coll.find_one({"key": template_key}), "template_key", template_key
    else:
        doc = coll.find_one({"_id": ObjectId(template_id)}) if ObjectId.is_valid(template_id or "") else None
        field, value = "template_id", template_id
    if doc is None:
        raise ApiError(422, "Unknown template.", [{"field": field, "message": f"no template {value!r}"}])
    return doc, doc.get("text_body") or html_to_text(doc.get("html_body") or "")


def _recipient(to: dict) -> tuple[str | None, str, dict | None]:
    """(user_id, E.164 number, member) for {"user_id"} or {"phone"}; 422 when there is no valid number."""
    if to.get("user_id"):
        member = Member._get_collection().find_one({"user_id": to["user_id"]}, {"user_id": 1, "phone": 1, "name": 1})
        if member is None:
            raise ApiError(422, "Unknown member.", [{"field": "to.user_id",
                                                     "message": f"no member has the user_id {to['user_id']!r}"}])
        phone = normalize_phone(member.get("phone"))
        if not phone:
            raise ApiError(422, "The member has no valid phone number.",
                           [{"field": "to.user_id", "message": f"member {to['user_id']!r} has no valid phone number"}])
        return to["user_id"], phone, member
    phone = normalize_phone(to.get("phone"))
    if not phone:
        raise ApiError(422, "Not a valid phone number.",
                       [{"field": "to.phone", "message": f"{to.get('phone')!r} is not a valid phone number"}])
    member = Member._get_collection().find_one({"phone": {"$in": spellings(phone)}},
                                               {"user_id": 1, "phone": 1, "name": 1})
    return (member or {}).get("user_id"), phone, member


def _decision(user_id: str | None, phone: str, category: str, now: datetime) -> tuple:
    if Suppression._get_collection().find_one({"email": phone}, {"_id": 1}):
        return "skip", "opted_out", None  # a STOP from a number no member has
    return decide([{"user_id": user_id}], category, channel="sms", now=now)[0]


def queue_sms(to: dict, *, text: str | None = None, template_key: str | None = None, template_id: str | None = None,
              variables: dict | None = None, category: str | None = None, priority: str = "normal",
              idempotency_key: str | None = None, actor: str | None = None) -> dict:
    """Queue one text message; a repeated idempotency key answers with the first and sends nothing new."""
    coll = EmailQueue._get_collection()
    if idempotency_key:
        existing = coll.find_one({"idempotency_key": idempotency_key}, {"status": 1})
        if existing:
            return {"sms_id": str(existing["_id"]), "status": existing["status"], "reason": None, "duplicate": True}
    priority = normalize_priority(priority)
    user_id, phone, member = _recipient(to)
    template = None
    if text is None:
        template, source = _template_text(template_key, template_id)
        name = (member or {}).get("name") or ""
        data = {"name": name, "first_name": name.split(" ")[0] if name else "", "user_id": user_id,
                **(variables or {})}
        try:
            text = " ".join(render_fields({"text_body": source}, data)["text_body"].split())
        except RenderError as error:
            raise ApiError(422, "The template failed to render with these variables.", error.errors) from None
    if not text.strip() or len(text) > MAX_LENGTH:
        raise ApiError(422, "The message is empty or too long.",
                       [{"field": "text", "message": f"between 1 and {MAX_LENGTH} characters"}])
    category = category or (template or {}).get("category") or "product"
    now = utcnow()
    verdict, reason, until = _decision(user_id, phone, category, now)
    sms_id = ObjectId()
    doc = {"_id": sms_id, "channel": "sms", "to_phone": phone, "user_id": user_id, "text_body": text,
           "template_id": (template or {}).get("_id"), "template_name": (template or {}).get("name"),
           "category": category, "priority": priority,
           "status": {"send": "queued", "skip": "skipped", "defer": "deferred"}[verdict], "reason": reason,
           "attempts": 0, "created_at": now, "updated_at": now, "next_attempt_at": until, "job_id": f"sms-{sms_id}",
           "created_by": actor, "source": {}, **({"idempotency_key": idempotency_key} if idempotency_key else {})}
    try:
        coll.insert_one(doc)
    except DuplicateKeyError:
        existing = coll.find_one({"idempotency_key": idempotency_key}, {"status": 1})
        return {"sms_id": str(existing["_id"]), "status": existing["status"], "reason": None, "duplicate": True}
    record("sms.send", f"sms:{sms_id}", None, {"status": doc["status"], "to": phone}, template_id=str(
        doc["template_id"]) if doc["template_id"] else None)
    if doc["status"] == "skipped":
        NotificationHistory._get_collection().insert_one(history_entry(doc))
    elif doc["status"] in ("queued", "deferred"):
        enqueue_delivery([sms_id], priority, doc["job_id"], at=until)
    return {"sms_id": str(sms_id), "status": doc["status"], "reason": reason, "duplicate": False}


# --- sending (the worker) ----------------------------------------------------------------------------------

def callback_url(sms_id) -> str | None:
    if current_app.config.get("SMS_PROVIDER") != "twilio":
        return None
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return f"{base}/hooks/sms/twilio?sms_id={sms_id}"


def send_one(doc: dict, entry: bytes | None, sms_provider) -> tuple[str, float, str | None]:
    """Hand one message to the provider, journaled: ("sent", when, provider id) or raises SmsTransient /
    SmsPermanent. `entry` is the journal entry found for it (see the module docstring)."""
    redis = get_redis()
    key = HANDOVER_KEY.format(doc["_id"])
    if entry and entry[:1] in (b"a", b"h"):
        at, _, sid = entry[1:].decode().partition("|")
        return "sent", float(at), sid or None
    if entry and entry[:1] == b"c":
        found = sms_provider.find(doc["to_phone"], doc["text_body"], float(entry[1:].decode().partition("|")[0]))
        if found:
            redis.set(key, b"a%.6f|%s" % (time.time(), found.encode()), ex=JOURNAL_TTL)
            return "sent", time.time(), found
    redis.set(key, b"c%.6f" % time.time(), ex=JOURNAL_TTL)  # confirmed before the request goes out
    try:
        sid = sms_provider.send(doc["to_phone"], doc["text_body"], callback_url(doc["_id"]))
    except SmsPermanent:
        redis.delete(key)  # refused: nothing went out
        raise
    at = time.time()
    redis.set(key, b"a%.6f|%s" % (at, sid.encode()), ex=JOURNAL_TTL)
    return "sent", at, sid


# --- webhooks (hooks.py) -----------------------------------------------------------------------------------

def twilio_signature(url: str, params: dict, token: str) -> str:
    """Twilio's X-Twilio-Signature: base64 HMAC-SHA1 of the URL followed by each POST parameter, sorted by
    name, as name + value."""
    payload = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


STATUS_EVENTS = {"delivered": "delivered", "undelivered": "bounced", "failed": "bounced"}


def status_report(sms_id: str | None, params: dict) -> dict:
    """A delivery-status callback: delivered, or undelivered/failed (recorded as a hard "bounced")."""
    from console.blueprints.communication.delivery_status import DeliveryEvent, apply_events

    kind = STATUS_EVENTS.get(params.get("MessageStatus") or params.get("SmsStatus") or "")
    if kind is None or not ObjectId.is_valid(sms_id or ""):
        return {"processed": 0, "unknown": 0 if kind is None else 1, "duplicates": 0}
    reason = " ".join(x for x in (params.get("ErrorCode"), params.get("ErrorMessage")) if x) or None
    event = DeliveryEvent(kind, "", utcnow(), f"{params.get('MessageSid')}:{kind}", "hard" if kind == "bounced"
                          else None, reason, email_id=ObjectId(sms_id))
    return apply_events([event], "twilio")


def spellings(phone: str) -> list[str]:
    """The ways a member's profile may spell this E.164 number (profiles are not normalised)."""
    number = phonenumbers.parse(phone)
    formats = (phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.INTERNATIONAL,
               phonenumbers.PhoneNumberFormat.NATIONAL)
    out = {phonenumbers.format_number(number, f) for f in formats} | {str(number.national_number), phone[1:]}
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    out |= {national.replace("(", "").replace(") ", "-"), national.replace(" ", "")}
    return sorted(out)


def members_with(phone: str) -> list[dict]:
    """Members whose profile has this number, or who were texted at it."""
    texted = EmailQueue._get_collection().distinct("user_id", {"to_phone": phone, "user_id": {"$ne": None}})
    return list(Member._get_collection().find(
        {"$or": [{"phone": {"$in": spellings(phone)}}, {"user_id": {"$in": texted}}]}, {"user_id": 1}))


def inbound(params: dict) -> dict:
    """An incoming message: STOP-like words turn the member's SMS off, START-like words on again."""
    word = (params.get("Body") or "").strip().split(" ")[0].upper().strip(".!")
    phone = normalize_phone(params.get("From"))
    action = "stop" if word in STOP_WORDS else "start" if word in START_WORDS else None
    if action is None or phone is None:
        return {"action": None}
    members = members_with(phone)
    state = "on" if action == "start" else "off"
    for member in members:
        save_preferences(member["user_id"], {"channels": {"sms": action == "start"}}, actor=f"sms-{action}")
        NotificationHistory._get_collection().insert_one(
            {"user_id": member["user_id"], "recipient": phone, "channel": "sms", "category": None,
             "template": None, "status": "inbound", "reason": f"{word}: SMS turned {state}", "created_at": utcnow()})
    suppressions = Suppression._get_collection()
    if action == "stop":
        suppressions.update_one({"email": phone}, {"$setOnInsert": {
            "email": phone, "reason": "sms_stop", "detail": f"replied {word}", "created_at": utcnow()}}, upsert=True)
    else:
        suppressions.delete_one({"email": phone, "reason": "sms_stop"})
    return {"action": action, "members": [m["user_id"] for m in members]}
