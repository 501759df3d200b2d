"""Sending mail: single sends and batches, the queue as admins read it, tracking and history. Mongo is the
source of truth; RQ carries jobs that name queue documents (the contract is in queue.py, the worker's side in
jobs.py and delivery.py).

Other features use `create_batch`, `batch_status`, `deliverability` (engagement's campaigns; platform's event
mail) and `send_email` (hardening's alerts); an admin's own sends (the API, the pages) go through
`send_requested`, `batch_requested`, `send_test`, `retry_email`, which also write the audit entry.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from bson import ObjectId
from email_validator import EmailNotValidError, validate_email
from pymongo.errors import DuplicateKeyError

from console import audit
from console.blueprints.communication.email_templates import required_of, template_for_send
from console.blueprints.communication.layout import compose, get_layout
from console.blueprints.communication.models import (
    EmailBatch,
    EmailQueue,
    EmailTemplate,
    EmailTracking,
    NotificationHistory,
)
from console.blueprints.communication.prefs import decide
from console.blueprints.communication.prefs import deliverability as _deliverability
from console.blueprints.communication.queue import (  # noqa: F401  (pages and tests read PRIORITIES, HANDOVER_KEY here)
    HANDED_OVER,
    HANDOVER_KEY,
    PRIORITIES,
    STATUSES,
    enqueue_chunks,
    enqueue_delivery,
    history_entry,
    message_id,
    normalize_priority,
)
from console.blueprints.communication.render import RenderError, missing_variables, render_fields
from console.config import setting
from console.db import find_in
from console.errors import ApiError
from console.members import Member
from console.pagination import PageQuery, object_id_or_404, paginate
from console.queues import get_redis
from console.timeutil import as_utc, utcnow

MAX_BATCH = 10_000


# --- recipients --------------------------------------------------------------------------------------------

def _valid_email(address: str) -> str | None:
    try:
        return validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def _member_context(member: dict | None, email: str) -> dict:
    name = (member or {}).get("name") or ""
    return {"email": email, "name": name, "first_name": name.split(" ")[0] if name else "",
            "user_id": (member or {}).get("user_id")}


def resolve_recipients(items: list[dict], field: str = "recipients") -> tuple[list[dict], list[dict]]:
    """[{"user_id"} | {"email"}, optional "variables"] → resolved recipients and per-item errors."""
    user_ids = [item["user_id"] for item in items if item.get("user_id")]
    members = {doc["user_id"]: doc for doc in find_in(Member._get_collection(), "user_id", user_ids,
                                                      {"user_id": 1, "email": 1, "name": 1})}
    out, errors = [], []
    for index, item in enumerate(items):
        where = f"{field}.{index}" if field == "recipients" else field
        uid, address = item.get("user_id"), item.get("email")
        if bool(uid) == bool(address):
            errors.append({"field": where, "message": "give exactly one of user_id or email"})
            continue
        if uid:
            member = members.get(uid)
            if member is None:
                errors.append({"field": f"{where}.user_id", "message": f"no member has the user_id {uid!r}"})
                continue
            email = _valid_email(member.get("email") or "")
            if not email:
                errors.append({"field": f"{where}.user_id", "message": f"member {uid!r} has no valid email address"})
                continue
        else:
            member = None
            email = _valid_email(address)
            if not email:
                errors.append({"field": f"{where}.email", "message": f"{address!r} is not a valid email address"})
                continue
        out.append({"user_id": uid, "email": email, "member": member, "variables": item.get("variables") or {}})
    return out, errors


# --- the steps a single send and a batch share -------------------------------------------------------------

def _template_and_options(template_id: str | None, template_key: str | None, priority: str | None,
                          category: str | None) -> tuple[EmailTemplate, str, str]:
    """The template a send names (by id or key), its priority and its category; 422 when either is bad."""
    priority = normalize_priority(priority)
    template = template_for_send(template_id, template_key)
    return template, priority, category or template.category


def _refuse_missing(template: EmailTemplate, recipients: list[dict], shared: dict, where) -> None:
    """422 naming every variable the template requires that a recipient's data lacks."""
    required = required_of(template)
    if not required:
        return
    errors, names = [], set()
    for index, recipient in enumerate(recipients):
        for name in missing_variables(required, {**shared, **recipient["variables"]}):
            names.add(name)
            if len(errors) < 200:
                errors.append({"field": f"{where(index)}.{name}", "message": f"the template requires {name!r}"})
    if errors:
        listed = ", ".join(sorted(names))
        raise ApiError(422, f"Missing required variable(s): {listed}. Nothing was sent.", errors)


