"""Sending: the queue document, the worker, the SMTP sink, idempotency, retries, permanent failures."""

from __future__ import annotations

import pytest

from console.models.communication import EmailQueue, NotificationHistory
from tests.communication_helpers import API, add_members, make_template

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
    html = message.get_payload()[0].get_payload()[1].get_payload(decode=True).decode()
    assert "http://localhost/t/c/" in html and "http://localhost/t/o/" in html
    assert "https://example.org/faq" not in html  # rewritten
    text = message.get_payload()[0].get_payload()[0].get_payload(decode=True).decode()
    assert "Hello Zoe" in text and "Unsubscribe: http://localhost/u/" in text
    assert NotificationHistory.objects.get(email_id=doc.id).status == "sent"
