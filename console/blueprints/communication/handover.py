"""The exactly-once SMTP hand-over: the journal in Redis, the corked sockets, and sendmail split at the
final dot of DATA. The sender (delivery.py) and the claim that settles a dead worker's emails both read it.

Exactly once, whatever crashes. A `queued` or `deferred` document is claimed (an email_claims entry with its
_id, inserted only if none exists, or taken over once its lease ran out) before it is sent, and each SMTP
hand-over is journaled in Redis around the one moment that decides it, the final dot of DATA (a server discards
a transaction whose dot never came):

1. "c" is written while the server holds the message without its dot;
2. the dot is written to the SMTP socket;
3. "h<time>" (handed over) is written, before any reply is read: the three writes follow each other
   without a wait. The server's 250 turns the entry into "a<time>" (accepted), a refusal deletes it. The
   journal's replies are read before the next hand-over: should Redis refuse a write, sending stops.

When a worker dies before recording its outcomes in Mongo, the claim that takes its documents over reads
the journal: no entry → never handed over, send it; "h" or "a" → the server has it: recorded as sent (a
note says when the reply was never read), never sent again; "c" → the worker died between the "c" and the
"h" writes, a window of a few microseconds, with the dot gone or not: that email fails with UNCERTAIN for a
person to decide. Mongo's recorded outcome wins over the journal, which only speaks for
emails taken over from a dead claim.
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import socket
import time
from typing import Protocol

from redis.exceptions import RedisError

from console.blueprints.communication.queue import HANDOVER_KEY

log = logging.getLogger(__name__)
JOURNAL_TTL = 14 * 24 * 3600


class HandOver(Protocol):
    """Told about the one moment that matters for once-only delivery: the final dot of the DATA command."""

    def before_dot(self) -> None: ...  # must succeed, or the message is not handed over

    def after_dot(self) -> None: ...  # must not raise: the dot is already on its way


_LEADING_DOT = re.compile(rb"(?m)^\.")


def sendmail_with_hand_over(smtp: smtplib.SMTP, sender: str, to: str, data: bytes, hand_over: HandOver) -> None:
    """smtplib's sendmail for one recipient, split at the final dot of DATA.

    A server discards a transaction whose final dot never arrived, so the message is handed over exactly
    when that dot is written: `before_dot` runs while the server holds an incomplete message, `after_dot`
    right after the write, before the reply is read."""
    smtp.ehlo_or_helo_if_needed()
    options = [f"size={len(data)}"] if smtp.does_esmtp and smtp.has_extn("size") else []
    code, reply = smtp.mail(sender, options)
    if code != 250:
        _abandon(smtp, code)
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    code, reply = smtp.rcpt(to)
    if code not in (250, 251):
        _abandon(smtp, code)
        raise smtplib.SMTPRecipientsRefused({to: (code, reply)})
    smtp.putcmd("data")
    code, reply = smtp.getreply()
    if code != 354:
        _abandon(smtp, code)
        raise smtplib.SMTPDataError(code, reply)
    body = _LEADING_DOT.sub(b"..", data)
    # Corked from the body on: the dot stays in the kernel until the journal's writes are out (see cork), and
    # the body's last segment leaves with it, so the server reads each message in one go, as from sendmail().
    cork(smtp.sock, True)
    smtp.send(body if body.endswith(b"\r\n") else body + b"\r\n")
    try:
        hand_over.before_dot()
    except Exception:
        smtp.close()  # the dot never goes out: the server drops the transaction with the connection
        raise
    smtp.send(b".\r\n")
    hand_over.after_dot()
    cork(smtp.sock, False)
    code, reply = smtp.getreply()
    if code != 250:
        _abandon(smtp, code)
        raise smtplib.SMTPDataError(code, reply)


def cork(sock: socket.socket | None, on: bool) -> None:
    """Hold a socket's writes in the kernel (TCP_CORK), or send them. Writes to corked sockets wake no reader,
    so a process cannot be preempted between them; and a process that dies flushes them on close."""
    if sock is not None and hasattr(socket, "TCP_CORK"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, int(on))


def _abandon(smtp: smtplib.SMTP, code: int) -> None:
    if code == 421:
        smtp.close()
        return
    with contextlib.suppress(smtplib.SMTPServerDisconnected):
        smtp.rset()


class Journal:
    """The hand-over journal (see the module docstring), on a Redis connection of its own: its writes go out
    without waiting for replies, which are read in order later (before the next hand-over, so a journal that
    stopped working stops the sending)."""

    def __init__(self, redis):
        self.pool = redis.connection_pool
        self.conn = self.pool.get_connection()
        self.state = None  # None, "c" or "h" for the current email
        self.handed_at = None
        self.unread = 0
        self.pending: list[tuple] = []  # commands that can ride on the next write

    def begin(self, email_id) -> None:
        self.key, self.state, self.handed_at = HANDOVER_KEY.format(email_id), None, None

    def before_dot(self) -> None:
        self._settle()  # nothing unread may stay behind: a socket closed with unread data drops its writes
        if self.conn._sock is None:
            self.conn.connect()
        cork(self.conn._sock, True)  # "c", the dot and "h" go out back to back (see cork)
        self.handed_at = time.time()
        commit = self.conn.pack_commands([*self.pending, ("SET", self.key, b"c", "EX", JOURNAL_TTL)])
        self.handed = self.conn.pack_command("SET", self.key, b"h%.6f" % self.handed_at, "EX", JOURNAL_TTL)
        self._send(commit, len(self.pending) + 1)  # no wait for the reply: the dot follows at once
        self.pending = []
        self.state = "c"

    def after_dot(self) -> None:
        self.state = "h"
        try:
            self._send(self.handed, 1)
            cork(self.conn._sock, False)
        except (RedisError, OSError):  # the entry stays "c": should this worker die now, the email fails visibly
            log.warning("mail journal: could not record a hand-over", exc_info=True)
            self._reset()

    def accepted(self, at: float) -> None:
        self.pending.append(("SET", self.key, b"a%.6f" % at, "EX", JOURNAL_TTL))

    def forget(self) -> None:
        """The server refused the message, or never got its dot: nothing was handed over."""
        self.pending.append(("DEL", self.key))

    def flush(self) -> None:
        """Write what is pending; the outcome goes to Mongo anyway, so a Redis failure here only logs."""
        try:
            if self.pending:
                self._send(self.conn.pack_commands(self.pending), len(self.pending))
            self._settle()
        except RedisError:
            log.warning("mail journal: could not flush", exc_info=True)
        self.pending = []

    def close(self) -> None:
        self.flush()
        self.pool.release(self.conn)

    def _send(self, packed, replies: int) -> None:
        try:
            self.conn.send_packed_command(packed, check_health=False)  # a health check would read a reply
        except RedisError:
            self._reset()
            raise
        self.unread += replies

    def _settle(self) -> None:
        """Read the replies of earlier writes (long arrived); an error reply raises."""
        try:
            while self.unread:
                self.unread -= 1
                self.conn.read_response()
        except RedisError:
            self._reset()
            raise

    def _reset(self) -> None:
        self.unread = 0
        self.conn.disconnect()  # unread replies must not answer later commands; it reconnects on next use