def _build(template: EmailTemplate, recipient: dict, shared: dict, *, email_id: ObjectId, priority: str,
           category: str, decision: tuple, now: datetime, extra: dict, layout: dict) -> dict:
    """A queue document; raises RenderError when the template cannot render."""
    data = {**_member_context(recipient.get("member"), recipient["email"]), **shared, **recipient["variables"]}
    rendered = render_fields({"subject": template.subject, "html_body": template.html_body,
                              "text_body": template.text_body}, data)
    composed = compose(rendered, email_id, category=category, user_id=recipient.get("user_id"),
                       to_email=recipient["email"], layout=layout)
    verdict, reason, until = decision
    status = {"send": "queued", "skip": "skipped", "defer": "deferred"}[verdict]
    return {"_id": email_id, "channel": "email", "to_email": recipient["email"], "user_id": recipient.get("user_id"),
            "template_id": template.id, "template_name": template.name, "template_version": template.version,
            "subject": composed["subject"], "html_body": composed["html_body"], "text_body": composed["text_body"],
            "links": composed["links"], "unsubscribe_url": composed["unsubscribe_url"], "priority": priority,
            "category": category, "status": status,
            "reason": reason, "attempts": 0, "created_at": now, "updated_at": now, "next_attempt_at": until,
            "message_id": message_id(email_id), "opens": 0, "clicks": 0, **extra}


def _insert(docs: list[dict]) -> None:
    """Write queue documents; the skipped ones land in history now, the others when their outcome is known."""
    EmailQueue._get_collection().insert_many(docs, ordered=False)
    skipped = [history_entry(doc) for doc in docs if doc["status"] == "skipped"]
    if skipped:
        NotificationHistory._get_collection().insert_many(skipped, ordered=False)


def _actor() -> str | None:
    from console.audit import _actor as audit_actor

    return audit_actor()[0]


def _existing(idempotency_key: str) -> dict | None:
    doc = EmailQueue._get_collection().find_one({"idempotency_key": idempotency_key}, {"status": 1, "reason": 1})
    if doc:
        return {"email_id": str(doc["_id"]), "status": doc["status"], "reason": doc.get("reason"), "duplicate": True}
    return None


def send_email(template_id: str | None, to: dict, *, template_key: str | None = None, variables: dict | None = None,
               priority: str = "normal", category: str | None = None, idempotency_key: str | None = None,
               send_at: datetime | None = None, source: dict | None = None) -> dict:
    """Queue one email; a repeated idempotency key returns the first email and sends nothing new."""
    if idempotency_key and (existing := _existing(idempotency_key)):
        return existing
    template, priority, category = _template_and_options(template_id, template_key, priority, category)
    recipients, errors = resolve_recipients([to], field="to")
    if errors:
        raise ApiError(422, errors[0]["message"], errors)
    shared = variables or {}
    _refuse_missing(template, recipients, shared, lambda _index: "variables")
    recipient = recipients[0]
    now = utcnow()
    decision = decide([recipient], category, now=now)[0]
    send_at = as_utc(send_at)
    email_id = ObjectId()
    extra = {"job_id": f"mail-{email_id}", "send_at": send_at, "created_by": _actor(), "source": source or {}}
    if idempotency_key:
        extra["idempotency_key"] = idempotency_key
    try:
        doc = _build(template, recipient, shared, email_id=email_id, priority=priority, category=category,
                     decision=decision, now=now, extra=extra, layout=get_layout())
    except RenderError as error:
        raise ApiError(422, "The template failed to render with these variables.", error.errors) from None
    try:
        _insert([doc])
    except DuplicateKeyError:
        return _existing(idempotency_key)
    if doc["status"] == "queued":
        enqueue_delivery([email_id], priority, extra["job_id"], at=send_at)
    elif doc["status"] == "deferred":
        enqueue_delivery([email_id], priority, extra["job_id"], at=doc["next_attempt_at"])
    return {"email_id": str(email_id), "status": doc["status"], "reason": doc["reason"], "duplicate": False}


