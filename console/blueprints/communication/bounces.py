"""Bounces without a provider: a VERP return path per email, and a scheduled job that reads the bounce mailbox
over IMAP and turns RFC 3464 delivery status notifications (and RFC 5965 complaint reports) into delivery
events (delivery_status.py).

With MAIL_BOUNCE_ADDRESS = bounces@example.org, each email's envelope sender (MAIL FROM) is
bounces+<email id>-<signature>@example.org, so a report names the email it is about even when the remote
server quotes nothing of it; the signature keeps a forged report from suppressing anyone. Reports without
that address are matched by the Message-ID of the original message they quote.
"""

from __future__ import annotations

import hashlib
import hmac
import imaplib
import logging
import re
import ssl
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import Message
from email.utils import parsedate_to_datetime

from bson import ObjectId
from flask import current_app

from console.blueprints.communication.delivery_status import DeliveryEvent, apply_events, email_id_for
from console.timeutil import utcnow

log = logging.getLogger(__name__)
VERP = re.compile(r"\+([0-9a-f]{24})-([0-9a-f]{10})@", re.IGNORECASE)
ADDRESS_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "X-Postfix-Sender")


def _signature(email_id) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"verp:{email_id}".encode(), hashlib.sha256).hexdigest()[:10]


def return_path(email_id) -> str | None:
    """The envelope sender for this email, or None when MAIL_BOUNCE_ADDRESS is not set."""
    address = current_app.config.get("MAIL_BOUNCE_ADDRESS") or ""
    local, at, domain = address.partition("@")
    if not (local and at and domain):
        return None
    return f"{local}+{email_id}-{_signature(email_id)}@{domain}"


def email_id_from_address(text: str) -> ObjectId | None:
    """The email a VERP address names, when its signature is genuine."""
    for match in VERP.finditer(text or ""):
        email_id, signature = match.group(1).lower(), match.group(2).lower()
        if hmac.compare_digest(signature, _signature(email_id)):
            return ObjectId(email_id)
    return None


# --- parsing reports ---------------------------------------------------------------------------------------

def _field(block: Message, name: str) -> str:
    return " ".join(str(block.get(name, "")).split())


def _original_message_id(report: Message) -> str | None:
    """The Message-ID of the original message a report quotes."""
    for part in report.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/rfc822-headers", "text/rfc822-headers"):
            if kind == "message/rfc822":
                inner = part.get_payload()
                original = inner[0] if isinstance(inner, list) and inner else None
            else:
                original = message_from_bytes(part.get_payload(decode=True) or b"", policy=policy.compat32)
            if original is not None and original.get("Message-ID"):
                return str(original["Message-ID"]).strip()
    return None


def _status_blocks(part: Message) -> list[Message]:
    """The per-message and per-recipient field groups of a message/delivery-status part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload
    text = part.get_payload(decode=True) or b""
    return [message_from_bytes(chunk.strip() + b"\n") for chunk in re.split(rb"\r?\n\r?\n", text) if chunk.strip()]


def _when(value: str | None) -> datetime:
    try:
        parsed = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        parsed = None
    if parsed is None:
        return utcnow()
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_report(raw: bytes) -> list[DeliveryEvent]:
    """Delivery events in one message of the bounce mailbox: [] when it is not a report about our email."""
    report = message_from_bytes(raw, policy=policy.compat32)
    email_id = None
    for name in ADDRESS_HEADERS:
        for value in report.get_all(name) or []:
            email_id = email_id or email_id_from_address(str(value))
    message_id = _original_message_id(report) or ""
    if email_id is None and email_id_for(message_id) is None:
        return []
    base_key = str(report.get("Message-ID") or "").strip() or hashlib.sha256(raw).hexdigest()
    events = []
    for part in report.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            blocks = _status_blocks(part)
            arrival = _when(_field(blocks[0], "Arrival-Date") or str(report.get("Date") or "")) if blocks else utcnow()
            for block in blocks[1:]:
                event = _recipient_event(block, message_id, email_id, arrival, base_key)
                if event is not None:
                    events.append(event)
        elif kind == "message/feedback-report":  # RFC 5965: the recipient marked it as spam
            blocks = _status_blocks(part)
            feedback = _field(blocks[0], "Feedback-Type").lower() if blocks else ""
            if feedback in ("abuse", "fraud", ""):
                events.append(DeliveryEvent("complained", message_id, _when(_field(blocks[0], "Arrival-Date")
                                                                            if blocks else None),
                                            f"{base_key}:complaint", None, f"feedback report: {feedback or 'abuse'}",
                                            email_id=email_id))
    return events


def _recipient_event(block: Message, message_id: str, email_id, at: datetime, base_key: str):
    action = _field(block, "Action").lower()
    status = _field(block, "Status")
    recipient = _field(block, "Final-Recipient").partition(";")[2].strip() or _field(block, "Final-Recipient")
    diagnostic = _field(block, "Diagnostic-Code").partition(";")[2].strip() or _field(block, "Diagnostic-Code")
    key = f"{base_key}:{recipient.lower()}:{action}"
    if action == "failed":
        bounce_type = "soft" if status.startswith("4") else "hard"
        reason = " ".join(x for x in (status, diagnostic) if x) or "failed"
        return DeliveryEvent("bounced", message_id, at, key, bounce_type, reason[:1000], email_id=email_id)
    if action in ("delivered", "relayed"):
        return DeliveryEvent("delivered", message_id, at, key, email_id=email_id)
    return None  # "delayed" (still being retried) and "expanded" are not outcomes


# --- reading the mailbox -----------------------------------------------------------------------------------

def _connect(config) -> imaplib.IMAP4:
    host, port = config["BOUNCE_IMAP_HOST"], int(config["BOUNCE_IMAP_PORT"])
    if config.get("BOUNCE_IMAP_SSL"):
        return imaplib.IMAP4_SSL(host, port, ssl_context=ssl.create_default_context(), timeout=30)
    return imaplib.IMAP4(host, port, timeout=30)


def read_bounce_mailbox(limit: int = 500) -> dict:
    """Read unseen messages in the bounce mailbox; reports are applied, then deleted; others stay, seen."""
    config = current_app.config
    if not config.get("BOUNCE_IMAP_HOST"):
        return {"skipped": "BOUNCE_IMAP_HOST is not set"}
    conn = _connect(config)
    try:
        conn.login(config["BOUNCE_IMAP_USER"], config["BOUNCE_IMAP_PASSWORD"])
        conn.select(config.get("BOUNCE_IMAP_FOLDER") or "INBOX")
        _typ, data = conn.search(None, "UNSEEN")
        numbers = (data[0] or b"").split()[:limit]
        events, reports, others = [], [], []
        for number in numbers:
            _typ, parts = conn.fetch(number, "(RFC822)")
            raw = next((p[1] for p in parts if isinstance(p, tuple)), b"")
            found = parse_report(raw)
            (reports if found else others).append(number)
            events.extend(found)
        result = apply_events(events, "dsn") if events else {"processed": 0, "unknown": 0, "duplicates": 0}
        for number in others:
            conn.store(number, "+FLAGS", "(\\Seen)")
        for number in reports:
            conn.store(number, "+FLAGS", "(\\Deleted)")
        if reports:
            conn.expunge()
    finally:
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            log.warning("bounce mailbox: logout failed", exc_info=True)
    return {"messages": len(numbers), "reports": len(reports), "other_messages": len(others), **result}
