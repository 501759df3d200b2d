"""Batches: validation, progress, one SMTP connection per chunk; reconcile after lost jobs; a killed worker."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from email import message_from_bytes
from pathlib import Path

import pytest

from console.blueprints.communication.models import EmailBatch, EmailQueue
from tests.communication_helpers import API, add_members, make_template

pytestmark = pytest.mark.usefixtures("app")
ROOT = Path(__file__).resolve().parents[1]


def batch_send(client, template_id, recipients, **extra):
    return client.post(f"{API}/batch-send", json={"template_id": str(template_id), "recipients": recipients, **extra})


def test_batch_validates_every_recipient_first(api):
    template, _ = make_template(), add_members(2)
    recipients = [{"user_id": "u0"}, {"user_id": "ghost"}, {"email": "nope"}, {"user_id": "u1", "email": "a@b.co"},
                  {"email": "fine@example.com"}]
    response = batch_send(api("admin"), template.id, recipients)
    assert response.status_code == 422
    assert [e["field"] for e in response.json["errors"]] == ["recipients.1.user_id", "recipients.2.email",
                                                            "recipients.3"]
    assert EmailQueue.objects.count() == 0 and EmailBatch.objects.count() == 0


def test_batch_limits(api):
    template = make_template()
    client = api("admin")
    too_many = [{"email": f"m{i}@example.com"} for i in range(10_001)]
    response = batch_send(client, template.id, too_many)
    assert response.status_code == 422 and response.json["errors"][0]["field"] == "recipients"
    assert batch_send(client, template.id, []).status_code == 422
    assert batch_send(client, "0" * 24, [{"email": "a@example.com"}]).json["errors"][0]["field"] == "template_id"
    assert api("analyst", email="an@x.example.com").post(f"{API}/batch-send", json={}).status_code == 403


def test_batch_progress_and_one_smtp_connection_per_chunk(api, app, run_jobs, servers):
    app.config["MAIL_CHUNK_SIZE"] = 40
    template, _ = make_template(), add_members(100)
    client = api("admin")
    client.post(f"{API}/preferences/u3", json={"categories": {"product": False}})
    recipients = [{"user_id": f"u{i}", "variables": {"first_name": f"N{i}"}} for i in range(100)]
    created = batch_send(client, template.id, recipients, variables={"team": "Ops"}, priority="normal")
    assert created.status_code == 202 and created.json["queued"] == 99 and created.json["skipped"] == 1
    batch_id = created.json["batch_id"]
    before = client.get(f"{API}/batches/{batch_id}").json
    assert before["status"] == "queued" and before["total"] == 100 and before["skipped"] == 1
    assert before["progress"] == 1.0 and before["sent"] == 0
    assert app.extensions["queues"]["default"].count == 3
    run_jobs()
    after = client.get(f"{API}/batches/{batch_id}").json
    assert after == {**after, "status": "complete", "sent": 99, "failed": 0, "skipped": 1, "progress": 100.0}
    messages = servers.messages()
    assert len(messages) == 99 and len({m["Message-ID"] for m in messages}) == 99
    # one SMTP connection per chunk (u3 was skipped)
    assert sorted(Counter(m["X-Peer"] for m in messages).values()) == [20, 39, 40]
    assert {m["Subject"] for m in messages if m["To"] == "u7@members.example.com"} == {"Welcome N7!"}
    assert client.get(f"{API}/batches/{'0' * 24}").status_code == 404
    assert client.get(f"{API}/batches/nope").status_code == 404


def test_create_batch_interface_stores_the_source(app, run_jobs):
    from console.blueprints.communication.sending import batch_status, create_batch

    template, _ = make_template(category="marketing"), add_members(3)
    result = create_batch(str(template.id), [{"user_id": "u0"}, {"user_id": "u1"}, {"email": "x@example.com"}],
                          source={"campaign_id": "c1"})
    assert result == {"batch_id": result["batch_id"], "queued": 3, "skipped": 0}
    docs = EmailQueue.objects(batch_id=result["batch_id"])
    assert {d.priority for d in docs} == {"low"} and {d.category for d in docs} == {"marketing"}
    assert all(d.source == {"campaign_id": "c1"} for d in docs)
    run_jobs()
    status = batch_status(result["batch_id"])
    assert status["status"] == "complete" and status["source"] == {"campaign_id": "c1"}


def test_a_batch_of_only_bounces_is_failed(api, run_jobs):
    template = make_template()
    client = api("admin")
    batch_id = batch_send(client, template.id, [{"email": "bounce1@example.com"},
                                                {"email": "bounce2@example.com"}]).json["batch_id"]
    run_jobs()
    assert client.get(f"{API}/batches/{batch_id}").json["status"] == "failed"


def test_high_priority_is_drained_first(api, run_jobs, servers):
    template, _ = make_template(), add_members(2)
    client = api("admin")
    client.post(f"{API}/send-email", json={"template_id": str(template.id), "to": {"user_id": "u0"},
                                           "priority": "low"})
    client.post(f"{API}/send-email", json={"template_id": str(template.id), "to": {"user_id": "u1"},
                                           "priority": "high"})
    run_jobs()
    arrived = sorted(servers.maildir.joinpath("new").iterdir(), key=lambda path: path.stat().st_mtime_ns)
    order = [message_from_bytes(path.read_bytes())["To"] for path in arrived]
    assert order == ["u1@members.example.com", "u0@members.example.com"]


def test_reconcile_requeues_mail_after_redis_loses_its_queue(app, run_jobs, servers):
    from console.blueprints.communication.sending import create_batch

    template, _ = make_template(), add_members(30)
    result = create_batch(str(template.id), [{"user_id": f"u{i}"} for i in range(30)])
    app.extensions["redis"].flushdb()  # Redis restarted empty: every job is gone, Mongo still has the mail
    run_jobs()
    assert servers.messages() == []
    app.extensions["queues"]["default"].enqueue("console.blueprints.communication.jobs.reconcile", 0)
    run_jobs()
    assert EmailQueue.objects(batch_id=result["batch_id"], status="sent").count() == 30
    assert len({m["Message-ID"] for m in servers.messages()}) == len(servers.messages()) == 30
    app.extensions["queues"]["default"].enqueue("console.blueprints.communication.jobs.reconcile", 0)
    run_jobs()
    assert len(servers.messages()) == 30  # nothing left to do, nothing sent twice


def test_reconcile_leaves_live_jobs_alone_and_respects_the_grace_period(app):
    from console.blueprints.communication.delivery import reconcile

    template, _ = make_template(), add_members(3)
    from console.blueprints.communication.sending import create_batch

    create_batch(str(template.id), [{"user_id": f"u{i}"} for i in range(3)])
    assert reconcile(0)["requeued"] == 0  # their job is still queued
    app.extensions["redis"].flushdb()
    assert reconcile()["requeued"] == 0  # younger than MAIL_RECONCILE_GRACE
    assert reconcile(0)["requeued"] == 3


@pytest.mark.parametrize("held_by", ["claim", "previous_release"])
def test_a_claim_whose_worker_died_is_settled_from_the_hand_over_journal(app, run_jobs, servers, held_by):
    from datetime import timedelta

    from console.blueprints.communication.delivery import UNCERTAIN, UNCONFIRMED, reconcile
    from console.blueprints.communication.models import EmailClaim
    from console.blueprints.communication.sending import HANDOVER_KEY, create_batch
    from console.timeutil import utcnow

    template, _ = make_template(), add_members(6)
    batch_id = create_batch(str(template.id), [{"user_id": f"u{i}"} for i in range(6)])["batch_id"]
    redis = app.extensions["redis"]
    redis.flushdb()
    ids = [d.id for d in EmailQueue.objects(batch_id=batch_id).order_by("to_email")]
    # A worker claimed u0..u3 and died before writing to Mongo: u0 was accepted, u1 handed over (its dot
    # written, the reply never read), u2 was between its journal commit and its dot, u3 never reached DATA.
    lapsed = utcnow() - timedelta(seconds=1)
    if held_by == "claim":  # this release: an email_claims entry per email, the queue document still queued
        EmailClaim._get_collection().insert_many([{"_id": i, "token": "dead-worker", "lease_until": lapsed}
                                                  for i in ids[:4]])
    else:  # the previous release claimed in the queue document itself
        EmailQueue.objects(id__in=ids[:4]).update(set__status="sending", set__claim="dead-worker",
                                                  inc__attempts=1, set__lease_until=lapsed)
    redis.set(HANDOVER_KEY.format(ids[0]), f"a{time.time()}")
    redis.set(HANDOVER_KEY.format(ids[1]), f"h{time.time()}")
    redis.set(HANDOVER_KEY.format(ids[2]), "c")
    # u4 was refused at its final dot and recorded as deferred: Mongo's outcome wins over a stale entry.
    EmailQueue.objects(id=ids[4]).update(set__status="deferred", inc__attempts=1,
                                         set__next_attempt_at=utcnow() - timedelta(seconds=1))
    redis.set(HANDOVER_KEY.format(ids[4]), f"h{time.time()}")
    assert reconcile(0)["requeued"] == 6
    run_jobs()
    docs = {d.to_email.split("@")[0]: d for d in EmailQueue.objects(batch_id=batch_id)}
    assert {name: doc.status for name, doc in docs.items()} == {
        "u0": "sent", "u1": "sent", "u2": "failed", "u3": "sent", "u4": "sent", "u5": "sent"}
    assert (docs["u0"].reason, docs["u1"].reason, docs["u2"].reason) == (None, UNCONFIRMED, UNCERTAIN)
    assert sorted(m["To"] for m in servers.messages()) == [f"u{i}@members.example.com" for i in (3, 4, 5)]
    assert redis.keys("mail:handover:*") == []  # recorded in Mongo, the journal is dropped
    assert EmailClaim.objects.count() == 0  # and every claim released


def test_a_live_claim_is_not_taken_over_and_a_lapsed_one_only_once(app, run_jobs, servers):
    from datetime import timedelta

    from console.blueprints.communication.delivery import deliver
    from console.blueprints.communication.models import EmailClaim
    from console.blueprints.communication.sending import create_batch
    from console.timeutil import utcnow

    template, _ = make_template(), add_members(4)
    batch_id = create_batch(str(template.id), [{"user_id": f"u{i}"} for i in range(4)])["batch_id"]
    app.extensions["redis"].flushdb()
    ids = [d.id for d in EmailQueue.objects(batch_id=batch_id).order_by("to_email")]
    claims = EmailClaim._get_collection()
    claims.insert_many([{"_id": ids[0], "token": "alive", "lease_until": utcnow() + timedelta(seconds=60)},
                        {"_id": ids[1], "token": "dead", "lease_until": utcnow() - timedelta(seconds=1)}])
    outcome = deliver([str(i) for i in ids])
    assert outcome.as_dict() == {"claimed": 3, "sent": 3, "skipped": 0, "deferred": 0, "failed": 0}
    assert sorted(m["To"] for m in servers.messages()) == [f"u{i}@members.example.com" for i in (1, 2, 3)]
    assert [c["token"] for c in claims.find()] == ["alive"]  # the live claim is left alone
    assert EmailQueue.objects(id=ids[0]).first().status == "queued"
    assert [d.attempts for d in EmailQueue.objects(id__in=ids[1:])] == [1, 1, 1]
    assert deliver([str(i) for i in ids[1:]]).as_dict()["claimed"] == 0  # sent already: nothing claimable
    assert len(servers.messages()) == 3 and claims.count_documents({}) == 1


def test_reconcile_drops_old_claims_of_finished_emails_only(app, run_jobs):
    from datetime import timedelta

    from console.blueprints.communication.delivery import reconcile
    from console.blueprints.communication.models import EmailClaim
    from console.blueprints.communication.sending import create_batch
    from console.timeutil import utcnow

    template, _ = make_template(), add_members(3)
    batch_id = create_batch(str(template.id), [{"user_id": f"u{i}"} for i in range(3)])["batch_id"]
    run_jobs()
    ids = [d.id for d in EmailQueue.objects(batch_id=batch_id).order_by("to_email")]
    EmailQueue.objects(id=ids[2]).update(set__status="queued")  # as if its worker died before recording it
    old, recent = utcnow() - timedelta(hours=2), utcnow() - timedelta(minutes=5)
    claims = EmailClaim._get_collection()
    claims.insert_many([{"_id": ids[0], "token": "dead", "lease_until": old},
                        {"_id": ids[1], "token": "dead", "lease_until": recent},
                        {"_id": ids[2], "token": "dead", "lease_until": old}])
    app.extensions["redis"].flushdb()
    reconcile(10**6)  # a grace that re-enqueues nothing: only the claims are looked at
    # the sent email's old claim is gone; a recent one stays, and so does the claim of an unfinished email
    assert sorted(c["_id"] for c in claims.find()) == sorted(ids[1:])


def _worker(servers, log_path, **settings) -> subprocess.Popen:
    env = {**os.environ, "MONGODB_URI": servers.mongo_uri, "REDIS_URL": servers.redis_url,
           "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(servers.smtp_port), "MAILBOX_DIR": str(servers.maildir),
           "INGEST_KEYS": "test-ingest-key", "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
           "PUBLIC_BASE_URL": "http://localhost", "CONSOLE_ENV": "development", "MAIL_CLAIM_LEASE": "2",
           "MAIL_RECONCILE_INTERVAL": "1", "MAIL_RECONCILE_GRACE": "1", "LOG_LEVEL": "WARNING", **settings}
    # Its own process group: RQ runs the scheduler as a child process, which must die with the worker.
    return subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=env,
                            stdout=log_path.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(worker: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Signal the worker and its scheduler; whatever is left after 15 s is killed."""
    try:
        os.killpg(worker.pid, sig)
        worker.wait(15)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(5)