def create_batch(template_id: str | None, recipients: list[dict], *, template_key: str | None = None,
                 variables: dict | None = None, priority: str = "low", category: str | None = None,
                 source: dict | None = None) -> dict:
    """Validate every recipient and variable first, then render and insert the queue documents in chunks of
    MAIL_CHUNK_SIZE (never the whole batch in memory), then enqueue one delivery job per chunk.
    Returns {"batch_id", "queued", "skipped"}."""
    if not recipients:
        raise ApiError(422, "No recipients.", [{"field": "recipients", "message": "give at least one recipient"}])
    if len(recipients) > MAX_BATCH:
        raise ApiError(422, f"At most {MAX_BATCH:,} recipients per batch.",
                       [{"field": "recipients", "message": f"at most {MAX_BATCH} recipients"}])
    template, priority, category = _template_and_options(template_id, template_key, priority, category)
    resolved, errors = resolve_recipients(recipients)
    if errors:
        raise ApiError(422, f"{len(errors)} recipient(s) are not valid; nothing was sent.", errors[:200])
    shared = variables or {}
    _refuse_missing(template, resolved, shared, lambda index: f"recipients.{index}.variables")
    now = utcnow()
    batch_id = ObjectId()
    source = dict(source or {})
    options = {"priority": priority, "category": category, "now": now, "layout": get_layout()}
    jobs, deferred, skipped = _write_chunks(batch_id, template, resolved, shared, decide(resolved, category, now=now),
                                            source, options)
    total = len(resolved)
    EmailBatch._get_collection().insert_one(
        {"_id": batch_id, "template_id": template.id, "template_name": template.name, "priority": priority,
         "category": category, "total": total, "queued": total - skipped, "skipped": skipped,
         "source": source, "created_by": _actor(), "created_at": now})
    enqueue_chunks(jobs, priority)
    for email_id, job_id, until in deferred:  # quiet hours: each waits for its own window
        enqueue_delivery([email_id], priority, f"{job_id}-{email_id}", at=until)
    return {"batch_id": str(batch_id), "queued": total - skipped, "skipped": skipped}


def _write_chunks(batch_id: ObjectId, template: EmailTemplate, resolved: list[dict], shared: dict,
                  decisions: list[tuple], source: dict, options: dict):
    """Render and insert the batch's queue documents MAIL_CHUNK_SIZE at a time (a render failure takes back what
    was written: 422). Returns (job id → email ids to queue, deferred (email id, job id, until), skipped count)."""
    chunk = setting("MAIL_CHUNK_SIZE")
    jobs: dict[str, list[str]] = {}
    deferred: list[tuple[ObjectId, str, datetime]] = []
    skipped = 0
    for start in range(0, len(resolved), chunk):
        job_id = f"mail-batch-{batch_id}-{start // chunk}"
        docs = []
        for index in range(start, min(start + chunk, len(resolved))):
            try:
                docs.append(_build(template, resolved[index], shared, email_id=ObjectId(), decision=decisions[index],
                                   extra={"batch_id": batch_id, "source": source, "job_id": job_id}, **options))
            except RenderError as error:
                _undo_batch(batch_id)
                raise ApiError(422, "The template failed to render for a recipient; nothing was sent.",
                               [{"field": f"recipients.{index}.variables", "message": str(error)}]) from None
        _insert(docs)
        for doc in docs:
            if doc["status"] == "queued":
                jobs.setdefault(job_id, []).append(str(doc["_id"]))
            elif doc["status"] == "deferred":
                deferred.append((doc["_id"], job_id, doc["next_attempt_at"]))
            else:
                skipped += 1
    return jobs, deferred, skipped


# --- what an admin asks for: the same sends, with their audit entry --------------------------------------------

def send_requested(template_id: str | None, to: dict, **options) -> dict:
    """An admin's single send (send_email's arguments); audited unless the idempotency key repeated it."""
    result = send_email(template_id, to, **options)
    if not result["duplicate"]:
        audit.record("email.send", f"email:{result['email_id']}", None, {"status": result["status"]},
                     template_id=template_id, template_key=options.get("template_key"))
    return result


def batch_requested(template_id: str | None, recipients: list[dict], **options) -> dict:
    """An admin's batch (create_batch's arguments), audited."""
    result = create_batch(template_id, recipients, **options)
    audit.record("batch.send", f"batch:{result['batch_id']}", None, result, template_id=template_id,
                 template_key=options.get("template_key"))
    return result


def send_test(template: EmailTemplate, to_email: str) -> dict:
    """The saved template with its sample data, to an admin (high priority), audited."""
    result = send_email(str(template.id), {"email": to_email}, variables=template.sample_data or {}, priority="high")
    audit.record("email.send_test", f"template:{template.id}", None, result)
    return result


def _undo_batch(batch_id: ObjectId) -> None:
    """Take back the chunks already written when a later one fails to render (no job was enqueued yet)."""
    coll = EmailQueue._get_collection()
    ids = [doc["_id"] for doc in coll.find({"batch_id": batch_id, "status": "skipped"}, {"_id": 1})]
    if ids:
        NotificationHistory._get_collection().delete_many({"email_id": {"$in": ids}})
    coll.delete_many({"batch_id": batch_id})


