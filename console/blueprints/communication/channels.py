"""Delivery channels behind one small interface: email through Flask-Mail, SMS through a provider.

A real SMS provider is a class with `send(to, body) -> provider_message_id`, registered in SMS_PROVIDERS and
chosen with the SMS_PROVIDER setting; nothing else changes.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import uuid
from typing import Protocol

from flask import current_app
from flask_mail import email_dispatched, sanitize_address

from console.blueprints.communication.handover import HandOver, sendmail_with_hand_over
from console.blueprints.communication.models import NotificationHistory
from console.extensions import mail
from console.timeutil import utcnow

log = logging.getLogger(__name__)


class Channel(Protocol):
    name: str

    def send(self, to: str, message) -> str | None: ...

    def close(self) -> None: ...




class EmailChannel:
    """One SMTP connection, opened on first use and reused for every message until closed."""

    name = "email"

    def __init__(self):
        self.conn = None

    def send(self, to: str, message, data: bytes | None = None, hand_over: HandOver | None = None) -> str | None:
        """Send `message` (already serialised as `data`, when given); see sendmail_with_hand_over."""
        if self.conn is None:
            conn = mail.connect()
            conn.host = conn.configure_host()
            if conn.host is not None and conn.host.sock is not None:
                # The final dot is written on its own; Nagle would hold it back until the body is acknowledged.
                conn.host.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conn = conn
            self.envelope_from = sanitize_address(message.sender)
        if self.conn.host is not None:  # None when Flask-Mail is told to suppress sending
            # Flask-Mail's Connection.send would re-parse the sender and recipients for every message; the
            # queue already holds validated addresses, and a batch sends thousands over this connection.
            data = message.as_bytes() if data is None else data
            if hand_over is None:
                self.conn.host.sendmail(self.envelope_from, [to], data)
            else:
                sendmail_with_hand_over(self.conn.host, self.envelope_from, to, data, hand_over)
        email_dispatched.send(current_app._get_current_object(), message=message)
        return message.msgId

    def close(self) -> None:
        if self.conn is not None and self.conn.host is not None:
            try:
                self.conn.host.quit()
            except (smtplib.SMTPException, OSError):
                self.conn.host.close()
        self.conn = None


class LogSmsProvider:
    """Development: write the SMS to the log instead of sending it."""

    def send(self, to: str, body: str) -> str:
        message_id = f"log-{uuid.uuid4().hex[:12]}"
        log.info("SMS to %s (%s): %s", to or "(no number)", message_id, body)
        return message_id


SMS_PROVIDERS = {"log": LogSmsProvider}


class SmsChannel:
    name = "sms"

    def __init__(self, provider=None):
        self.provider = provider or SMS_PROVIDERS[current_app.config.get("SMS_PROVIDER", "log")]()

    def send(self, to: str, message) -> str | None:
        return self.provider.send(to, str(message))

    def close(self) -> None:
        return None


def send_sms(user_id: str, body: str, *, category: str = "product") -> dict:
    """Send a text message to a member, honouring their preferences; recorded in notification_history."""
    from console.blueprints.communication.prefs import decide
    from console.members import Member

    member = Member._get_collection().find_one({"user_id": user_id}, {"phone": 1}) or {}
    verdict, reason, _until = decide([{"user_id": user_id}], category, channel="sms")[0]
    status = "sent" if verdict == "send" else "skipped"
    if verdict == "defer":
        reason = "quiet_hours"
    provider_id = SmsChannel().send(member.get("phone") or "", body) if status == "sent" else None
    NotificationHistory._get_collection().insert_one(
        {"user_id": user_id, "recipient": member.get("phone"), "channel": "sms", "category": category,
         "template": None, "status": status, "reason": reason, "created_at": utcnow()})
    return {"status": status, "provider_id": provider_id} if status == "sent" else {"status": status,
                                                                                     "reason": reason}
