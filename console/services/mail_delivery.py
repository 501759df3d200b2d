"""The worker's side of mail: claim queue documents atomically, send them over one SMTP connection,
record every outcome, and reconcile documents whose job was lost.

Exactly once: a document is claimed (`queued|deferred → sending`, or a `sending` one whose lease ran out)
before it is sent; right after the SMTP server accepts a message a marker goes to Redis, so a crash between
acceptance and the Mongo write is recognised on the next claim instead of sending the mail twice.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from email import policy
from email.charset import BASE64, Charset
from email.mime.text import MIMEText

from flask import current_app
from flask_mail import Message
from pymongo import UpdateMany, UpdateOne

from console.models.communication import EmailQueue, EmailTracking, NotificationHistory
from console.queues import get_redis
from console.services.mail import enqueue_delivery, message_id, setting
from console.services.mail_channels import EmailChannel
from console.services.mail_prefs import decide, suppress
from console.timeutil import utcnow

log = logging.getLogger(__name__)
SENT_MARKER = "mail:sent:{}"
MARKER_TTL = 14 * 24 * 3600
HARD_BOUNCE_CODES = {550, 551, 553}


class MailTransient(Exception):
    """Some emails were deferred; RQ retries the job with backoff."""


class MailPermanent(Exception):
    """Some emails failed for good; retrying cannot help."""


@dataclass
class Outcome:
    sent: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    deferred: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    claimed: int = 0

    def as_dict(self) -> dict:
        return {"claimed": self.claimed, "sent": len(self.sent), "skipped": len(self.skipped),
                "deferred": len(self.deferred), "failed": len(self.failed)}


class _Transient(Exception):
    def __init__(self, reason: str, connection_lost: bool):
        super().__init__(reason)
        self.reason = reason
        self.connection_lost = connection_lost


class _Permanent(Exception):
    def __init__(self, reason: str, hard_bounce: bool):
        super().__init__(reason)
        self.reason = reason
        self.hard_bounce = hard_bounce


def _classify(error: Exception) -> Exception:
    """Map an SMTP or socket error to transient (retry) or permanent (fail now)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(error.recipients.values()))
        reason = f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
        if code >= 500:
            return _Permanent(f"recipient refused: {reason}", hard_bounce=code in HARD_BOUNCE_CODES)
        return _Transient(f"recipient deferred: {reason}", connection_lost=False)
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error.decode(errors="replace") if isinstance(error.smtp_error, bytes) else error.smtp_error
        reason = f"{error.smtp_code} {text}"
        if error.smtp_code >= 500:
            return _Permanent(f"refused: {reason}", hard_bounce=False)
        return _Transient(f"server deferred: {reason}", connection_lost=error.smtp_code == 421)
    if isinstance(error, (smtplib.SMTPServerDisconnected, OSError, socket.timeout)):
        return _Transient(f"connection problem: {type(error).__name__}: {error}", connection_lost=True)
    return _Transient(f"{type(error).__name__}: {error}", connection_lost=False)


WIDE_SMTP = policy.SMTP.clone(max_line_length=998)  # never fold List-Unsubscribe into encoded words
BODY_CHARSET = Charset("utf-8")
BODY_CHARSET.body_encoding = BASE64  # Flask-Mail makes utf-8 bodies 8bit; long lines would break SMTP's 998 limit


class MailMessage(Message):
    """Flask-Mail's message with bodies safe for any line length and unfolded long headers."""

    def _mimetext(self, text, subtype="plain"):
        return MIMEText(text or "", _subtype=subtype, _charset=BODY_CHARSET)

    def as_bytes(self) -> bytes:
        return self._message().as_bytes(policy=WIDE_SMTP)


def build_message(doc: dict) -> Message:
    config = current_app.config
    unsubscribe = doc.get("unsubscribe_url")
    if not unsubscribe:
        from console.services.mail_tracking import make_token, public_url

        unsubscribe = public_url("tracking.unsubscribe", token=make_token("unsubscribe", doc["_id"]))
    message = MailMessage(subject=doc["subject"], recipients=[doc["to_email"]], body=doc.get("text_body") or "",
                      html=doc.get("html_body") or None, sender=config["MAIL_DEFAULT_SENDER"],
                      extra_headers={"List-Unsubscribe": f"<{unsubscribe}>",
                                     "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                                     "X-Console-Email-Id": str(doc["_id"]),
                                     "X-Console-Category": doc.get("category") or ""})
    message.msgId = message_id(doc["_id"])
    return message