def batch_status(batch_id: str) -> dict:
    """Progress of a batch, counted from its queue documents."""
    oid = object_id_or_404(batch_id)
    batch = EmailBatch._get_collection().find_one({"_id": oid})
    if batch is None:
        raise ApiError(404, f"No batch has the id {batch_id}.")
    return batch_statuses([batch])[0]


def batch_statuses(batches: list[dict]) -> list[dict]:
    """Progress of several batch documents, counted in one aggregation over their queue documents."""
    counts = {batch["_id"]: dict.fromkeys(STATUSES, 0) for batch in batches}
    if counts:
        for row in EmailQueue._get_collection().aggregate([
                {"$match": {"batch_id": {"$in": list(counts)}}},
                {"$group": {"_id": {"batch": "$batch_id", "status": "$status"}, "n": {"$sum": 1}}}]):
            counts[row["_id"]["batch"]][row["_id"]["status"]] = row["n"]
    return [_batch_summary(batch, counts[batch["_id"]]) for batch in batches]


def _batch_summary(batch: dict, counts: dict) -> dict:
    oid = batch["_id"]
    total = batch["total"]
    handed_over = sum(counts[status] for status in HANDED_OVER)
    done = handed_over + counts["failed"] + counts["skipped"]
    if total and done >= total:
        status = "failed" if counts["failed"] and not handed_over else "complete"
    elif handed_over or counts["failed"] or counts["sending"] or counts["deferred"]:
        status = "sending"
    else:
        status = "queued"
    return {"batch_id": str(oid), "status": status, "total": total, "sent": handed_over,
            "delivered": counts["delivered"], "bounced": counts["bounced"], "complained": counts["complained"],
            "failed": counts["failed"], "skipped": counts["skipped"], "queued": counts["queued"],
            "sending": counts["sending"], "deferred": counts["deferred"],
            "progress": round(100.0 * done / total, 1) if total else 100.0,
            "template_id": str(batch["template_id"]) if batch.get("template_id") else None,
            "template_name": batch.get("template_name"), "priority": batch.get("priority"),
            "category": batch.get("category"), "source": batch.get("source") or {},
            "created_at": batch.get("created_at"), "created_by": batch.get("created_by")}


def deliverability(user_ids: list[str], category: str, channel: str = "email") -> dict[str, str]:
    """Members who must not get this category now: user_id → "opted_out" | "suppressed" | "frequency_capped"."""
    return _deliverability(user_ids, category, channel)


# --- reading the queue -------------------------------------------------------------------------------------

def email_summary(doc: dict) -> dict:
    return {"id": str(doc["_id"]), "to": doc.get("to_email") or doc.get("to_phone"), "user_id": doc.get("user_id"),
            "channel": doc.get("channel") or "email",
            "subject": doc.get("subject") or ("Text message" if doc.get("channel") == "sms" else ""),
            "template_id": str(doc["template_id"]) if doc.get("template_id") else None,
            "template": doc.get("template_name"), "category": doc.get("category"), "priority": doc.get("priority"),
            "status": doc.get("status"), "reason": doc.get("reason"), "attempts": doc.get("attempts", 0),
            "batch_id": str(doc["batch_id"]) if doc.get("batch_id") else None,
            "created_at": doc.get("created_at"), "updated_at": doc.get("updated_at"), "sent_at": doc.get("sent_at"),
            "next_attempt_at": doc.get("next_attempt_at"), "opens": doc.get("opens", 0),
            "clicks": doc.get("clicks", 0)}


SUMMARY_FIELDS = {"html_body": 0, "text_body": 0, "links": 0}


