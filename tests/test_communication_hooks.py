"""Delivery reports through the public mail webhooks: generic (CONTRACT.md), SendGrid (ECDSA) and Mailgun (HMAC).

Each is driven the way the provider sends it: a real signature over the raw body, then a forged one, a stale
timestamp and a replay; the email's status, timeline, counts and suppressions are what a person would see."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest

from console.blueprints.communication.models import EmailQueue, NotificationHistory, Suppression
from tests.communication_helpers import API, add_members, make_template

pytestmark = pytest.mark.usefixtures("app")
SECRET = "generic-webhook-secret-for-tests"


def _sent(api, run_jobs, count=1):
    template = make_template()
    add_members(count)
    admin = api("admin")
    ids = [admin.post(f"{API}/send-email", json={"template_id": str(template.id), "to": {"user_id": f"u{i}"}})
           .json["email_id"] for i in range(count)]
    run_jobs()
    docs = {str(d["_id"]): d for d in EmailQueue._get_collection().find()}
    assert all(docs[i]["status"] == "sent" for i in ids)
    return admin, [docs[i] for i in ids]


def _generic(client, events, secret=SECRET, ts=None, tamper=False):
    raw = json.dumps({"events": events}).encode()
    ts = str(int(time.time()) if ts is None else ts)
    signature = hmac.new(secret.encode(), ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
    return client.post("/hooks/mail/generic", data=raw + (b" " if tamper else b""),
                       headers={"Content-Type": "application/json", "X-Console-Timestamp": ts,
                                "X-Console-Signature": f"sha256={signature}"})


def _now() -> str:
    return datetime.now(UTC).isoformat()


def test_generic_delivered_then_a_replay_is_processed_once(app, api, client, run_jobs):
    app.config["MAIL_WEBHOOK_SECRET"] = SECRET
    admin, [doc] = _sent(api, run_jobs)
    event = {"type": "delivered", "message_id": doc["message_id"], "at": _now()}
    first = _generic(client, [event])
    assert first.status_code == 200 and first.json["processed"] == 1 and first.json["unknown"] == 0
    tracking = admin.get(f"{API}/tracking/{doc['_id']}").json
    assert tracking["status"] == "delivered"
    assert [e["type"] for e in tracking["events"]] == ["queued", "sent", "delivered"]
    again = _generic(client, [{**event, "message_id": doc["message_id"].strip("<>")}])  # without <>, same event
    assert again.status_code == 200 and again.json["processed"] == 0
    assert [e["type"] for e in admin.get(f"{API}/tracking/{doc['_id']}").json["events"]].count("delivered") == 1
    counts = admin.get(f"{API}/email-queue").json["counts"]
    assert counts["delivered"] == 1 and counts["sent"] == 0


def test_generic_hard_bounce_suppresses_and_a_late_delivered_does_not_overwrite_it(app, api, client, run_jobs):
    app.config["MAIL_WEBHOOK_SECRET"] = SECRET
    admin, [doc] = _sent(api, run_jobs)
    bounce = {"type": "bounced", "message_id": doc["message_id"], "at": "2026-01-01T10:00:05Z",
              "bounce_type": "hard", "reason": "550 5.1.1 user unknown"}
    late = {"type": "delivered", "message_id": doc["message_id"], "at": "2026-01-01T10:00:01Z"}
    assert _generic(client, [bounce]).json == {"processed": 1, "unknown": 0, "duplicates": 0}
    assert _generic(client, [late]).json["processed"] == 1  # recorded on the timeline, the status stays
    stored = EmailQueue._get_collection().find_one({"_id": doc["_id"]})
    assert stored["status"] == "bounced" and stored["bounce_type"] == "hard" and "user unknown" in stored["reason"]
    suppression = Suppression.objects.get(email=doc["to_email"])
    assert suppression.reason == "hard_bounce" and suppression.email_id == doc["_id"]
    assert "user unknown" in suppression.detail
    assert NotificationHistory.objects.get(email_id=doc["_id"]).status == "bounced"
    events = admin.get(f"{API}/tracking/{doc['_id']}").json["events"]
    assert next(e for e in events if e["type"] == "bounced")["bounce_type"] == "hard"
    template_id = str(stored["template_id"])
    again = admin.post(f"{API}/send-email", json={"template_id": template_id, "to": {"user_id": "u0"}})
    assert again.json["status"] == "skipped" and again.json["reason"] == "suppressed"


def test_generic_soft_bounce_does_not_suppress_and_complaint_does(app, api, client, run_jobs):
    app.config["MAIL_WEBHOOK_SECRET"] = SECRET
    _admin, [soft, complained] = _sent(api, run_jobs, 2)
    result = _generic(client, [
        {"type": "bounced", "message_id": soft["message_id"], "at": _now(), "bounce_type": "soft",
         "reason": "452 mailbox full"},
        {"type": "complained", "message_id": complained["message_id"], "at": _now()},
        {"type": "delivered", "message_id": "<000000000000000000000000@example.com>", "at": _now()},
        {"type": "delivered", "message_id": "not-ours@elsewhere.example", "at": _now()}])
    assert result.json == {"processed": 2, "unknown": 2, "duplicates": 0}
    assert EmailQueue._get_collection().find_one({"_id": soft["_id"]})["bounce_type"] == "soft"
    assert [s.email for s in Suppression.objects] == [complained["to_email"]]
    assert Suppression.objects.get(email=complained["to_email"]).reason == "complaint"


def test_generic_refuses_forged_stale_and_malformed_requests_and_changes_nothing(app, api, client, run_jobs):
    app.config["MAIL_WEBHOOK_SECRET"] = SECRET
    _admin, [doc] = _sent(api, run_jobs)
    event = {"type": "bounced", "message_id": doc["message_id"], "at": _now(), "bounce_type": "hard"}
    assert _generic(client, [event], secret="not-the-secret").status_code == 401
    assert _generic(client, [event], tamper=True).status_code == 401
    assert _generic(client, [event], ts=int(time.time()) - 301).status_code == 401
    assert _generic(client, [event], ts=int(time.time()) + 301).status_code == 401
    assert client.post("/hooks/mail/generic", json={"events": [event]}).status_code == 401  # unsigned
    assert _generic(client, [{**event, "type": "opened"}]).status_code == 400
    assert _generic(client, [{**event, "bounce_type": "medium"}]).status_code == 400
    assert EmailQueue._get_collection().find_one({"_id": doc["_id"]})["status"] == "sent"
    assert Suppression.objects.count() == 0


def test_a_provider_without_its_setting_is_404(app, client):
    for provider in ("generic", "sendgrid", "mailgun", "unknown"):
        assert client.post(f"/hooks/mail/{provider}", json={"events": []}).status_code == 404
    assert client.get("/hooks/mail/generic").status_code in (404, 405)


# --- SendGrid ----------------------------------------------------------------------------------------------

@pytest.fixture
def sendgrid_key(app):
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = base64.b64encode(der).decode()
    return private


def _sendgrid(client, private, events, ts=None, tamper=False):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    raw = json.dumps(events).encode()
    ts = str(int(time.time()) if ts is None else ts)
    signature = base64.b64encode(private.sign(ts.encode() + raw, ec.ECDSA(hashes.SHA256()))).decode()
    return client.post("/hooks/mail/sendgrid", data=raw + (b"\n" if tamper else b""),
                       headers={"Content-Type": "application/json",
                                "X-Twilio-Email-Event-Webhook-Signature": signature,
                                "X-Twilio-Email-Event-Webhook-Timestamp": ts})


def test_sendgrid_events_with_their_ecdsa_signature(api, client, run_jobs, sendgrid_key):
    from cryptography.hazmat.primitives.asymmetric import ec

    admin, [delivered, bounced, spam] = _sent(api, run_jobs, 3)
    now = int(time.time())
    events = [
        {"email": delivered["to_email"], "timestamp": now, "event": "processed", "smtp-id": delivered["message_id"],
         "sg_event_id": "ev-0", "sg_message_id": "sg.0"},
        {"email": delivered["to_email"], "timestamp": now, "event": "delivered", "smtp-id": delivered["message_id"],
         "sg_event_id": "ev-1", "sg_message_id": "sg.1", "response": "250 OK"},
        {"email": bounced["to_email"], "timestamp": now, "event": "bounce", "type": "bounce", "status": "5.1.1",
         "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
         "smtp-id": bounced["message_id"], "sg_event_id": "ev-2", "sg_message_id": "sg.2"},
        {"email": spam["to_email"], "timestamp": now, "event": "spamreport", "smtp-id": spam["message_id"],
         "sg_event_id": "ev-3", "sg_message_id": "sg.3"},
    ]
    assert _sendgrid(client, sendgrid_key, events).json == {"processed": 3, "unknown": 0, "duplicates": 0}
    statuses = {d["_id"]: d["status"] for d in EmailQueue._get_collection().find()}
    assert [statuses[d["_id"]] for d in (delivered, bounced, spam)] == ["delivered", "bounced", "complained"]
    assert {s.email: s.reason for s in Suppression.objects} == {bounced["to_email"]: "hard_bounce",
                                                                spam["to_email"]: "complaint"}
    assert _sendgrid(client, sendgrid_key, events).json["processed"] == 0  # a replay changes nothing
    assert _sendgrid(client, sendgrid_key, events, tamper=True).status_code == 401
    assert _sendgrid(client, sendgrid_key, events, ts=now - 600).status_code == 401
    other = ec.generate_private_key(ec.SECP256R1())
    assert _sendgrid(client, other, events).status_code == 401  # signed, but not by SendGrid's key
    assert admin.get(f"{API}/email-queue").json["counts"]["complained"] == 1


# --- Mailgun -----------------------------------------------------------------------------------------------

MAILGUN_KEY = "key-mailgun-signing-for-tests"


def _mailgun(client, data, key=MAILGUN_KEY, ts=None, token="a" * 50):
    ts = str(int(time.time()) if ts is None else ts)
    signature = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return client.post("/hooks/mail/mailgun", json={
        "signature": {"timestamp": ts, "token": token, "signature": signature}, "event-data": data})


def test_mailgun_events_with_their_hmac_signature(app, api, client, run_jobs):
    app.config["MAILGUN_WEBHOOK_SIGNING_KEY"] = MAILGUN_KEY
    _admin, [doc] = _sent(api, run_jobs)
    failed = {"event": "failed", "id": "mg-1", "timestamp": time.time(), "severity": "permanent",
              "reason": "bounce", "recipient": doc["to_email"],
              "delivery-status": {"code": 550, "message": "5.1.1 No such user"},
              "message": {"headers": {"message-id": doc["message_id"].strip("<>")}}}
    assert _mailgun(client, failed).json == {"processed": 1, "unknown": 0, "duplicates": 0}
    assert EmailQueue._get_collection().find_one({"_id": doc["_id"]})["status"] == "bounced"
    assert "No such user" in Suppression.objects.get(email=doc["to_email"]).detail
    assert _mailgun(client, failed, token="b" * 50).json["duplicates"] == 1  # the same event id again
    assert _mailgun(client, failed, key="wrong").status_code == 401
    assert _mailgun(client, failed, ts=int(time.time()) - 400).status_code == 401
    delivered = {**failed, "event": "delivered", "id": "mg-2"}
    assert _mailgun(client, delivered).json["processed"] == 1
    assert EmailQueue._get_collection().find_one({"_id": doc["_id"]})["status"] == "bounced"  # order-tolerant
