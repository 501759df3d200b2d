"""Public, signed webhooks from mail and SMS providers: `POST /hooks/mail/<provider>`, `POST /hooks/sms/<provider>`.

Each provider's request is checked against its own signature and a timestamp no more than five minutes off,
then turned into delivery events (delivery_status.py for mail, sms.py for SMS). A provider whose setting is
empty is not there (404). A bad signature is 401 and changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

from flask import Blueprint, Response, abort, current_app, jsonify, request

from console.blueprints.communication import sms
from console.blueprints.communication.delivery_status import DeliveryEvent, apply_events
from console.security import csrf_exempt, public

bp = Blueprint("hooks", __name__)
TOLERANCE = 300  # seconds a signed timestamp may be off
MAIL_SETTINGS = {"generic": "MAIL_WEBHOOK_SECRET", "sendgrid": "SENDGRID_WEBHOOK_PUBLIC_KEY",
                 "mailgun": "MAILGUN_WEBHOOK_SIGNING_KEY"}


class Refused(Exception):
    """The request is not the provider's: 401, nothing changes."""


class Malformed(Exception):
    """Signed, but not a shape we read: 400."""


def _fresh(timestamp: str | int | float | None) -> None:
    try:
        value = float(timestamp)
    except (TypeError, ValueError):
        raise Refused("missing or bad timestamp") from None
    if abs(time.time() - value) > TOLERANCE:
        raise Refused("timestamp more than 5 minutes off")