def queue_counts(match: dict | None = None) -> dict[str, int]:
    counts = {status: 0 for status in STATUSES}
    pipeline = ([{"$match": match}] if match else []) + [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
    for row in EmailQueue._get_collection().aggregate(pipeline):
        if row["_id"] in counts:
            counts[row["_id"]] = row["n"]
    return counts


def queue_filter(status: str | None = None, priority: str | None = None, batch_id: str | None = None,
                 q: str | None = None) -> dict:
    match: dict = {}
    if status:
        match["status"] = status
    if priority:
        match["priority"] = normalize_priority(priority)
    if batch_id:
        if not ObjectId.is_valid(batch_id):
            raise ApiError(422, "Bad batch id.", [{"field": "batch_id", "message": "not a batch id"}])
        match["batch_id"] = ObjectId(batch_id)
    if q:
        match["to_email"] = q.strip().lower()
    return match


def queue_page(page: PageQuery, **filters) -> dict:
    """One page of the queue, newest first: {"items": [email summaries], "next_cursor"}; 422 on bad filters."""
    queryset = EmailQueue.objects(__raw__=queue_filter(**filters)).exclude(*SUMMARY_FIELDS)
    return paginate(queryset, page, transform=lambda doc: email_summary(doc.to_mongo().to_dict()))


def get_email(email_id: str) -> dict:
    doc = EmailQueue._get_collection().find_one({"_id": object_id_or_404(email_id)})
    if doc is None:
        raise ApiError(404, f"No email has the id {email_id}.")
    return doc


def tracking(email_id: str) -> dict:
    """Status, why, attempts and the timeline of events for one email."""
    doc = get_email(email_id)
    events = [{"type": "queued", "at": doc.get("created_at")}]
    for row in EmailTracking._get_collection().find({"email_id": doc["_id"]}).sort("at", 1).limit(1000):
        event = {"type": row["type"], "at": row["at"]}
        if row["type"] == "open":
            event["approximate"] = True
        if row.get("url"):
            event["url"] = row["url"]
        if row.get("detail"):
            event["detail"] = row["detail"]
        if row.get("bounce_type"):
            event["bounce_type"] = row["bounce_type"]
        if row.get("machine"):
            event["machine"] = row["machine"]
        events.append(event)
    if doc.get("status") in HANDED_OVER and doc.get("sent_at"):
        events.append({"type": "sent", "at": doc["sent_at"]})
    elif doc.get("status") in ("failed", "skipped", "deferred"):
        events.append({"type": doc["status"], "at": doc.get("updated_at"), "detail": doc.get("reason")})
    # providers report in whole seconds: within one second, the hand-over comes before what followed it
    stage = {"queued": 0, "sent": 1}
    events.sort(key=lambda e: ((e["at"] or doc["created_at"]).replace(microsecond=0), stage.get(e["type"], 2)))
    return {"email_id": str(doc["_id"]), "status": doc["status"], "reason": doc.get("reason"),
            "attempts": doc.get("attempts", 0), "to": doc.get("to_email") or doc.get("to_phone"),
            "user_id": doc.get("user_id"), "channel": doc.get("channel") or "email",
            "subject": doc.get("subject") or ("Text message" if doc.get("channel") == "sms" else None),
            "category": doc.get("category"), "priority": doc.get("priority"),
            "template": doc.get("template_name"), "message_id": doc.get("message_id"), "sent_at": doc.get("sent_at"),
            "events": events, "opens": doc.get("opens", 0), "clicks": doc.get("clicks", 0),
            "first_opened_at": doc.get("first_opened_at"), "opens_are_approximate": True}


def retry_email(email_id: str) -> dict:
    """Send a failed (or stuck deferred) email again, from attempt one."""
    doc = get_email(email_id)
    if doc["status"] not in ("failed", "deferred"):
        raise ApiError(409, f"Only failed or deferred emails can be retried; this one is {doc['status']}.")
    job_id = f"mail-{doc['_id']}-retry-{uuid.uuid4().hex[:8]}"
    now = utcnow()
    result = EmailQueue._get_collection().update_one(
        {"_id": doc["_id"], "status": doc["status"]},
        {"$set": {"status": "queued", "attempts": 0, "reason": None, "job_id": job_id, "updated_at": now,
                  "next_attempt_at": None}})
    if not result.modified_count:
        raise ApiError(409, "The email changed meanwhile; reload.")
    NotificationHistory._get_collection().delete_many({"email_id": doc["_id"]})  # a new outcome will follow
    get_redis().delete(HANDOVER_KEY.format(doc["_id"]))  # a person decided to send it again
    enqueue_delivery([doc["_id"]], doc.get("priority") or "normal", job_id)
    audit.record("email.retry", f"email:{email_id}")
    return {"email_id": str(doc["_id"]), "status": "queued"}


def history_query(user_id: str, with_preference_changes: bool = False):
    """A member's notifications, sent or skipped; optionally with their preference changes between them."""
    if with_preference_changes:
        return NotificationHistory.objects(user_id=user_id)
    return NotificationHistory.objects(user_id=user_id, kind__ne="preference")


def history_item(doc) -> dict:
    return {"id": str(doc.id), "channel": doc.channel, "category": doc.category, "template": doc.template,
            "template_id": str(doc.template_id) if doc.template_id else None, "status": doc.status,
            "reason": doc.reason, "email_id": str(doc.email_id) if doc.email_id else None,
            "recipient": doc.recipient, "created_at": doc.created_at}


def recent_batches(limit: int = 10) -> list[dict]:
    return list(EmailBatch._get_collection().find().sort("created_at", -1).limit(limit))
