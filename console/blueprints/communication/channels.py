"""The email channel: one SMTP connection through Flask-Mail, reused for a whole chunk. SMS has its provider
interface in sms.py."""

from __future__ import annotations

import logging
import smtplib
import socket
from typing import Protocol

from flask import current_app
from flask_mail import email_dispatched, sanitize_address

from console.blueprints.communication.handover import HandOver, sendmail_with_hand_over
from console.extensions import mail

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

    def send(self, to: str, message, data: bytes | None = None, hand_over: HandOver | None = None,
             envelope_from: str | None = None) -> str | None:
        """Send `message` (already serialised as `data`, when given); see sendmail_with_hand_over.
        `envelope_from` replaces the sender in MAIL FROM (a VERP return path, bounces.py)."""
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
            sender = envelope_from or self.envelope_from
            if hand_over is None:
                self.conn.host.sendmail(sender, [to], data)
            else:
                sendmail_with_hand_over(self.conn.host, sender, to, data, hand_over)
        email_dispatched.send(current_app._get_current_object(), message=message)
        return message.msgId

    def close(self) -> None:
        if self.conn is not None and self.conn.host is not None:
            try:
                self.conn.host.quit()
            except (smtplib.SMTPException, OSError):
                self.conn.host.close()
        self.conn = None
