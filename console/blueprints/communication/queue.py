"""The mail queue's contract, shared by the sender (sending.py) and the worker (jobs.py, delivery.py): statuses,
the job name, how a job is enqueued and retried, the hand-over journal key, the message id and the history entry.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from email.utils import parseaddr
from functools import lru_cache

from flask import current_app
from rq import Queue, Retry

from console.config import parse_intervals, setting
from console.errors import ApiError
from console.queues import PRIORITY_QUEUES, get_queue
from console.timeutil import utcnow

STATUSES = ("queued", "sending", "deferred", "sent", "failed", "skipped", "delivered", "bounced", "complained")
TERMINAL = ("sent", "failed", "skipped", "delivered", "bounced", "complained")
HANDED_OVER = ("sent", "delivered", "bounced", "complained")  # the SMTP server took these (delivery_status.py)
PRIORITIES = ("high", "normal", "low")
DELIVER_JOB = "console.blueprints.communication.jobs.deliver"
HANDOVER_KEY = "mail:handover:{}"  # Redis: the journal of this email's SMTP hand-over (see delivery)


def normalize_priority(priority: str | None) -> str:
    priority = (priority or "normal").lower()
    if priority == "default":
        return "normal"
    if priority not in PRIORITIES:
        raise ApiError(422, "Unknown priority.", [{"field": "priority", "message": "one of high, normal, low"}])
    return priority


def retry_intervals() -> tuple[int, ...]:
    """MAIL_RETRY_INTERVALS in seconds (console.config parses each value once)."""
    value = current_app.config["MAIL_RETRY_INTERVALS"]
    return parse_intervals(tuple(value) if isinstance(value, list) else value)


def retry_policy() -> Retry:
    return Retry(max=max(1, setting("MAIL_MAX_ATTEMPTS") - 1), interval=list(retry_intervals()))


def message_id(email_id) -> str:
    return f"<{email_id}@{_domain(current_app.config.get('MAIL_DEFAULT_SENDER') or '')}>"


@lru_cache(maxsize=4)
def _domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2] or "console.local"


def history_entry(doc: dict) -> dict:
    """The notification_history entry for a queue document in its current (final) status."""
    return {"user_id": doc.get("user_id"), "recipient": doc.get("to_email") or doc.get("to_phone"),
            "channel": doc.get("channel", "email"),
            "category": doc.get("category"), "template_id": doc.get("template_id"),
            "template": doc.get("template_name"), "status": doc["status"], "reason": doc.get("reason"),
            "email_id": doc["_id"], "created_at": doc["created_at"]}


def _job_options(email_ids: list, priority: str, job_id: str) -> dict:
    return {"job_id": job_id, "retry": retry_policy(), "job_timeout": 60 + 5 * len(email_ids),
            "result_ttl": 3600, "failure_ttl": 7 * 24 * 3600,
            "description": f"deliver {len(email_ids)} email(s), priority {priority}"}


def enqueue_delivery(email_ids: list, priority: str, job_id: str | None = None, at: datetime | None = None) -> str:
    """Put one delivery job for these queue documents on the queue of their priority."""
    job_id = job_id or f"mail-{uuid.uuid4().hex}"
    queue = get_queue(PRIORITY_QUEUES[priority])
    ids = [str(i) for i in email_ids]
    options = _job_options(ids, priority, job_id)
    if at is not None and at > utcnow():
        queue.enqueue_at(at, DELIVER_JOB, ids, **options)
    else:
        queue.enqueue(DELIVER_JOB, ids, **options)
    return job_id


def enqueue_chunks(chunks: dict[str, list[str]], priority: str) -> None:
    """One delivery job per chunk (job id → email ids), all in one Redis pipeline."""
    if not chunks:
        return
    jobs = []
    for job_id, ids in chunks.items():
        options = _job_options(ids, priority, job_id)
        jobs.append(Queue.prepare_data(DELIVER_JOB, args=(ids,), job_id=job_id, retry=options["retry"],
                                       timeout=options["job_timeout"], result_ttl=options["result_ttl"],
                                       failure_ttl=options["failure_ttl"], description=options["description"]))
    get_queue(PRIORITY_QUEUES[priority]).enqueue_many(jobs)
