"""SMS for real: send-sms through the durable queue to a local server speaking Twilio's Messages API; E.164
numbers; retries and exactly once across lost answers and a killed worker; signed status and inbound
webhooks; STOP and START; quiet hours defer to their end; history and the queue page."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from console.blueprints.communication.models import EmailQueue, NotificationHistory
from tests.communication_helpers import API, add_members, make_template
from tests.sms_provider import AUTH_TOKEN, FROM, FakeTwilio

pytestmark = pytest.mark.usefixtures("app")
PHONE = "+14155550132"


@pytest.fixture
def twilio(app):
    with FakeTwilio() as fake:
        app.config.update(fake.config())
        yield fake


def _send(client, **body):
    return client.post(f"{API}/send-sms", json={"category": "security", **body})


def test_send_sms_goes_through_the_queue_to_the_provider_in_e164(api, run_jobs, twilio, login):
    add_members(1, phone="(415) 555-0132")
    admin = api("admin")
    response = _send(admin, to={"user_id": "u0"}, text="Your code is 1234")
    assert response.status_code == 202 and response.json["status"] == "queued"
    assert twilio.messages == []  # queued, not sent inline
    run_jobs()
    [message] = twilio.messages
    assert (message["to"], message["from"], message["body"]) == (PHONE, FROM, "Your code is 1234")
    sms_id = response.json["sms_id"]
    assert message["status_callback"] == f"http://localhost/hooks/sms/twilio?sms_id={sms_id}"
    doc = EmailQueue._get_collection().find_one({"_id": EmailQueue.objects.get(id=sms_id).id})
    assert doc["channel"] == "sms" and doc["to_phone"] == PHONE and doc["status"] == "sent"
    assert doc["provider_message_id"] == message["sid"]
    [entry] = NotificationHistory.objects(user_id="u0")
    assert (entry.channel, entry.recipient, entry.status) == ("sms", PHONE, "sent")
    history = admin.get(f"{API}/history/u0").json["items"]
    assert [(h["channel"], h["status"]) for h in history] == [("sms", "sent")]
    queue = admin.get(f"{API}/email-queue").json
    assert queue["items"][0]["channel"] == "sms" and queue["items"][0]["to"] == PHONE
    browser = login("admin")
    page = browser.get("/communication/queue").get_data(as_text=True)
    assert PHONE in page and "SMS" in page
    detail = browser.get(f"/communication/emails/{sms_id}").get_data(as_text=True)
    assert "Your code is 1234" in detail and PHONE in detail and "Text message" in detail


def test_a_template_renders_its_text_and_the_idempotency_key_sends_once(api, run_jobs, twilio):
    template = make_template(text_body="Hi {{ first_name }}, see you at {{ place }}.")
    admin = api("admin")
    first = _send(admin, to={"phone": "415-555-0132"}, template_id=str(template.id), variables={"place": "the hall"},
                  idempotency_key="sms-1")
    again = _send(admin, to={"phone": "415-555-0132"}, template_id=str(template.id), variables={"place": "x"},
                  idempotency_key="sms-1")
    assert again.json["sms_id"] == first.json["sms_id"] and again.json["duplicate"] is True
    run_jobs()
    assert twilio.bodies() == ["Hi , see you at the hall."]


@pytest.mark.parametrize(("body", "field"), [
    ({"to": {"phone": "12345"}, "text": "x"}, "to.phone"),
    ({"to": {"phone": "not a number"}, "text": "x"}, "to.phone"),
    ({"to": {"user_id": "nobody"}, "text": "x"}, "to.user_id"),
    ({"to": {"user_id": "u0"}, "text": "x"}, "to.user_id"),  # a member without a phone
    ({"to": {"phone": PHONE}, "text": "x", "template_key": "welcome"}, "body"),
    ({"to": {"phone": PHONE}}, "body"),
    ({"to": {"phone": PHONE, "user_id": "u0"}, "text": "x"}, "to"),
    ({"to": {"phone": PHONE}, "template_key": "no.such.template"}, "template_key"),
    ({"to": {"phone": PHONE}, "text": "x" * 1601}, "text"),
])
def test_bad_sms_requests_are_422_and_queue_nothing(api, body, field):
    add_members(1)
    response = api("admin").post(f"{API}/send-sms", json=body)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert any(e["field"].startswith(field) for e in response.json["errors"]), response.json
    assert EmailQueue.objects.count() == 0


@pytest.mark.parametrize(("role", "status"), [("admin", 202), ("analyst", 403), ("moderator", 403)])
def test_send_sms_permission(api, twilio, role, status):
    assert _send(api(role), to={"phone": PHONE}, text="hi").status_code == status


def test_provider_errors_retry_and_a_lost_answer_is_never_sent_twice(api, app, run_jobs, twilio):
    admin = api("admin")
    twilio.fail_next = [503]
    busy = _send(admin, to={"phone": PHONE}, text="first").json["sms_id"]
    run_jobs()
    doc = EmailQueue.objects.get(id=busy)
    assert doc.status == "deferred" and "503" in doc.reason and twilio.messages == []
    time.sleep(1.1)
    run_jobs(with_scheduler=True)
    assert EmailQueue.objects.get(id=busy).status == "sent" and twilio.bodies() == ["first"]

    twilio.drop_next = 1  # the provider stores it, the answer never arrives
    lost = _send(admin, to={"phone": PHONE}, text="second").json["sms_id"]
    run_jobs()
    assert EmailQueue.objects.get(id=lost).status == "deferred" and twilio.bodies() == ["first", "second"]
    time.sleep(1.1)
    run_jobs(with_scheduler=True)
    doc = EmailQueue._get_collection().find_one({"_id": EmailQueue.objects.get(id=lost).id})
    assert doc["status"] == "sent" and twilio.bodies() == ["first", "second"]  # found at the provider, not resent
    assert doc["provider_message_id"] == twilio.messages[1]["sid"]


def test_a_refused_number_fails_without_retrying(api, app, run_jobs, twilio):
    from console.blueprints.communication.sms import TwilioProvider

    # A number our validation accepts but the provider refuses: the provider's 400 is final.
    twilio.fail_next = [400]
    sms_id = _send(api("admin"), to={"phone": PHONE}, text="hi").json["sms_id"]
    run_jobs()
    doc = EmailQueue.objects.get(id=sms_id)
    assert doc.status == "failed" and "400" in doc.reason and doc.attempts == 1
    assert TwilioProvider().find(PHONE, "hi", time.time() - 5) is None


def test_quiet_hours_defer_an_sms_to_the_end_of_the_window(api, app, run_jobs, twilio):
    from rq.registry import ScheduledJobRegistry

    from console.blueprints.communication.prefs import save_preferences

    add_members(1, phone=PHONE)
    now = datetime.now(UTC)
    start, end = (now - timedelta(hours=1)).strftime("%H:%M"), (now + timedelta(hours=2)).strftime("%H:%M")
    save_preferences("u0", {"quiet_hours": {"start": start, "end": end, "timezone": "UTC"}})
    response = _send(api("admin"), to={"user_id": "u0"}, text="tomorrow's event", category="events")
    assert response.json["status"] == "deferred" and response.json["reason"] == "quiet_hours"
    doc = EmailQueue.objects.get(id=response.json["sms_id"])
    expected = (now + timedelta(hours=2)).replace(second=0, microsecond=0)
    assert abs((doc.next_attempt_at.replace(tzinfo=UTC) - expected).total_seconds()) < 1
    queue = app.extensions["queues"]["default"]
    assert doc.job_id in ScheduledJobRegistry(queue=queue).get_job_ids()
    run_jobs()
    assert twilio.messages == []


# --- webhooks ----------------------------------------------------------------------------------------------

def _signed(client, path, form, token=AUTH_TOKEN):
    from console.blueprints.communication.sms import twilio_signature

    signature = twilio_signature(f"http://localhost{path}", form, token)
    return client.post(path, data=form, headers={"X-Twilio-Signature": signature})


def test_status_callbacks_are_verified_and_recorded_once(api, client, run_jobs, twilio):
    admin = api("admin")
    sms_id = _send(admin, to={"phone": PHONE}, text="hi").json["sms_id"]
    run_jobs()
    path = f"/hooks/sms/twilio?sms_id={sms_id}"
    form = {"MessageSid": twilio.messages[0]["sid"], "MessageStatus": "delivered", "AccountSid": "AC", "To": PHONE}
    assert client.post(path, data=form).status_code == 401  # unsigned
    assert _signed(client, path, form, token="forged").status_code == 401
    assert _signed(client, f"/hooks/sms/twilio?sms_id={'0' * 24}", form).json["unknown"] == 1
    assert _signed(client, path, form).json == {"processed": 1, "unknown": 0, "duplicates": 0}
    assert _signed(client, path, form).json["duplicates"] == 1
    tracking = admin.get(f"{API}/tracking/{sms_id}").json
    assert tracking["status"] == "delivered" and "delivered" in [e["type"] for e in tracking["events"]]
    failed = {**form, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert _signed(client, path, failed).json["processed"] == 1
    assert EmailQueue.objects.get(id=sms_id).status == "bounced"


def test_stop_and_start_change_the_members_sms_preference(api, client, run_jobs, twilio):
    add_members(1, phone="(415) 555-0132")
    admin = api("admin")
    inbound = {"MessageSid": "SMin1", "From": PHONE, "To": FROM, "Body": "Stop", "SmsStatus": "received"}
    response = _signed(client, "/hooks/sms/twilio", inbound)
    assert response.status_code == 200 and response.mimetype == "text/xml"
    assert admin.get(f"{API}/preferences/u0").json["channels"]["sms"] is False
    skipped = _send(admin, to={"user_id": "u0"}, text="hi", category="events").json
    assert skipped["status"] == "skipped" and skipped["reason"] == "opted_out"
    assert _send(admin, to={"phone": PHONE}, text="hi", category="events").json["status"] == "skipped"
    assert any(h["status"] == "inbound" for h in admin.get(f"{API}/history/u0").json["items"])
    _signed(client, "/hooks/sms/twilio", {**inbound, "MessageSid": "SMin2", "Body": "START"})
    assert admin.get(f"{API}/preferences/u0").json["channels"]["sms"] is True
    assert _send(admin, to={"user_id": "u0"}, text="welcome back", category="events").json["status"] == "queued"
    _signed(client, "/hooks/sms/twilio", {**inbound, "MessageSid": "SMin3", "Body": "what time is it?"})
    assert admin.get(f"{API}/preferences/u0").json["channels"]["sms"] is True
    assert client.post("/hooks/sms/twilio", data={**inbound}).status_code == 401


def test_the_log_provider_writes_the_message_to_the_log_in_development(api, run_jobs, caplog):
    import logging

    from console.blueprints.communication.prefs import save_preferences

    caplog.set_level(logging.INFO, logger="console.blueprints.communication.sms")
    add_members(2, phone=PHONE)
    save_preferences("u1", {"channels": {"sms": False}})
    admin = api("admin")
    assert _send(admin, to={"user_id": "u0"}, text="Your code is 1234").json["status"] == "queued"
    skipped = _send(admin, to={"user_id": "u1"}, text="Hello", category="product").json
    assert (skipped["status"], skipped["reason"]) == ("skipped", "opted_out")
    run_jobs()
    assert "Your code is 1234" in caplog.text and "Hello" not in caplog.text
    sends = NotificationHistory._get_collection().find({"kind": {"$ne": "preference"}})  # not u1's opt-out itself
    assert {(h["user_id"], h["channel"], h["status"]) for h in sends} == {
        ("u0", "sms", "sent"), ("u1", "sms", "skipped")}


def test_sms_hooks_without_a_provider_are_404(app, client):
    assert client.post("/hooks/sms/twilio", data={"Body": "STOP"}).status_code == 404
    assert client.post("/hooks/sms/other", data={"Body": "STOP"}).status_code == 404


@pytest.mark.slow
def test_sms_sent_exactly_once_under_a_killed_worker(app, servers, tmp_path, twilio):
    from console.blueprints.communication.sms import queue_sms
    from tests.test_communication_batch import _stop, _wait_for, _worker

    total = 200
    for i in range(total):
        queue_sms({"phone": f"+1415555{i:04d}"}, text=f"message {i}", category="security", priority="low")
    log_path = tmp_path / "worker.log"
    settings = {key: str(value) for key, value in twilio.config().items()}
    worker = _worker(servers, log_path, **settings)
    try:
        kill_after = random.randint(40, 140)
        assert _wait_for(lambda: len(twilio.messages) >= kill_after, worker, log_path, 90, poll=0.002)
        time.sleep(random.uniform(0, 0.004))  # anywhere in a request, not just after an answer
        _stop(worker, signal.SIGKILL)
        assert len(twilio.messages) < total, "the worker should die mid-way"
        worker = _worker(servers, log_path, **settings)
        _wait_for(lambda: EmailQueue.objects(channel="sms", status__in=["sent", "failed"]).count() == total,
                  worker, log_path, 120)
    finally:
        _stop(worker)
    statuses = Counter(d.status for d in EmailQueue.objects(channel="sms"))
    assert statuses == {"sent": total}, (statuses, log_path.read_text()[-3000:])
    assert Counter(twilio.bodies()) == Counter({f"message {i}": 1 for i in range(total)})
