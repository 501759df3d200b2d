"""Public tracking routes (open pixel, click, unsubscribe), preferences, quiet hours, caps, deliverability."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from console.blueprints.communication.models import EmailQueue, NotificationPreference, Suppression
from tests.communication_helpers import API, add_members, bodies, make_template

pytestmark = pytest.mark.usefixtures("app")


def _sent_email(api, run_jobs, servers, to=None, **extra):
    template, _ = make_template(), add_members(1)
    client = api("admin")
    response = client.post(f"{API}/send-email", json={"template_id": str(template.id), "to": to or {"user_id": "u0"},
                                                      **extra})
    run_jobs()
    [message] = servers.messages()
    _text, html = bodies(message)
    return client, response.json["email_id"], message, html


def _path(url: str) -> str:
    return url.replace("http://localhost", "")


def test_open_pixel_counts_an_approximate_open(api, client, run_jobs, servers):
    admin, email_id, _message, html = _sent_email(api, run_jobs, servers)
    pixel = re.search(r'<img src="([^"]+/t/o/[^"]+)"', html).group(1)
    response = client.get(_path(pixel))
    assert response.status_code == 200 and response.mimetype == "image/gif" and len(response.data) < 100
    assert "no-store" in response.headers["Cache-Control"]
    client.get(_path(pixel))
    body = admin.get(f"{API}/tracking/{email_id}").json
    assert body["opens"] == 1 and body["first_opened_at"]  # a repeat within TRACKING_DEDUP_SECONDS counts once
    opens = [e for e in body["events"] if e["type"] == "open"]
    assert len(opens) == 1 and all(e["approximate"] for e in opens)


def test_click_redirects_only_to_the_recorded_url(api, client, run_jobs, servers):
    from console.blueprints.communication.tracking import make_token

    admin, email_id, _message, html = _sent_email(api, run_jobs, servers)
    links = re.findall(r'href=["\'](http://localhost/t/c/[^"\']+)["\']', html)
    assert len(links) == 2
    first = client.get(_path(links[0]))
    assert first.status_code == 302 and first.headers["Location"] == "https://example.org/start?a=1&b=2"
    assert client.get(_path(links[1])).headers["Location"] == "https://example.org/faq"
    # forged, tampered or out-of-range tokens never redirect anywhere
    assert client.get(_path(links[0]) + "x").status_code == 404
    assert client.get(f"/t/c/{make_token('click', email_id, 7)}").status_code == 404
    assert client.get(f"/t/c/{make_token('click', email_id, -1)}").status_code == 404
    assert client.get(f"/t/c/{make_token('open', email_id, 0)}").status_code == 404  # wrong salt
    assert client.get(f"/t/c/{make_token('click', '0' * 24, 0)}").status_code == 404
    assert client.get("/t/c/anything?url=https://evil.example.com").status_code == 404
    body = admin.get(f"{API}/tracking/{email_id}").json
    assert body["clicks"] == 2
    assert [e["url"] for e in body["events"] if e["type"] == "click"] == ["https://example.org/start?a=1&b=2",
                                                                        "https://example.org/faq"]


@pytest.mark.parametrize("path", ["/t/o/garbage", "/t/o/WyJ4Il0.forged", "/u/garbage", "/t/c/"])
def test_bad_tokens_are_404(client, path):
    assert client.get(path).status_code == 404


def test_a_token_signed_with_another_key_is_404(app, client):
    from itsdangerous import URLSafeSerializer

    forged = URLSafeSerializer("some-other-secret", salt="mail-open").dumps(["0" * 24])
    assert client.get(f"/t/o/{forged}").status_code == 404


def test_unsubscribe_get_confirms_and_post_unsubscribes(api, client, run_jobs, servers):
    admin, email_id, message, _html = _sent_email(api, run_jobs, servers)
    url = _path(message["List-Unsubscribe"].strip("<>"))
    page = client.get(url)
    assert page.status_code == 200 and b"Unsubscribe from product emails?" in page.data
    assert NotificationPreference.objects.count() == 0  # link scanners change nothing
    done = client.post(url)  # RFC 8058 one-click: no session, no CSRF token
    assert done.status_code == 200 and b"no longer get product emails" in done.data
    assert admin.get(f"{API}/preferences/u0").json["categories"]["product"] is False
    assert "unsubscribe" in [e["type"] for e in admin.get(f"{API}/tracking/{email_id}").json["events"]]
    again = admin.post(f"{API}/send-email", json={"template_id": str(EmailQueue.objects.first().template_id),
                                                  "to": {"user_id": "u0"}})
    assert again.json == {**again.json, "status": "skipped", "reason": "opted_out"}


def test_unsubscribe_of_a_bare_address_suppresses_it(api, client, run_jobs, servers):
    _admin, _email_id, message, _html = _sent_email(api, run_jobs, servers, to={"email": "guest@example.com"})
    assert client.post(_path(message["List-Unsubscribe"].strip("<>"))).status_code == 200
    assert Suppression.objects.get(email="guest@example.com").reason == "unsubscribed"


def test_security_notices_cannot_be_unsubscribed(api, client, run_jobs, servers):
    admin, _email_id, message, _html = _sent_email(api, run_jobs, servers, category="security")
    done = client.post(_path(message["List-Unsubscribe"].strip("<>")))
    assert done.status_code == 200 and b"cannot be turned off" in done.data
    assert admin.get(f"{API}/preferences/u0").json["categories"]["security"] is True


def test_preferences_defaults_then_stored(api):
    client = api("admin")
    defaults = client.get(f"{API}/preferences/u9").json
    assert defaults["channels"] == {"email": True, "sms": True}
    assert all(defaults["categories"].values()) and defaults["quiet_hours"] is None
    assert defaults["frequency_cap"] is None
    body = {"channels": {"sms": False}, "categories": {"marketing": False},
            "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"},
            "frequency_cap": {"max": 2, "period_hours": 24}}
    saved = client.post(f"{API}/preferences/u9", json=body)
    assert saved.status_code == 200
    assert saved.json["channels"] == {"email": True, "sms": False}
    assert saved.json["categories"]["marketing"] is False and saved.json["categories"]["product"] is True
    assert saved.json["quiet_hours"]["timezone"] == "Europe/Berlin" and saved.json["frequency_cap"]["max"] == 2
    assert client.get(f"{API}/preferences/u9").json == saved.json
    partial = client.post(f"{API}/preferences/u9", json={"categories": {"marketing": True}}).json
    assert partial["channels"]["sms"] is False and partial["quiet_hours"]  # merge, not replace


def test_quiet_hours_without_a_time_zone_are_utc(api):
    """Found by the API fuzzer: the schema's default time zone never reached the service (500)."""
    saved = api("admin").post(f"{API}/preferences/u1", json={"quiet_hours": {"start": "23:37", "end": "22:39"}})
    assert saved.status_code == 200
    assert saved.json["quiet_hours"] == {"start": "23:37", "end": "22:39", "timezone": "UTC"}


