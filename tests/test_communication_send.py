"""Sending: the queue document, the worker, the SMTP sink, idempotency, retries, permanent failures."""

from __future__ import annotations

import time

import pytest

from console.blueprints.communication.models import EmailQueue, NotificationHistory
from tests.communication_helpers import API, add_members, bodies, make_template

pytestmark = pytest.mark.usefixtures("app")


def send(client, template_id, to, **extra):
    return client.post(f"{API}/send-email", json={"template_id": str(template_id), "to": to, **extra})


def test_send_email_is_queued_then_sent_by_the_worker(api, run_jobs, servers):
    template, _ = make_template(), add_members()
    client = api("admin")
    response = send(client, template.id, {"user_id": "u1"}, variables={"first_name": "Zoe"}, priority="high")
    assert response.status_code == 202, response.json
    email_id = response.json["email_id"]
    assert response.json["status"] == "queued"
    doc = EmailQueue.objects.get(id=email_id)
    assert doc.to_email == "u1@members.example.com" and doc.priority == "high" and doc.status == "queued"
    assert doc.subject == "Welcome Zoe!" and len(doc.links) == 2
    run_jobs()
    doc.reload()
    assert doc.status == "sent" and doc.sent_at and doc.attempts == 1
    [message] = servers.messages()
    assert message["Subject"] == "Welcome Zoe!"
    assert message["To"] == "u1@members.example.com"
    assert message["Message-ID"] == doc.message_id
    assert message["List-Unsubscribe"].startswith("<http://localhost/u/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = bodies(message)
    assert "http://localhost/t/c/" in html and "http://localhost/t/o/" in html
    assert "https://example.org/faq" not in html  # rewritten
    assert "Hello Zoe" in text and "Unsubscribe: http://localhost/u/" in text
    assert NotificationHistory.objects.get(email_id=doc.id).status == "sent"


def _retry_when_due(run_jobs, done, timeout: float = 10.0) -> None:
    """Run the worker (with RQ's scheduler, which moves due retries back to their queue) until `done()`."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the retry never ran"
        time.sleep(0.3)
        run_jobs(with_scheduler=True)


def _queue(app, name):
    return app.extensions["queues"][name]


def test_priority_picks_the_rq_queue(api, app):
    template, _ = make_template(), add_members(1)
    client = api("admin")
    for priority, queue in (("high", "high"), ("normal", "default"), ("low", "low")):
        assert send(client, template.id, {"user_id": "u0"}, priority=priority).status_code == 202
        assert _queue(app, queue).count == 1


def test_idempotency_key_returns_the_first_email_and_sends_once(api, run_jobs, servers):
    template, _ = make_template(), add_members(1)
    client = api("admin")
    first = send(client, template.id, {"user_id": "u0"}, idempotency_key="order-42")
    again = send(client, template.id, {"user_id": "u0"}, idempotency_key="order-42", variables={"x": 1})
    assert first.status_code == again.status_code == 202
    assert again.json["email_id"] == first.json["email_id"] and again.json["duplicate"] is True
    run_jobs()
    assert send(client, template.id, {"user_id": "u0"}, idempotency_key="order-42").json["status"] == "sent"
    assert EmailQueue.objects.count() == 1 and len(servers.messages()) == 1


@pytest.mark.parametrize(("to", "field"), [
    ({"user_id": "ghost"}, "to.user_id"),
    ({"email": "not-an-address"}, "to.email"),
    ({"user_id": "nomail"}, "to.user_id"),
    ({"user_id": "u0", "email": "a@b.example.com"}, "to"),
    ({}, "to"),
])
def test_bad_recipients_are_422(api, to, field):
    from console.members import Member

    template, _ = make_template(), add_members(1)
    Member(user_id="nomail", name="No Mail").save()
    response = send(api("admin"), template.id, to)
    assert response.status_code == 422 and response.json["errors"][0]["field"] == field
    assert EmailQueue.objects.count() == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"template_id": "0" * 24, "to": {"email": "a@b.example.com"}}, "template_id"),
    ({"template_id": "nope", "to": {"email": "a@b.example.com"}}, "template_id"),
    ({"to": {"email": "a@b.example.com"}}, "template_id"),
    ({"template_id": "x", "to": {"email": "a@b.example.com"}, "priority": "urgent"}, "priority"),
    ({"template_id": "x", "to": {"email": {"$gt": ""}}}, "to.email.$gt"),
])
def test_bad_send_bodies_are_422(api, body, field):
    response = api("admin").post(f"{API}/send-email", json=body)
    assert response.status_code == 422 and response.json["errors"][0]["field"] == field


def test_transient_failures_retry_with_backoff_until_the_sink_accepts(api, app, run_jobs, servers):
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry

    template, _ = make_template(), add_members(1)
    servers.refuse_mail()
    email_id = send(api("admin"), template.id, {"user_id": "u0"}).json["email_id"]
    run_jobs()
    doc = EmailQueue.objects.get(id=email_id)
    assert doc.status == "deferred" and doc.attempts == 1 and "421" in doc.reason and doc.next_attempt_at
    queue = _queue(app, "default")
    assert ScheduledJobRegistry(queue=queue).count == 1  # RQ Retry, not a swallowed error
    _retry_when_due(run_jobs, lambda: EmailQueue.objects.get(id=email_id).attempts == 2)
    servers.refuse_mail(False)
    _retry_when_due(run_jobs, lambda: EmailQueue.objects.get(id=email_id).status == "sent")
    doc.reload()
    assert doc.status == "sent" and doc.attempts == 3 and doc.reason is None
    assert len(servers.messages()) == 1
    assert FailedJobRegistry(queue=queue).count == 0


def test_retries_give_up_after_the_last_attempt(api, app, run_jobs, servers):
    from rq.registry import FailedJobRegistry

    app.config["MAIL_MAX_ATTEMPTS"] = 2
    template, _ = make_template(), add_members(1)
    servers.refuse_mail()
    email_id = send(api("admin"), template.id, {"user_id": "u0"}).json["email_id"]
    run_jobs()
    _retry_when_due(run_jobs, lambda: EmailQueue.objects.get(id=email_id).status == "failed")
    doc = EmailQueue.objects.get(id=email_id)
    assert doc.status == "failed" and doc.reason.startswith("gave up after 2 attempts") and doc.attempts == 2
    assert FailedJobRegistry(queue=_queue(app, "default")).count == 1
    assert NotificationHistory.objects.get(email_id=doc.id).status == "failed"


def test_hard_bounce_fails_at_once_and_suppresses_the_address(api, app, run_jobs, servers):
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry

    from console.blueprints.communication.models import EmailTracking, Suppression

    template = make_template()
    client = api("admin")
    email_id = send(client, template.id, {"email": "bounce.me@example.com"}).json["email_id"]
    run_jobs()
    doc = EmailQueue.objects.get(id=email_id)
    assert doc.status == "failed" and doc.attempts == 1 and "550" in doc.reason
    queue = _queue(app, "default")
    assert FailedJobRegistry(queue=queue).count == 1 and ScheduledJobRegistry(queue=queue).count == 0
    assert Suppression.objects.get(email="bounce.me@example.com").reason == "hard_bounce"
    assert EmailTracking.objects.get(email_id=doc.id).type == "bounce"
    again = send(client, template.id, {"email": "Bounce.Me@example.com"})
    assert again.json["status"] == "skipped" and again.json["reason"] == "suppressed"
    assert servers.messages() == []
    tracking = client.get(f"{API}/tracking/{email_id}").json
    assert tracking["status"] == "failed" and "550" in tracking["reason"] and tracking["attempts"] == 1
    assert [e["type"] for e in tracking["events"]][:1] == ["queued"] and "bounce" in [e["type"] for e in
                                                                                      tracking["events"]]


def test_a_bounce_in_a_chunk_does_not_stop_the_others(app, run_jobs, servers):
    from console.blueprints.communication.sending import create_batch

    template = make_template()
    recipients = [{"email": "a@example.com"}, {"email": "bounce@example.com"}, {"email": "c@example.com"}]
    batch = create_batch(str(template.id), recipients, priority="normal")
    run_jobs()
    statuses = {d.to_email: d.status for d in EmailQueue.objects(batch_id=batch["batch_id"])}
    assert statuses == {"a@example.com": "sent", "bounce@example.com": "failed", "c@example.com": "sent"}
    assert sorted(m["To"] for m in servers.messages()) == ["a@example.com", "c@example.com"]


def test_retry_endpoint_requeues_a_failed_email(api, run_jobs, servers):
    template = make_template()
    client = api("admin")
    email_id = send(client, template.id, {"email": "bounce.x@example.com"}).json["email_id"]
    run_jobs()
    assert client.post(f"{API}/email-queue/{email_id}/retry").status_code == 202
    assert EmailQueue.objects.get(id=email_id).status == "queued"
    assert client.post(f"{API}/email-queue/{email_id}/retry").status_code == 409
    assert client.post(f"{API}/email-queue/{'0' * 24}/retry").status_code == 404
    assert api("analyst", email="an@x.example.com").post(f"{API}/email-queue/{email_id}/retry").status_code == 403


def test_send_at_in_the_future_waits(api, app, run_jobs, servers):
    from datetime import timedelta

    from rq.registry import ScheduledJobRegistry

    from console.timeutil import isoformat, utcnow

    template, _ = make_template(), add_members(1)
    later = isoformat(utcnow() + timedelta(hours=2))
    response = send(api("admin"), template.id, {"user_id": "u0"}, send_at=later)
    assert response.json["status"] == "queued"
    run_jobs()
    assert servers.messages() == []
    assert ScheduledJobRegistry(queue=_queue(app, "default")).count == 1


def test_email_queue_lists_with_counts_and_filters(api, run_jobs):
    template, _ = make_template(), add_members(3)
    client = api("admin")
    send(client, template.id, {"user_id": "u0"}, priority="high")
    send(client, template.id, {"email": "bounce@example.com"})
    run_jobs()
    send(client, template.id, {"user_id": "u2"}, priority="low")
    body = client.get(f"{API}/email-queue").json
    assert body["counts"] == {"queued": 1, "sending": 0, "deferred": 0, "sent": 1, "failed": 1, "skipped": 0,
                              "delivered": 0, "bounced": 0, "complained": 0}
    assert len(body["items"]) == 3 and body["next_cursor"] is None
    assert "html_body" not in body["items"][0]
    assert [i["status"] for i in client.get(f"{API}/email-queue?status=failed").json["items"]] == ["failed"]
    assert [i["priority"] for i in client.get(f"{API}/email-queue?priority=high").json["items"]] == ["high"]
    page = client.get(f"{API}/email-queue?limit=2").json
    rest = client.get(f"{API}/email-queue", query_string={"limit": 2, "cursor": page["next_cursor"]}).json
    assert len(page["items"]) == 2 and len(rest["items"]) == 1
    assert client.get(f"{API}/email-queue?status=bogus").status_code == 422
    assert api("analyst", email="an@x.example.com").get(f"{API}/email-queue").status_code == 200
    assert api("content_manager", email="cm@x.example.com").get(f"{API}/email-queue").status_code == 403


def test_history_lists_every_notification_newest_first(api, run_jobs):
    template, _ = make_template(), add_members(1)
    client = api("admin")
    client.post(f"{API}/preferences/u0", json={"categories": {"marketing": False}})
    send(client, template.id, {"user_id": "u0"})
    send(client, template.id, {"user_id": "u0"}, category="marketing")
    run_jobs()
    items = client.get(f"{API}/history/u0").json["items"]
    assert [(i["status"], i["category"]) for i in items] == [("skipped", "marketing"), ("sent", "product")]
    assert set(items[0]) >= {"id", "channel", "category", "template", "status", "created_at"}
    assert items[0]["template"] == "Welcome" and items[0]["channel"] == "email"
    assert client.get(f"{API}/history/nobody").json == {"user_id": "nobody", "items": [], "next_cursor": None}


@pytest.mark.parametrize(("role", "status"), [("analyst", 403), ("content_manager", 403), ("moderator", 403),
                                              ("admin", 202)])
def test_send_permissions(api, role, status):
    template = make_template()
    response = send(api(role), template.id, {"email": "a@example.com"})
    assert response.status_code == status


def test_unicode_and_very_long_lines_survive_smtp(api, run_jobs, servers):
    from email.header import decode_header, make_header

    long_line = "<p>" + "word " * 600 + "</p>"  # far beyond SMTP's 998-character line limit
    template = make_template(name="Unicode", subject="Grüße {{ first_name }} ✓", html_body=long_line + "<p>Ünïcödé</p>")
    response = send(api("admin"), template.id, {"email": "long@example.com"}, variables={"first_name": "Zoë"})
    run_jobs()
    assert EmailQueue.objects.get(id=response.json["email_id"]).status == "sent"
    [message] = servers.messages()
    assert str(make_header(decode_header(message["Subject"]))) == "Grüße Zoë ✓"
    text, html = bodies(message)
    assert long_line in html and "Ünïcödé" in html and "Ünïcödé" in text
