"""Mail jobs: deliver queue documents, reconcile lost ones. Jobs raise on failure so RQ's registries tell
the truth; transient failures are retried by RQ with backoff, permanent ones are not."""

from __future__ import annotations

import logging

from rq import get_current_job

from console.blueprints.communication import delivery
from console.config import setting
from console.queues import claim_period, get_queue, run_every

log = logging.getLogger(__name__)
RECONCILE_JOB = "console.blueprints.communication.jobs.reconcile"
TICK_KEY = "mail:reconcile:tick"
BOUNCES_JOB = "console.blueprints.communication.jobs.read_bounces"
BOUNCES_TICK_KEY = "mail:bounces:tick"


def deliver(email_ids: list[str]) -> dict:
    """Claim and send these emails over one SMTP connection."""
    outcome = delivery.deliver(email_ids)
    summary = outcome.as_dict()
    job = get_current_job()
    if job is not None:
        job.meta["outcome"] = summary
        job.save_meta()
    if any(retry for *_rest, retry in outcome.deferred):
        raise delivery.MailTransient(f"{len(outcome.deferred)} email(s) deferred: "
                                          f"{outcome.deferred[0][1]}")
    if outcome.failed:
        if job is not None:
            job.retries_left = 0  # a permanent failure: retrying cannot help
        raise delivery.MailPermanent(f"{len(outcome.failed)} email(s) failed: {outcome.failed[0][1]}")
    return summary


def reconcile(min_age_seconds: int | None = None) -> dict:
    """Re-enqueue emails whose job was lost (Redis restart, killed worker)."""
    return delivery.reconcile(min_age_seconds)


def read_bounces() -> dict:
    """Read the bounce mailbox (BOUNCE_IMAP_*) and apply the delivery reports in it."""
    from console.blueprints.communication.bounces import read_bounce_mailbox

    return read_bounce_mailbox()


def enqueue_bounce_check(app) -> None:
    """Enqueue one bounce-mailbox read per BOUNCE_IMAP_INTERVAL, when a mailbox is configured."""
    from console.config import setting

    with app.app_context():
        if not app.config.get("BOUNCE_IMAP_HOST"):
            return
        interval = setting("BOUNCE_IMAP_INTERVAL")
        if claim_period(BOUNCES_TICK_KEY, interval - 1):
            get_queue("default").enqueue(BOUNCES_JOB, job_timeout=300, result_ttl=3600,
                                         description="read the bounce mailbox")


def enqueue_reconcile(app) -> None:
    """Enqueue one reconcile job unless another worker did so within the interval."""
    with app.app_context():
        if claim_period(TICK_KEY, setting("MAIL_RECONCILE_INTERVAL") - 1):
            get_queue("default").enqueue(RECONCILE_JOB, job_timeout=300, result_ttl=600,
                                         description="mail reconcile")


def start_reconcile_schedule(app) -> None:
    """Worker startup hook: reconcile now, then every MAIL_RECONCILE_INTERVAL seconds; the bounce mailbox is
    read on the same tick, once per BOUNCE_IMAP_INTERVAL.

    A daemon thread enqueues the job, so the schedule survives a Redis flush that would lose a self-scheduling
    job; the Redis key keeps several workers from enqueuing it more than once per interval."""

    def reconcile_and_read_bounces():
        for enqueue in (enqueue_reconcile, enqueue_bounce_check):
            try:
                enqueue(app)
            except Exception:  # one failing enqueue (Redis outage) does not skip the other; the worker logs its own
                log.warning("mail schedule: could not enqueue %s", enqueue.__name__, exc_info=True)

    run_every(app, setting("MAIL_RECONCILE_INTERVAL"), "mail-reconcile", reconcile_and_read_bounces)
