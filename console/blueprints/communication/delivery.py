"""The worker's side of mail: claim queue documents atomically, send them over one SMTP connection,
record every outcome, and reconcile documents whose job was lost.

The exactly-once hand-over (journal, cork, split sendmail) is in handover.py.
"""

from __future__ import annotations

import base64
import logging
import re
import smtplib
import socket
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import formatdate
from functools import lru_cache

from flask import current_app
from flask_mail import Message, sanitize_address
from pymongo import UpdateMany
from pymongo.errors import BulkWriteError
from redis.exceptions import RedisError

from console.blueprints.communication import sms
from console.blueprints.communication.bounces import return_path
from console.blueprints.communication.channels import EmailChannel
from console.blueprints.communication.handover import Journal
from console.blueprints.communication.models import (
    EmailClaim,
    EmailQueue,
    EmailTracking,
    NotificationHistory,
    Suppression,
)
from console.blueprints.communication.prefs import decide, suppress
from console.blueprints.communication.queue import (
    HANDOVER_KEY,
    TERMINAL,
    enqueue_delivery,
    history_entry,
    message_id,
    retry_intervals,
)
from console.config import setting
from console.queues import get_redis
from console.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)
UNCERTAIN = ("uncertain: the worker stopped within microseconds of handing this email to the SMTP server; "
             "it may have arrived")
UNCONFIRMED = ("handed over in full, but the SMTP server's reply was never read (the worker stopped or the "
               "connection broke)")
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

    def merge(self, other: Outcome) -> None:
        for name in ("sent", "skipped", "deferred", "failed"):
            getattr(self, name).extend(getattr(other, name))
        self.claimed += other.claimed

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
    if isinstance(error, RedisError):  # the journal could not record the hand-over: the dot was never sent
        return _Transient(f"hand-over journal unavailable: {type(error).__name__}: {error}", connection_lost=True)
    if isinstance(error, (smtplib.SMTPServerDisconnected, OSError, socket.timeout)):
        return _Transient(f"connection problem: {type(error).__name__}: {error}", connection_lost=True)
    return _Transient(f"{type(error).__name__}: {error}", connection_lost=False)


@lru_cache(maxsize=4)
def _sender(sender: str) -> str:
    return sanitize_address(sender)


@lru_cache(maxsize=256)
def _subject(subject: str) -> str:
    return subject if subject.isascii() else Header(subject, "utf-8").encode()


_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")


def _recipient(address) -> str:
    """A plain ASCII address as it is (what sanitize_address would return for it, without parsing it)."""
    return address if isinstance(address, str) and _PLAIN_ADDRESS.fullmatch(address) else sanitize_address(address)


def _base64_lines(body: str) -> str:
    encoded = base64.b64encode(body.encode("utf-8")).decode("ascii")
    return "\r\n".join(encoded[start:start + 76] for start in range(0, len(encoded), 76))


class MailMessage(Message):
    """Flask-Mail's message, serialised directly: multipart/alternative with base64 bodies (safe for any line
    length) and headers that are never folded into encoded words. Python's email generator costs a few
    milliseconds a message, as much as the SMTP round trips, so a batch would spend half its time in it."""

    def __init__(self, *, subject: str, recipients: list[str], body: str, html: str | None, sender: str,
                 extra_headers: dict[str, str], msg_id: str):
        # Not Message.__init__: its make_msgid() looks the host name up (a DNS call) for an id replaced at once.
        self.subject, self.recipients, self.sender, self.msgId = subject, recipients, sender, msg_id
        self.alts, self.extra_headers = {}, extra_headers
        self.body, self.html = body, html  # html is a property kept in alts
        self.reply_to, self.cc, self.bcc, self.date, self.charset = None, [], [], None, None
        self.mail_options, self.rcpt_options, self.attachments = [], [], []

    def as_bytes(self) -> bytes:
        boundary = f"=_{self.msgId.strip('<>').partition('@')[0]}_{uuid.uuid4().hex[:12]}"
        headers = [("From", _sender(self.sender)), ("To", ", ".join(_recipient(r) for r in self.recipients)),
                   ("Subject", _subject(self.subject)), ("Date", formatdate(self.date, localtime=True)),
                   ("Message-ID", self.msgId), ("MIME-Version", "1.0"),
                   ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
                   *(self.extra_headers or {}).items()]
        lines = [f"{name}: {value}" for name, value in headers]
        for subtype, body in (("plain", self.body or ""), ("html", self.html)):
            if body is None:
                continue
            lines += ["", f"--{boundary}", f'Content-Type: text/{subtype}; charset="utf-8"',
                      "Content-Transfer-Encoding: base64", "", _base64_lines(body)]
        lines += ["", f"--{boundary}--", ""]
        return "\r\n".join(lines).encode("ascii")


