"""Alert rules: one fires and resolves, mailed to the super admins (at the SMTP sink) and posted to a webhook
(a local HTTP server speaking what a Slack-compatible receiver gets), with history, cool-down and settings."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from console.timeutil import utcnow
from tests.hardening_helpers import API

SECRET = "alert-webhook-secret-0123456789"


@pytest.fixture
def webhook():
    """A local receiver recording each POST (headers and JSON body); answers 200."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"headers": dict(self.headers), "raw": body, "json": json.loads(body)})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/alerts", received
    server.shutdown()
    server.server_close()


def _only(rule_name: str, actor: str = "test") -> None:
    from console.blueprints.hardening import alerts

    for name in alerts.RULES:
        alerts.update_rule(name, {"enabled": name == rule_name}, actor)


def _subjects(servers) -> list[tuple[str, str]]:
    return sorted((str(m["To"]), str(m["Subject"])) for m in servers.messages())


def test_an_alert_fires_and_resolves_by_mail_and_webhook(app, api, create_admin, servers, run_jobs, webhook):
    from console.blueprints.hardening import alerts
    from console.db import get_db

    url, received = webhook
    app.config.update(ALERT_WEBHOOK_URL=url, ALERT_WEBHOOK_SECRET=SECRET)
    create_admin("super_admin", email="root1@test.example.com")
    create_admin("super_admin", email="root2@test.example.com")
    create_admin("super_admin", email="gone@test.example.com", active=False)
    create_admin("admin", email="plain-admin@test.example.com")
    _only("mail_queue_age")
    client = api("super_admin", email="root1@test.example.com")
    changed = client.put(f"{API}/alerts/rules/mail_queue_age", json={"threshold": 10, "cooldown_minutes": 30})
    assert changed.status_code == 200 and changed.json["threshold"] == 10 and changed.json["window_minutes"] == 0

    emails = get_db()["email_queue"]
    stuck = emails.insert_one({"to_email": "member@example.com", "status": "queued", "priority": "normal",
                               "created_at": utcnow() - timedelta(minutes=25)}).inserted_id
    assert alerts.evaluate()["rules"]["mail_queue_age"] == "fired"

    body = client.get(f"{API}/alerts").json
    assert body["firing"] == ["mail_queue_age"]
    rule = next(r for r in body["rules"] if r["rule"] == "mail_queue_age")
    assert rule["state"] == "firing" and 24 <= rule["value"] <= 26
    [fired] = body["history"]
    assert fired["kind"] == "fired" and fired["notified"] and len(fired["delivery"]["emails"]) == 2
    assert fired["delivery"]["webhook"] == "200"

    [hook] = received
    timestamp = hook["headers"]["X-Console-Timestamp"]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + hook["raw"], hashlib.sha256).hexdigest()
    assert hook["headers"]["X-Console-Signature"] == f"sha256={expected}"
    assert hook["json"]["text"].startswith("FIRING: Oldest queued email")
    assert hook["json"]["alert"]["status"] == "firing" and hook["json"]["alert"]["rule"] == "mail_queue_age"

    run_jobs()
    assert _subjects(servers) == [("root1@test.example.com", "[FIRING] Oldest queued email"),
                                  ("root2@test.example.com", "[FIRING] Oldest queued email")]
    assert alerts.evaluate()["rules"]["mail_queue_age"] == "firing"  # still firing, within the cool-down
    assert len(received) == 1

    emails.update_one({"_id": stuck}, {"$set": {"status": "sent", "sent_at": utcnow()}})
    assert alerts.evaluate()["rules"]["mail_queue_age"] == "resolved"
    assert [h["json"]["alert"]["status"] for h in received] == ["firing", "resolved"]
    assert received[1]["json"]["text"].startswith("RESOLVED: Oldest queued email")
    servers.clear_mailbox()
    run_jobs()
    assert _subjects(servers) == [("root1@test.example.com", "[RESOLVED] Oldest queued email"),
                                  ("root2@test.example.com", "[RESOLVED] Oldest queued email")]
    body = client.get(f"{API}/alerts").json
    assert body["firing"] == [] and [e["kind"] for e in body["history"]] == ["resolved", "fired"]


def test_a_rule_firing_again_within_its_cool_down_is_recorded_not_sent(app, create_admin, run_jobs, webhook):
    from console.blueprints.hardening import alerts
    from console.blueprints.hardening.models import AlertEvent
    from console.db import get_db

    url, received = webhook
    app.config.update(ALERT_WEBHOOK_URL=url, ALERT_WEBHOOK_SECRET=None)
    _only("mail_queue_age")
    emails = get_db()["email_queue"]
    now = utcnow()
    stuck = emails.insert_one({"to_email": "m@example.com", "status": "queued", "priority": "high",
                               "created_at": now - timedelta(minutes=40)}).inserted_id
    alerts.evaluate(now)
    emails.update_one({"_id": stuck}, {"$set": {"status": "sent"}})
    alerts.evaluate(now + timedelta(minutes=1))
    emails.update_one({"_id": stuck}, {"$set": {"status": "queued"}})
    assert alerts.evaluate(now + timedelta(minutes=2))["rules"]["mail_queue_age"] == "fired"
    kinds = [(e.kind, e.notified, (e.delivery or {}).get("suppressed")) for e in AlertEvent.objects.order_by("at")]
    assert kinds == [("fired", True, None), ("resolved", True, None), ("fired", False, "cool-down")]
    assert "X-Console-Signature" not in received[0]["headers"]  # no secret set: unsigned
    # after the cool-down a rule still firing is reminded
    assert alerts.evaluate(now + timedelta(minutes=70))["rules"]["mail_queue_age"] == "reminded"
    assert received[-1]["json"]["text"].startswith("STILL FIRING")