def _when(value) -> datetime:
    """A Unix time or an ISO 8601 string, as an aware UTC datetime."""
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and value.replace(".", "", 1).isdigit()):
            return datetime.fromtimestamp(float(value), UTC)
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (TypeError, ValueError, OverflowError, OSError):
        raise Malformed(f"bad time {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _json(raw: bytes):
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("the body is not JSON") from None


# --- generic (CONTRACT.md, second pass) --------------------------------------------------------------------

def generic_events(raw: bytes, headers, secret: str) -> list[DeliveryEvent]:
    timestamp = headers.get("X-Console-Timestamp", "")
    given = headers.get("X-Console-Signature", "")
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Refused("bad signature")
    _fresh(timestamp)
    body = _json(raw)
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise Malformed('the body must be {"events": [...]}')
    events = []
    for index, item in enumerate(body["events"]):
        if not isinstance(item, dict) or item.get("type") not in ("delivered", "bounced", "complained") \
                or not isinstance(item.get("message_id"), str) or not item.get("at"):
            raise Malformed(f"events.{index}: needs type (delivered|bounced|complained), message_id and at")
        bounce_type = item.get("bounce_type")
        if bounce_type not in (None, "hard", "soft"):
            raise Malformed(f"events.{index}.bounce_type: hard or soft")
        at = _when(item["at"])
        key = hashlib.sha256(f"{item['type']}|{item['message_id'].strip('<> ')}|{at.isoformat()}".encode()).hexdigest()
        events.append(DeliveryEvent(item["type"], item["message_id"], at, key, bounce_type,
                                    str(item.get("reason") or "")[:1000] or None))
    return events


# --- SendGrid Event Webhook --------------------------------------------------------------------------------

def sendgrid_events(raw: bytes, headers, public_key: str) -> list[DeliveryEvent]:
    """ECDSA (P-256, SHA-256) over timestamp + body, with the key SendGrid shows (base64 DER)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    timestamp = headers.get("X-Twilio-Email-Event-Webhook-Timestamp", "")
    try:
        key = load_der_public_key(base64.b64decode(public_key))
        signature = base64.b64decode(headers.get("X-Twilio-Email-Event-Webhook-Signature", ""), validate=True)
        key.verify(signature, timestamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError):
        raise Refused("bad signature") from None
    _fresh(timestamp)
    body = _json(raw)
    if not isinstance(body, list):
        raise Malformed("the body must be a list of events")
    kinds = {"delivered": "delivered", "bounce": "bounced", "spamreport": "complained"}
    events = []
    for item in body:
        if not isinstance(item, dict) or item.get("event") not in kinds:
            continue  # processed, open, click, deferred...: ours to count ourselves, or not final
        message_id = item.get("smtp-id") or item.get("sg_message_id") or ""
        kind = kinds[item["event"]]
        bounce_type = ("soft" if item.get("type") == "blocked" else "hard") if kind == "bounced" else None
        reason = " ".join(str(item[k]) for k in ("status", "reason") if item.get(k)) or None
        key = str(item.get("sg_event_id") or hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest())
        events.append(DeliveryEvent(kind, str(message_id), _when(item.get("timestamp")), key, bounce_type, reason))
    return events


# --- Mailgun -----------------------------------------------------------------------------------------------

def mailgun_events(raw: bytes, headers, signing_key: str) -> list[DeliveryEvent]:
    """HMAC-SHA256 of timestamp + token with the webhook signing key, carried in the body's "signature"."""
    body = _json(raw)
    signed = body.get("signature") if isinstance(body, dict) else None
    if not isinstance(signed, dict):
        raise Refused("no signature")
    timestamp, token = str(signed.get("timestamp", "")), str(signed.get("token", ""))
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(str(signed.get("signature", "")).encode(), expected.encode()):
        raise Refused("bad signature")
    _fresh(timestamp)
    data = body.get("event-data")
    if not isinstance(data, dict):
        raise Malformed('no "event-data"')
    kind = {"delivered": "delivered", "failed": "bounced", "complained": "complained"}.get(data.get("event"))
    if kind is None:
        return []
    message_id = ((data.get("message") or {}).get("headers") or {}).get("message-id") or ""
    status = data.get("delivery-status") or {}
    bounce_type = ("soft" if data.get("severity") == "temporary" else "hard") if kind == "bounced" else None
    reason = " ".join(str(x) for x in (status.get("code"), status.get("message") or status.get("description"),
                                       data.get("reason")) if x) or None
    key = str(data.get("id") or token)
    return [DeliveryEvent(kind, str(message_id), _when(data.get("timestamp")), key, bounce_type, reason)]


MAIL_PARSERS = {"generic": generic_events, "sendgrid": sendgrid_events, "mailgun": mailgun_events}


def _problem(status: int, detail: str):
    return jsonify({"title": {400: "Bad Request", 401: "Unauthorized"}[status], "status": status,
                    "detail": detail}), status


@bp.route("/hooks/mail/<provider>", methods=["POST"])
@csrf_exempt
@public
def mail_hook(provider: str):
    """Delivery reports from a mail provider → {"processed", "unknown"}."""
    setting = current_app.config.get(MAIL_SETTINGS.get(provider, ""), "") if provider in MAIL_SETTINGS else ""
    if not setting:
        abort(404)
    raw = request.get_data(cache=False)
    try:
        events = MAIL_PARSERS[provider](raw, request.headers, setting)
    except Refused as error:
        return _problem(401, str(error))
    except Malformed as error:
        return _problem(400, str(error))
    return jsonify(apply_events(events, provider))


@bp.route("/hooks/sms/<provider>", methods=["POST"])
@csrf_exempt
@public
def sms_hook(provider: str):
    """Twilio's delivery-status callbacks (?sms_id=) and incoming messages (STOP / START), signed with
    X-Twilio-Signature over the URL Twilio called and the form parameters."""
    token = current_app.config.get("TWILIO_AUTH_TOKEN") if provider == "twilio" else ""
    if not token:
        abort(404)
    query = request.query_string.decode()
    url = current_app.config["PUBLIC_BASE_URL"].rstrip("/") + request.path + (f"?{query}" if query else "")
    params = request.form.to_dict()
    expected = sms.twilio_signature(url, params, token)
    if not hmac.compare_digest(expected.encode(), request.headers.get("X-Twilio-Signature", "").encode()):
        return _problem(401, "bad signature")
    if request.args.get("sms_id"):
        return jsonify(sms.status_report(request.args["sms_id"], params))
    sms.inbound(params)
    return Response("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>", mimetype="text/xml")