def build_message(doc: dict) -> Message:
    config = current_app.config
    unsubscribe = doc.get("unsubscribe_url")
    if not unsubscribe:
        from console.blueprints.communication.tracking import make_token, public_url

        unsubscribe = public_url("tracking.unsubscribe", token=make_token("unsubscribe", doc["_id"]))
    return MailMessage(subject=doc["subject"], recipients=[doc["to_email"]], body=doc.get("text_body") or "",
                       html=doc.get("html_body") or None, sender=config["MAIL_DEFAULT_SENDER"],
                       extra_headers={"List-Unsubscribe": f"<{unsubscribe}>",
                                      "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                                      "X-Console-Email-Id": str(doc["_id"]),
                                      "X-Console-Category": doc.get("category") or ""},
                       msg_id=message_id(doc["_id"]))


CLAIMABLE = ("queued", "deferred", "sending")  # "sending": claimed in email_queue by the previous release


def _claim(ids: list, lease: int, token: str) -> tuple[list[dict], set]:
    """Claim what is claimable of `ids`; also returns the ids taken over from a claim whose worker died.

    An email is held by the email_claims entry with its _id: inserting one succeeds for one worker only, and an
    entry whose lease ran out is taken over by one worker only (the update's filter is its own lock)."""
    claims, coll = EmailClaim._get_collection(), EmailQueue._get_collection()
    now = utcnow()
    until = now + timedelta(seconds=lease)
    held: set = set()
    try:
        claims.insert_many([{"_id": i, "token": token, "lease_until": until} for i in ids], ordered=False)
    except BulkWriteError as error:
        problems = error.details.get("writeErrors", [])
        if any(problem.get("code") != 11000 for problem in problems):
            raise
        held = {ids[problem["index"]] for problem in problems}
    taken_over: set = set()
    if held:  # someone claimed these: take over those whose lease ran out (their worker died)
        lapsed = {"_id": {"$in": list(held)}, "lease_until": {"$lt": now}}
        if claims.update_many(lapsed, {"$set": {"token": token, "lease_until": until}}).modified_count:
            taken_over = {row["_id"] for row in claims.find({"_id": {"$in": list(held)}, "token": token}, {"_id": 1})}
    mine = [i for i in ids if i not in held or i in taken_over]
    docs = list(coll.find({"_id": {"$in": mine}, "status": {"$in": list(CLAIMABLE)}})) if mine else []
    for doc in docs:
        if doc["status"] == "sending":  # the previous release's claim: only once its lease ran out, and as a takeover
            taken_over.add(doc["_id"])
    docs = [doc for doc in docs if doc["status"] != "sending" or as_utc(doc.get("lease_until") or now) < now]
    claimable = {doc["_id"] for doc in docs}
    released = [i for i in mine if i not in claimable]  # sent or failed meanwhile, or never ours to send
    if released:
        claims.delete_many({"_id": {"$in": released}, "token": token})
    for doc in docs:
        doc["attempts"] = doc.get("attempts", 0) + 1  # this attempt; the outcome's write counts it
    return docs, claimable & taken_over