def _claim(ids: list, lease: int) -> tuple[str, list[dict]]:
    coll = EmailQueue._get_collection()
    now = utcnow()
    token = uuid.uuid4().hex
    coll.update_many(
        {"_id": {"$in": ids}, "$or": [{"status": {"$in": ["queued", "deferred"]}},
                                      {"status": "sending", "lease_until": {"$lt": now}}]},
        {"$set": {"status": "sending", "claim": token, "lease_until": now + timedelta(seconds=lease),
                  "updated_at": now}, "$inc": {"attempts": 1}})
    return token, list(coll.find({"claim": token}))


def deliver(email_ids: list[str]) -> Outcome:
    """Send these queue documents (those this call manages to claim) and record what happened."""
    from bson import ObjectId

    ids = [ObjectId(i) for i in email_ids]
    lease = setting("MAIL_CLAIM_LEASE", 60)
    token, docs = _claim(ids, lease)
    outcome = Outcome(claimed=len(docs))
    if not docs:
        return outcome
    redis = get_redis()
    markers = redis.mget([SENT_MARKER.format(d["_id"]) for d in docs])
    max_attempts = int(current_app.config["MAIL_MAX_ATTEMPTS"])
    intervals = [int(x) for x in str(current_app.config["MAIL_RETRY_INTERVALS"]).split(",") if x.strip()] or [60]
    pending = []
    for doc, marker in zip(docs, markers, strict=True):
        if marker is not None:  # accepted by SMTP before a crash: record it, never send twice
            outcome.sent.append((doc, float(marker)))
        else:
            pending.append(doc)
    decisions = {}
    by_category: dict[str, list[dict]] = {}
    for doc in pending:
        by_category.setdefault(doc.get("category") or "", []).append(doc)
    for category, group in by_category.items():
        verdicts = decide([{"user_id": d.get("user_id"), "email": d["to_email"]} for d in group], category,
                          exclude_ids=ids)
        decisions.update({d["_id"]: v for d, v in zip(group, verdicts, strict=True)})
    smtp = EmailChannel()
    renewed = time.monotonic()
    connection_down: str | None = None
    try:
        for doc in pending:
            verdict, reason, until = decisions[doc["_id"]]
            if verdict == "skip":
                outcome.skipped.append((doc, reason))
                continue
            if verdict == "defer":
                outcome.deferred.append((doc, reason, until, False))
                continue
            if connection_down:
                _defer_or_fail(outcome, doc, connection_down, max_attempts, intervals)
                continue
            if time.monotonic() - renewed > lease / 3:
                EmailQueue._get_collection().update_many(
                    {"claim": token, "status": "sending"},
                    {"$set": {"lease_until": utcnow() + timedelta(seconds=lease)}})
                renewed = time.monotonic()
            try:
                smtp.send(doc["to_email"], build_message(doc))
            except Exception as error:  # classified below; nothing is swallowed: the job raises afterwards
                problem = _classify(error)
                if isinstance(problem, _Permanent):
                    outcome.failed.append((doc, problem.reason, problem.hard_bounce))
                else:
                    if problem.connection_lost:
                        smtp.close()
                        connection_down = problem.reason
                    _defer_or_fail(outcome, doc, problem.reason, max_attempts, intervals)
                continue
            now = time.time()
            redis.set(SENT_MARKER.format(doc["_id"]), now, ex=MARKER_TTL)
            outcome.sent.append((doc, now))
    finally:
        smtp.close()
        _record(outcome, token)
    return outcome


def _defer_or_fail(outcome: Outcome, doc: dict, reason: str, max_attempts: int, intervals: list[int]) -> None:
    attempts = doc.get("attempts", 1)
    if attempts >= max_attempts:
        outcome.failed.append((doc, f"gave up after {attempts} attempts: {reason}", False))
    else:
        wait = intervals[min(attempts - 1, len(intervals) - 1)]
        outcome.deferred.append((doc, reason, utcnow() + timedelta(seconds=wait), True))