def _sink_count(servers) -> int:
    return len(os.listdir(servers.maildir / "new")) + len(os.listdir(servers.maildir / "cur"))


def _wait_for(condition, worker, log_path, timeout: float, poll: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        assert worker.poll() is None, log_path.read_text()[-3000:]
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def _assert_each_delivered_once(servers, batch_id, log_path) -> None:
    docs = list(EmailQueue.objects(batch_id=batch_id))
    statuses = Counter((d.status, d.reason) for d in docs)
    assert {d.status for d in docs} == {"sent"}, (statuses.most_common(5), log_path.read_text()[-3000:])
    at_sink = Counter(m["Message-ID"] for m in servers.messages())
    assert at_sink == Counter({d.message_id: 1 for d in docs}), at_sink.most_common(3)


@pytest.mark.slow
def test_a_worker_killed_mid_batch_then_restarted_delivers_every_email_exactly_once(app, servers, tmp_path):
    from console.blueprints.communication.sending import create_batch

    total = 1000
    template, _ = make_template(), add_members(total)
    batch_id = create_batch(str(template.id), [{"user_id": f"u{i}"} for i in range(total)])["batch_id"]
    log_path = tmp_path / "worker.log"
    worker = _worker(servers, log_path)
    try:
        kill_after = random.randint(200, 600)
        assert _wait_for(lambda: _sink_count(servers) >= kill_after, worker, log_path, 90, poll=0.002)
        time.sleep(random.uniform(0, 0.004))  # anywhere in an SMTP transaction, not just after an acceptance
        _stop(worker, signal.SIGKILL)  # the whole process group (the RQ scheduler too), as a crash would
        at_kill = _sink_count(servers)
        assert at_kill < total, "the worker should die mid-batch"
        worker = _worker(servers, log_path)
        done = {"batch_id": batch_id, "status__in": ["sent", "failed"]}
        _wait_for(lambda: EmailQueue.objects(**done).count() == total, worker, log_path, 120)
    finally:
        _stop(worker)
    _assert_each_delivered_once(servers, batch_id, log_path)


@pytest.mark.slow
def test_a_redis_restart_mid_batch_is_recovered_by_reconcile_each_email_delivered_once(app, servers, tmp_path):
    """Redis comes back empty (no persistence here): every queued job and journal entry is gone, the worker
    reconnects, and the reconcile job re-enqueues from Mongo what is left."""
    from console.blueprints.communication.sending import create_batch

    redis_server = servers.handles.get("redis")
    if redis_server is None:
        pytest.skip("Redis was not started by the tests (REDIS_URL came from the environment)")
    total = 600
    template, _ = make_template(), add_members(total)
    batch_id = create_batch(str(template.id), [{"user_id": f"u{i}"} for i in range(total)])["batch_id"]
    log_path = tmp_path / "worker.log"
    worker = _worker(servers, log_path, MAIL_RETRY_INTERVALS="1,2,2,2", MAIL_MAX_ATTEMPTS="8")
    try:
        assert _wait_for(lambda: _sink_count(servers) >= 150, worker, log_path, 90, poll=0.005)
        redis_server.restart()
        assert _sink_count(servers) < total, "Redis should restart mid-batch"
        done = {"batch_id": batch_id, "status__in": ["sent", "failed"]}
        _wait_for(lambda: EmailQueue.objects(**done).count() == total, worker, log_path, 120)
    finally:
        _stop(worker)
    _assert_each_delivered_once(servers, batch_id, log_path)
    assert "mail reconcile: re-enqueued" in log_path.read_text()


def test_the_worker_schedules_reconcile_once_per_interval(app, run_jobs):
    from console.blueprints.communication.jobs import RECONCILE_JOB, enqueue_reconcile
    from console.blueprints.communication.jobs import start_reconcile_schedule as hook

    assert hook in app.extensions["worker_startup"]
    enqueue_reconcile(app)
    enqueue_reconcile(app)  # a second worker starting within the interval adds nothing
    jobs = app.extensions["queues"]["default"].jobs
    assert [job.func_name for job in jobs] == [RECONCILE_JOB]
    run_jobs()
    assert jobs[0].fetch(jobs[0].id, connection=app.extensions["redis"]).return_value() == {
        "checked": 0, "requeued": 0, "jobs": 0}


@pytest.mark.slow
def test_a_30_second_smtp_outage_defers_then_delivers_every_email_once(app, servers, tmp_path):
    """The sink refuses (421) for 30 s: a real worker defers and retries with backoff, then delivers all."""
    from console.blueprints.communication.sending import create_batch

    total = 40
    backoff = {"MAIL_RETRY_INTERVALS": "4,8,12,16", "MAIL_MAX_ATTEMPTS": "8"}
    # RQ's Retry is fixed when the job is enqueued: the app that enqueues must agree with the worker, or
    # RQ retries at this app's pace and the attempts run out before the sink recovers, depending on timing.
    app.config.update(backoff)
    template, _ = make_template(), add_members(total)
    servers.refuse_mail()
    batch_id = create_batch(str(template.id), [{"user_id": f"u{i}"} for i in range(total)])["batch_id"]
    log_path = tmp_path / "worker.log"
    worker = _worker(servers, log_path, **backoff)
    try:
        outage_ends = time.monotonic() + 30
        deferred_seen = 0
        while time.monotonic() < outage_ends:
            assert worker.poll() is None, log_path.read_text()[-2000:]
            deferred_seen = max(deferred_seen, EmailQueue.objects(batch_id=batch_id, status="deferred").count())
            time.sleep(0.5)
        assert deferred_seen == total and _sink_count(servers) == 0
        servers.refuse_mail(False)
        deadline = time.monotonic() + 90
        while EmailQueue.objects(batch_id=batch_id, status="sent").count() < total and time.monotonic() < deadline:
            assert worker.poll() is None, log_path.read_text()[-2000:]
            time.sleep(0.5)
    finally:
        _stop(worker)
    docs = list(EmailQueue.objects(batch_id=batch_id))
    statuses = Counter((d.status, d.attempts, d.reason) for d in docs)
    assert {d.status for d in docs} == {"sent"}, (statuses.most_common(5), log_path.read_text()[-1500:])
    assert all(d.attempts >= 2 for d in docs)
    at_sink = Counter(m["Message-ID"] for m in servers.messages())
    assert len(at_sink) == total and set(at_sink.values()) == {1}