def test_state_rules_wait_for_their_window_and_bad_settings_are_refused(app, api, run_jobs):
    from console.blueprints.hardening import alerts

    _only("no_worker")
    client = api("super_admin")
    accepted = client.post(f"{API}/alerts/evaluate", json={})
    assert accepted.status_code == 202 and accepted.json["job_id"]
    run_jobs()  # the worker running the evaluation is itself a live worker
    rule = client.get(f"{API}/alerts").json["rules"][2]
    assert (rule["rule"], rule["state"], rule["value"]) == ("no_worker", "ok", 1)
    assert rule["evaluated_at"]
    now = utcnow()
    assert alerts.evaluate(now)["rules"]["no_worker"] == "pending"  # no worker, but not for 2 minutes yet
    assert alerts.evaluate(now + timedelta(minutes=3))["rules"]["no_worker"] == "fired"
    assert client.put(f"{API}/alerts/rules/no_worker", json={"threshold": -1}).status_code == 422
    assert client.put(f"{API}/alerts/rules/no_worker", json={"window": 5}).status_code == 422
    assert client.put(f"{API}/alerts/rules/nope", json={"threshold": 1}).status_code == 404
    assert api("admin").put(f"{API}/alerts/rules/no_worker", json={"threshold": 2}).status_code == 403
    assert client.put(f"{API}/alerts/rules/no_worker", json={"enabled": False}).status_code == 200
    assert alerts.evaluate(now + timedelta(minutes=4))["rules"]["no_worker"] == "disabled"
    assert alerts.current_states()["no_worker"] == "ok"


def test_system_page_and_dashboard_show_a_firing_alert_and_edit_rules(app, login):
    from console.blueprints.hardening import alerts
    from console.blueprints.hardening.models import AlertRule

    _only("no_worker")
    now = utcnow()
    alerts.update_rule("no_worker", {"window_minutes": 0}, "test")
    alerts.evaluate(now)
    browser = login("super_admin")
    widget = browser.get("/system/widgets/alerts").get_data(as_text=True)
    assert 'data-rule="no_worker"' in widget and "firing" in widget
    firing = browser.get("/system/alerts/firing").get_data(as_text=True)
    assert 'class="sys-alert" data-rule="no_worker"' in firing
    card = browser.get("/system/alerts").get_data(as_text=True)
    assert 'data-rule="no_worker" data-state="firing"' in card and 'name="threshold"' in card
    saved = browser.post("/system/alerts/slow_queries", data={"threshold": "25", "window_minutes": "30",
                                                               "cooldown_minutes": "90", "enabled": "1"})
    assert saved.status_code == 200 and "Saved slow_queries" in saved.get_data(as_text=True)
    stored = AlertRule.objects.get(rule="slow_queries")
    assert (stored.threshold, stored.window_minutes, stored.cooldown_minutes, stored.enabled) == (25, 30, 90, True)
    assert browser.post("/system/alerts/slow_queries", data={"threshold": "-3"}).status_code == 422
    assert AlertRule.objects.get(rule="slow_queries").threshold == 25
    viewer = login("admin", email="viewer@test.example.com")
    assert "name=\"threshold\"" not in viewer.get("/system/alerts").get_data(as_text=True)
    assert viewer.post("/system/alerts/slow_queries", data={"threshold": "1"}).status_code == 403


def test_each_rule_measures_what_it_names(app):
    from console.blueprints.hardening import alerts
    from console.db import get_db
    from console.telemetry.models import RequestMetric, SlowQuery

    now = utcnow()
    _only("none")
    measures = {name: alerts.MEASURES[name] for name in alerts.RULES}
    assert measures["error_rate"](15, now)[0] is None  # too few requests to judge
    RequestMetric(at=now - timedelta(minutes=5), endpoint="/x", method="GET", n=40, errors=4).save()
    RequestMetric(at=now - timedelta(minutes=50), endpoint="/x", method="GET", n=100, errors=100).save()  # outside
    assert measures["error_rate"](15, now)[0] == 10.0
    emails = get_db()["email_queue"]
    emails.insert_many([{"to_email": f"m{i}@example.com", "status": "bounced" if i < 3 else "complained" if i == 3
                         else "sent", "sent_at": now - timedelta(minutes=10), "created_at": now} for i in range(25)])
    assert measures["bounce_rate"](60, now)[0] == 12.0
    assert measures["complaint_rate"](60, now)[0] == 4.0
    SlowQuery.objects.insert([SlowQuery(at=now - timedelta(minutes=1), collection="users", duration_ms=300)
                              for _ in range(30)])
    assert measures["slow_queries"](15, now)[0] == 2.0
    assert 0 < measures["disk_low"](5, now)[0] <= 100
    assert measures["dependency_down"](1, now)[0] == 0
    app.config["MAIL_PORT"] = 9  # nothing listens: SMTP is DOWN
    value, detail = measures["dependency_down"](1, now)
    assert value == 1 and "smtp" in detail
    for name, threshold in (("error_rate", 5), ("bounce_rate", 5), ("complaint_rate", 1), ("slow_queries", 1),
                            ("disk_low", 101), ("dependency_down", 0)):
        alerts.update_rule(name, {"enabled": True, "threshold": threshold, "window_minutes": 0 if name in
                                  ("disk_low", "dependency_down") else None}, "test")
    outcome = alerts.evaluate(now)["rules"]
    assert {name: outcome[name] for name in ("error_rate", "bounce_rate", "complaint_rate", "slow_queries",
                                             "disk_low", "dependency_down")} == dict.fromkeys(
        ("error_rate", "bounce_rate", "complaint_rate", "slow_queries", "disk_low", "dependency_down"), "fired")