def _record(outcome: Outcome, token: str) -> None:
    """Write every outcome in a few bulk operations, guarded by the claim token."""
    from datetime import UTC, datetime

    now = utcnow()
    ops, history, events = [], [], []
    for doc, accepted_at in outcome.sent:
        sent_at = datetime.fromtimestamp(accepted_at, UTC)
        ops.append(UpdateOne({"_id": doc["_id"], "claim": token},
                             {"$set": {"status": "sent", "sent_at": sent_at, "message_id": message_id(doc["_id"]),
                                       "reason": None, "updated_at": now, "next_attempt_at": None}}))
    if outcome.sent:
        history.append(UpdateMany({"email_id": {"$in": [d["_id"] for d, _ in outcome.sent]}},
                                  {"$set": {"status": "sent", "reason": None}}))
    for doc, reason in outcome.skipped:
        ops.append(UpdateOne({"_id": doc["_id"], "claim": token},
                             {"$set": {"status": "skipped", "reason": reason, "updated_at": now}}))
        history.append(UpdateMany({"email_id": doc["_id"]}, {"$set": {"status": "skipped", "reason": reason}}))
    for doc, reason, until, _retry in outcome.deferred:
        ops.append(UpdateOne({"_id": doc["_id"], "claim": token},
                             {"$set": {"status": "deferred", "reason": reason, "next_attempt_at": until,
                                       "updated_at": now}}))
        history.append(UpdateMany({"email_id": doc["_id"]}, {"$set": {"status": "deferred", "reason": reason}}))
    for doc, reason, hard_bounce in outcome.failed:
        ops.append(UpdateOne({"_id": doc["_id"], "claim": token},
                             {"$set": {"status": "failed", "reason": reason, "updated_at": now}}))
        history.append(UpdateMany({"email_id": doc["_id"]}, {"$set": {"status": "failed", "reason": reason}}))
        if hard_bounce:
            suppress(doc["to_email"], "hard_bounce", reason, doc["_id"])
            events.append({"email_id": doc["_id"], "type": "bounce", "at": now, "detail": reason})
    if ops:
        EmailQueue._get_collection().bulk_write(ops, ordered=False)
    if history:
        NotificationHistory._get_collection().bulk_write(history, ordered=False)
    if events:
        EmailTracking._get_collection().insert_many(events)
    for doc, _reason, until, retry in outcome.deferred:
        if not retry:  # quiet hours: a timed job of its own; retries ride on RQ's Retry
            enqueue_delivery([doc["_id"]], doc.get("priority") or "normal", f"mail-{doc['_id']}-quiet", at=until)


# --- reconcile ---------------------------------------------------------------------------------------------

LIVE_JOB_STATES = {"queued", "started", "scheduled", "deferred"}


def reconcile(min_age_seconds: int | None = None) -> dict:
    """Re-enqueue documents stuck in queued, deferred or sending whose job is gone; the claim makes it safe."""
    from rq.job import Job

    grace = setting("MAIL_RECONCILE_GRACE", 30) if min_age_seconds is None else min_age_seconds
    now = utcnow()
    cutoff = now - timedelta(seconds=grace)
    coll = EmailQueue._get_collection()
    stuck = list(coll.find(
        {"$or": [{"status": "queued", "created_at": {"$lte": cutoff},
                  "$or": [{"send_at": None}, {"send_at": {"$lte": now}}]},
                 {"status": "deferred", "next_attempt_at": {"$lte": cutoff}},
                 {"status": "sending", "lease_until": {"$lt": now}}]},
        {"_id": 1, "status": 1, "job_id": 1, "priority": 1}).limit(50_000))
    if not stuck:
        return {"checked": 0, "requeued": 0, "jobs": 0}
    job_ids = sorted({d.get("job_id") for d in stuck if d.get("job_id")})
    alive = set()
    redis = get_redis()
    for job_id, job in zip(job_ids, Job.fetch_many(job_ids, connection=redis), strict=True):
        if job is not None and (job.get_status(refresh=False) or "") in LIVE_JOB_STATES:
            alive.add(job_id)
    lost: dict[str, list] = {}
    for doc in stuck:
        if doc["status"] == "sending" or doc.get("job_id") not in alive:
            lost.setdefault(doc.get("priority") or "normal", []).append(doc["_id"])
    chunk = setting("MAIL_CHUNK_SIZE", 100)
    jobs = 0
    for priority, ids in lost.items():
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            job_id = f"mail-reconcile-{uuid.uuid4().hex}"
            coll.update_many({"_id": {"$in": part}}, {"$set": {"job_id": job_id}})
            enqueue_delivery(part, priority, job_id)
            jobs += 1
    requeued = sum(len(ids) for ids in lost.values())
    if requeued:
        log.warning("mail reconcile: re-enqueued %d email(s) in %d job(s)", requeued, jobs)
    return {"checked": len(stuck), "requeued": requeued, "jobs": jobs}