def _slices(ids: list, size: int) -> list[list]:
    """Slices of `size`, with short ones at both ends: the first claim and the last record are the only
    MongoDB round trips that no SMTP traffic hides."""
    edge = max(1, size // 5)
    if len(ids) <= 2 * edge:
        return [ids]
    middle = ids[edge:len(ids) - edge]
    return [ids[:edge], *(middle[start:start + size] for start in range(0, len(middle), size)), ids[-edge:]]


@dataclass
class _Slice:
    outcome: Outcome
    to_send: list  # (doc, message, serialised message)
    sms: list = field(default_factory=list)  # (doc, its journal entry or None)


def deliver(email_ids: list[str]) -> Outcome:
    """Send these queue documents (those this call manages to claim) and record what happened.

    The chunk goes in slices; a helper thread claims and prepares the next slice and records the previous
    one while this thread talks SMTP, so MongoDB's round trips overlap the SMTP ones. Every write is done
    before returning."""
    from bson import ObjectId

    ids = list(dict.fromkeys(ObjectId(i) for i in email_ids))  # one claim each
    token = uuid.uuid4().hex  # this call's claim, renewed for every email it holds
    lease = setting("MAIL_CLAIM_LEASE")
    app = current_app._get_current_object()
    slices = _slices(ids, setting("MAIL_SLICE_SIZE")) if ids else []
    total = Outcome()

    def in_app(func, *args):
        with app.app_context():
            return func(*args)

    records = []
    smtp, journal = EmailChannel(), None  # one SMTP connection for the whole chunk
    switch = sys.getswitchinterval()
    # With the default 5 ms, each SMTP reply could wait that long for the GIL while the mail-db thread runs
    # Python (BSON, building messages): a worker runs one job at a time, so this is the job's own setting.
    sys.setswitchinterval(0.0005)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mail-db") as db:
        try:
            preparing = db.submit(in_app, _prepare, slices[0], ids, lease, token) if slices else None
            for index in range(len(slices)):
                part = preparing.result()
                if index + 1 < len(slices):
                    preparing = db.submit(in_app, _prepare, slices[index + 1], ids, lease, token)
                if part.to_send and journal is None:
                    journal = Journal(get_redis())
                try:
                    _send_all(part.to_send, part.outcome, ids, token, lease, smtp, journal)
                    _send_texts(part.sms, part.outcome)
                finally:
                    if journal is not None:
                        journal.flush()  # before the record drops the entries
                    records.append(db.submit(in_app, _record, part.outcome, token))
                total.merge(part.outcome)
        finally:
            sys.setswitchinterval(switch)
            smtp.close()
            if journal is not None:
                journal.close()
    for record in records:
        record.result()  # a failed write raises here, so the job fails visibly
    return total


def _prepare(slice_ids: list, chunk_ids: list, lease: int, token: str) -> _Slice:
    """Claim a slice, settle what a dead worker's journal says, apply preferences, serialise the rest."""
    docs, taken_over = _claim(slice_ids, lease, token)
    outcome = Outcome(claimed=len(docs))
    texts = [doc for doc in docs if doc.get("channel") == "sms"]
    docs = [doc for doc in docs if doc.get("channel") != "sms"]
    # An SMS's journal is read on every attempt: a broken connection leaves it open too (see sms.py).
    read = sorted(taken_over.difference(doc["_id"] for doc in texts) | {doc["_id"] for doc in texts})
    journal = dict(zip(read, get_redis().mget([HANDOVER_KEY.format(i) for i in read]), strict=True)) if read else {}
    pending = []
    for doc in docs:
        entry = journal.get(doc["_id"])
        if entry is None:
            pending.append(doc)
        elif entry[:1] == b"c":
            outcome.failed.append((doc, UNCERTAIN, False))
        else:  # the server has it: record it, never send twice
            outcome.sent.append((doc, float(entry[1:]), None if entry[:1] == b"a" else UNCONFIRMED))
    to_send = []
    for doc, (verdict, reason, until) in _decisions(pending, "email", chunk_ids):
        if verdict == "skip":
            outcome.skipped.append((doc, reason))
        elif verdict == "defer":
            outcome.deferred.append((doc, reason, until, False))
        else:
            message = build_message(doc)
            to_send.append((doc, message, message.as_bytes()))
    sms_to_send = []
    for doc, (verdict, reason, until) in _decisions(texts, "sms", chunk_ids):
        entry = journal.get(doc["_id"])
        if entry is not None or verdict == "send":  # once begun, a message is finished whatever changed since
            sms_to_send.append((doc, entry))
        elif verdict == "skip":
            outcome.skipped.append((doc, reason))
        else:
            outcome.deferred.append((doc, reason, until, False))
    return _Slice(outcome, to_send, sms_to_send)


def _decisions(docs: list[dict], channel: str, chunk_ids: list):
    """(doc, decide()'s verdict) for each document, decided in bulk per category."""
    by_category: dict[str, list[dict]] = {}
    for doc in docs:
        by_category.setdefault(doc.get("category") or "", []).append(doc)
    stopped: set = set()
    if channel == "sms" and docs:
        stopped = {row["email"] for row in Suppression._get_collection().find(
            {"email": {"$in": [d["to_phone"] for d in docs]}}, {"email": 1})}
    for category, group in by_category.items():
        recipients = [{"user_id": d.get("user_id"), "email": d.get("to_email")} for d in group]
        verdicts = decide(recipients, category, channel=channel, exclude_ids=chunk_ids)
        for doc, verdict in zip(group, verdicts, strict=True):
            if channel == "sms" and doc["to_phone"] in stopped:
                verdict = ("skip", "opted_out", None)
            yield doc, verdict


def _send_texts(items: list[tuple], outcome: Outcome) -> None:
    """Hand each SMS to the provider (sms.send_one journals it); failures defer or fail like mail."""
    if not items:
        return
    max_attempts, intervals = int(current_app.config["MAIL_MAX_ATTEMPTS"]), list(retry_intervals())
    try:
        provider = sms.provider()
    except sms.SmsPermanent as error:
        outcome.failed.extend((doc, str(error), False) for doc, _entry in items)
        return
    for doc, entry in items:
        try:
            _state, at, provider_id = sms.send_one(doc, entry, provider)
        except sms.SmsPermanent as error:
            outcome.failed.append((doc, str(error), False))
        except (sms.SmsTransient, RedisError) as error:
            _defer_or_fail(outcome, doc, str(error), max_attempts, intervals)
        else:
            doc["provider_message_id"] = provider_id
            outcome.sent.append((doc, at, None))


def _send_all(items: list[tuple], outcome: Outcome, chunk_ids: list, token: str, lease: int,
              smtp: EmailChannel, journal: Journal) -> None:
    """Send a slice over the chunk's connection, journaling each hand-over. A broken connection defers the
    rest of the slice; the next slice connects again."""
    max_attempts = int(current_app.config["MAIL_MAX_ATTEMPTS"])
    intervals = list(retry_intervals())
    renewed = time.monotonic()
    connection_down: str | None = None
    for doc, message, data in items:
        if connection_down:
            _defer_or_fail(outcome, doc, connection_down, max_attempts, intervals)
            continue
        if time.monotonic() - renewed > lease / 3:  # the next slice is claimed already: renew it too
            EmailClaim._get_collection().update_many(
                {"_id": {"$in": chunk_ids}, "token": token},
                {"$set": {"lease_until": utcnow() + timedelta(seconds=lease)}})
            renewed = time.monotonic()
        journal.begin(doc["_id"])
        try:
            smtp.send(doc["to_email"], message, data, hand_over=journal, envelope_from=return_path(doc["_id"]))
        except Exception as error:  # classified below; nothing is swallowed: the job raises afterwards
            problem = _classify(error)
            if journal.state == "h" and not isinstance(error, smtplib.SMTPResponseException):
                outcome.sent.append((doc, journal.handed_at, UNCONFIRMED))  # never send it twice
                smtp.close()
                connection_down = problem.reason
                continue
            if journal.state:
                journal.forget()
            if isinstance(problem, _Permanent):
                outcome.failed.append((doc, problem.reason, problem.hard_bounce))
            else:
                if problem.connection_lost:
                    smtp.close()
                    connection_down = problem.reason
                _defer_or_fail(outcome, doc, problem.reason, max_attempts, intervals)
        else:
            accepted_at = time.time()
            journal.accepted(accepted_at)
            outcome.sent.append((doc, accepted_at, None))


def _defer_or_fail(outcome: Outcome, doc: dict, reason: str, max_attempts: int, intervals: list[int]) -> None:
    attempts = doc.get("attempts", 1)
    if attempts >= max_attempts:
        outcome.failed.append((doc, f"gave up after {attempts} attempts: {reason}", False))
    else:
        wait = intervals[min(attempts - 1, len(intervals) - 1)]
        outcome.deferred.append((doc, reason, utcnow() + timedelta(seconds=wait), True))


def _record(outcome: Outcome, token: str) -> None:
    """Write every outcome in a few bulk operations; final outcomes also go to notification_history (inserts:
    far cheaper than updating an entry per email). Then the journal entries, which Mongo now supersedes, and
    this call's claims are dropped."""
    now = utcnow()
    ops = _grouped_updates(_changes(outcome), now)
    if ops:
        EmailQueue._get_collection().bulk_write(ops, ordered=False)
    history = [history_entry({**doc, "status": status, "reason": reason}) for doc, status, reason in _finals(outcome)]
    if history:
        NotificationHistory._get_collection().insert_many(history, ordered=False)
    _record_bounces(outcome.failed, now)
    for doc, _reason, until, retry in outcome.deferred:
        if not retry:  # quiet hours: a timed job of its own; retries ride on RQ's Retry
            enqueue_delivery([doc["_id"]], doc.get("priority") or "normal", f"mail-{doc['_id']}-quiet", at=until)
    _drop_journal([doc for doc, *_ in (*outcome.sent, *outcome.failed)])
    settled = [doc["_id"] for doc, *_ in (*outcome.sent, *outcome.failed, *outcome.skipped, *outcome.deferred)]
    if settled:  # last: until the outcome is in Mongo, a claim taken over after a crash reads the journal
        EmailClaim._get_collection().delete_many({"_id": {"$in": settled}, "token": token})


def _changes(outcome: Outcome):
    """(queue document, the fields its outcome sets) for every email of the outcome."""
    for doc, accepted_at, note in outcome.sent:
        # a tenth of a second is precise enough, and lets one update cover many emails
        at = datetime.fromtimestamp(accepted_at if note else round(accepted_at, 1), UTC)
        fields = {"status": "sent", "sent_at": at, "reason": note, "next_attempt_at": None}
        if doc.get("provider_message_id"):
            fields["provider_message_id"] = doc["provider_message_id"]
        yield doc, fields
    for doc, reason in outcome.skipped:
        yield doc, {"status": "skipped", "reason": reason}
    for doc, reason, until, _retry in outcome.deferred:
        yield doc, {"status": "deferred", "reason": reason, "next_attempt_at": until}
    for doc, reason, _hard_bounce in outcome.failed:
        yield doc, {"status": "failed", "reason": reason}


def _grouped_updates(changes, now: datetime) -> list[UpdateMany]:
    """One update per distinct set of fields, each only where no outcome is recorded yet: a worker whose claim was
    taken over (it stalled past its lease) never overwrites a final outcome."""
    groups: dict[tuple, list] = {}
    for doc, fields in changes:
        groups.setdefault(tuple(fields.items()), []).append(doc["_id"])
    return [UpdateMany({"_id": {"$in": ids}, "status": {"$in": list(CLAIMABLE)}},
                       {"$set": {**dict(fields), "updated_at": now}, "$inc": {"attempts": 1},
                        "$unset": {"claim": "", "lease_until": ""}}) for fields, ids in groups.items()]


def _finals(outcome: Outcome):
    """(doc, status, reason) of the outcomes that are final: they go to notification_history."""
    yield from ((doc, "sent", note) for doc, _at, note in outcome.sent)
    yield from ((doc, "skipped", reason) for doc, reason in outcome.skipped)
    yield from ((doc, "failed", reason) for doc, reason, _hard in outcome.failed)


def _record_bounces(failed: list, now: datetime) -> None:
    """A recipient the server refused for good is suppressed, and the bounce joins the email's timeline."""
    events = []
    for doc, reason, hard_bounce in failed:
        if hard_bounce:
            suppress(doc["to_email"], "hard_bounce", reason, doc["_id"])
            events.append({"email_id": doc["_id"], "type": "bounce", "at": now, "detail": reason})
    if events:
        EmailTracking._get_collection().insert_many(events)


def _drop_journal(docs: list[dict]) -> None:
    if docs:
        try:
            get_redis().delete(*[HANDOVER_KEY.format(doc["_id"]) for doc in docs])
        except RedisError:  # housekeeping only: the entries expire, and Mongo's record wins over them
            log.warning("mail journal: could not drop %d entries", len(docs), exc_info=True)


# --- reconcile ---------------------------------------------------------------------------------------------

LIVE_JOB_STATES = {"queued", "started", "scheduled", "deferred"}


def reconcile(min_age_seconds: int | None = None) -> dict:
    """Re-enqueue documents stuck in queued, deferred or sending whose job is gone; the claim makes it safe."""
    from rq.job import Job

    grace = setting("MAIL_RECONCILE_GRACE") if min_age_seconds is None else min_age_seconds
    now = utcnow()
    cutoff = now - timedelta(seconds=grace)
    coll = EmailQueue._get_collection()
    _drop_stale_claims(now - timedelta(hours=1))
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
    lease = setting("MAIL_CLAIM_LEASE")
    for job_id, job in zip(job_ids, Job.fetch_many(job_ids, connection=redis), strict=True):
        status = (job.get_status(refresh=False) or "") if job is not None else ""
        if status == "started" and job.started_at and job.started_at < now - timedelta(seconds=lease):
            continue  # its worker may have died before claiming these; the claim makes a second job safe
        if status in LIVE_JOB_STATES:
            alive.add(job_id)
    lost: dict[str, list] = {}
    for doc in stuck:
        if doc["status"] == "sending" or doc.get("job_id") not in alive:
            lost.setdefault(doc.get("priority") or "normal", []).append(doc["_id"])
    chunk = setting("MAIL_CHUNK_SIZE")
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


def _drop_stale_claims(before: datetime) -> int:
    """Claims left by a worker that died after recording its outcomes and before releasing them. Only those of
    emails with a final outcome go: a claim of an unfinished email tells the claim that takes it over to read
    the journal."""
    claims = EmailClaim._get_collection()
    stale = [row["_id"] for row in claims.find({"lease_until": {"$lt": before}}, {"_id": 1}).limit(10_000)]
    if not stale:
        return 0
    final = [doc["_id"] for doc in EmailQueue._get_collection().find(
        {"_id": {"$in": stale}, "status": {"$in": list(TERMINAL)}}, {"_id": 1})]
    if final:
        claims.delete_many({"_id": {"$in": final}, "lease_until": {"$lt": before}})
    return len(final)