@pytest.mark.parametrize(("body", "field"), [
    ({"categories": {"security": False}}, "categories.security"),
    ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours.start"),
    ({"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}}, "quiet_hours.timezone"),
    ({"frequency_cap": {"max": -1}}, "frequency_cap.max"),
    ({"channels": {"pigeon": True}}, "channels.pigeon"),
    ({"categories": {"$where": True}}, "categories.$where"),
])
def test_bad_preferences_are_422(api, body, field):
    response = api("admin").post(f"{API}/preferences/u1", json=body)
    assert response.status_code == 422 and response.json["errors"][0]["field"] == field


@pytest.mark.parametrize(("role", "read", "write"), [("analyst", 200, 403), ("moderator", 200, 403),
                                                     ("content_manager", 403, 403), ("admin", 200, 200)])
def test_preference_permissions(api, role, read, write):
    client = api(role)
    assert client.get(f"{API}/preferences/u1").status_code == read
    assert client.post(f"{API}/preferences/u1", json={"channels": {"sms": False}}).status_code == write


def test_quiet_hours_defer_to_the_end_of_the_period():
    from console.blueprints.communication.prefs import quiet_until

    quiet = {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"}
    at = datetime(2026, 1, 10, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    assert quiet_until(quiet, at) == datetime(2026, 1, 11, 6, 0, tzinfo=UTC)  # 07:00 Berlin
    assert quiet_until(quiet, datetime(2026, 1, 11, 3, 0, tzinfo=UTC)) == datetime(2026, 1, 11, 6, 0, tzinfo=UTC)
    assert quiet_until(quiet, datetime(2026, 1, 11, 12, 0, tzinfo=UTC)) is None
    day = {"start": "09:00", "end": "17:00", "timezone": "UTC"}
    assert quiet_until(day, datetime(2026, 1, 11, 10, 0, tzinfo=UTC)) == datetime(2026, 1, 11, 17, 0, tzinfo=UTC)


def test_quiet_hours_defer_a_send_but_not_security(api, app, run_jobs, servers):
    from rq.registry import ScheduledJobRegistry

    from console.timeutil import utcnow

    template, _ = make_template(), add_members(1)
    hour = utcnow().hour
    quiet = {"start": f"{hour:02d}:00", "end": f"{(hour + 2) % 24:02d}:00", "timezone": "UTC"}
    client = api("admin")
    client.post(f"{API}/preferences/u0", json={"quiet_hours": quiet})
    deferred = client.post(f"{API}/send-email", json={"template_id": str(template.id), "to": {"user_id": "u0"}}).json
    assert deferred["status"] == "deferred" and deferred["reason"] == "quiet_hours"
    doc = EmailQueue.objects.get(id=deferred["email_id"])
    assert doc.next_attempt_at.hour == (hour + 2) % 24 and doc.next_attempt_at.minute == 0
    assert ScheduledJobRegistry(queue=app.extensions["queues"]["default"]).count == 1
    security = client.post(f"{API}/send-email", json={"template_id": str(template.id), "to": {"user_id": "u0"},
                                                      "category": "security"}).json
    assert security["status"] == "queued"
    run_jobs()
    assert [m["X-Console-Category"] for m in servers.messages()] == ["security"]


def test_frequency_cap_and_channel_switch(api, run_jobs, servers):
    template, _ = make_template(), add_members(2)
    client = api("admin")
    client.post(f"{API}/preferences/u0", json={"frequency_cap": {"max": 2, "period_hours": 24}})
    client.post(f"{API}/preferences/u1", json={"channels": {"email": False}})
    results = [client.post(f"{API}/send-email", json={"template_id": str(template.id),
                                                      "to": {"user_id": "u0"}}).json for _ in range(3)]
    assert [r["status"] for r in results] == ["queued", "queued", "skipped"]
    assert results[2]["reason"] == "frequency_capped"
    off = client.post(f"{API}/send-email", json={"template_id": str(template.id), "to": {"user_id": "u1"}}).json
    assert off["reason"] == "opted_out"
    run_jobs()  # the cap is checked again at send time without counting the emails being sent
    assert len(servers.messages()) == 2


def test_preferences_changed_after_queueing_are_honoured_at_send_time(api, run_jobs, servers):
    template, _ = make_template(), add_members(1)
    client = api("admin")
    email_id = client.post(f"{API}/send-email", json={"template_id": str(template.id),
                                                      "to": {"user_id": "u0"}}).json["email_id"]
    client.post(f"{API}/preferences/u0", json={"categories": {"product": False}})
    run_jobs()
    doc = EmailQueue.objects.get(id=email_id)
    assert doc.status == "skipped" and doc.reason == "opted_out" and servers.messages() == []
    assert client.get(f"{API}/history/u0").json["items"][0]["status"] == "skipped"


def test_deliverability_names_who_must_not_get_a_category(app):
    from console.blueprints.communication.prefs import save_preferences, suppress
    from console.blueprints.communication.sending import deliverability

    add_members(5)
    save_preferences("u0", {"categories": {"marketing": False}})
    suppress("u1@members.example.com", "hard_bounce")
    save_preferences("u2", {"frequency_cap": {"max": 0, "period_hours": 24}})
    save_preferences("u3", {"channels": {"email": False}})
    assert deliverability(["u0", "u1", "u2", "u3", "u4", "ghost"], "marketing") == {
        "u0": "opted_out", "u1": "suppressed", "u2": "frequency_capped", "u3": "opted_out"}
    assert deliverability(["u0", "u2"], "security") == {}
    assert deliverability([], "marketing") == {}
