"""Opens and clicks that mean people, and the stats per template, batch and campaign (API and page panel)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from console.blueprints.communication.models import EmailQueue, EmailTracking
from tests.communication_helpers import API, add_members, bodies, make_template

pytestmark = pytest.mark.usefixtures("app")
SECRET = "stats-webhook-secret"
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1"


def _report(client, events):
    raw = json.dumps({"events": events}).encode()
    ts = str(int(time.time()))
    signature = hmac.new(SECRET.encode(), ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
    response = client.post("/hooks/mail/generic", data=raw, headers={
        "Content-Type": "application/json", "X-Console-Timestamp": ts, "X-Console-Signature": f"sha256={signature}"})
    assert response.status_code == 200, response.json


def _links(servers) -> dict[str, tuple[str, list[str]]]:
    """email id → (open pixel path, click paths), from the messages the SMTP sink caught."""
    out = {}
    for message in servers.messages():
        _text, html = bodies(message)
        pixel = re.search(r'<img src="http://localhost(/t/o/[^"]+)"', html).group(1)
        clicks = re.findall(r'href=["\']http://localhost(/t/c/[^"\']+)["\']', html)
        out[message["X-Console-Email-Id"]] = (pixel, clicks)
    return out


@pytest.fixture
def campaign_batch(app, run_jobs, servers):
    """A batch of four, sent; its emails' hand-over moved a minute back (people do not click that fast)."""
    from console.blueprints.communication.sending import create_batch

    app.config["MAIL_WEBHOOK_SECRET"] = SECRET
    template = make_template()
    add_members(4)
    batch = create_batch(str(template.id), [{"user_id": f"u{i}"} for i in range(4)],
                         source={"type": "campaign", "campaign_id": "65a000000000000000000001"})
    run_jobs()
    EmailQueue._get_collection().update_many({}, {"$set": {"sent_at": datetime.now(UTC) - timedelta(minutes=1)}})
    docs = sorted(EmailQueue._get_collection().find(), key=lambda d: d["to_email"])
    return template, batch["batch_id"], docs, _links(servers)


def test_machine_opens_and_clicks_are_recorded_apart_and_stats_count_people(api, client, campaign_batch):
    template, batch_id, docs, links = campaign_batch
    first, second, third, fourth = docs
    at = (datetime.now(UTC) - timedelta(seconds=50)).isoformat()
    _report(client, [{"type": "delivered", "message_id": d["message_id"], "at": at} for d in (first, second, third)]
            + [{"type": "bounced", "message_id": fourth["message_id"], "at": at,
                "bounce_type": "hard", "reason": "550 no such user"}])
    pixel, clicks = links[str(first["_id"])]
    assert client.get(pixel, headers={"User-Agent": BROWSER}).status_code == 200  # a person
    assert client.get(clicks[0], headers={"User-Agent": BROWSER}).status_code == 302
    pixel, clicks = links[str(second["_id"])]
    client.get(pixel, headers={"User-Agent": "Mozilla/5.0"})  # Apple Mail Privacy Protection
    client.get(clicks[1], headers={"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"})
    pixel, clicks = links[str(third["_id"])]
    client.get(pixel, headers={"User-Agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
                                             "(via ggpht.com GoogleImageProxy)"})
    for path in clicks:  # every link at once, with a browser's user agent: a scanner's sweep
        assert client.get(path, headers={"User-Agent": BROWSER}).status_code == 302
    unsubscribe = client.post(re.sub(r"^http://localhost", "", third["unsubscribe_url"]))
    assert unsubscribe.status_code == 200

    admin = api("admin")
    timeline = admin.get(f"{API}/tracking/{second['_id']}").json["events"]
    machine = {e["type"]: e.get("machine") for e in timeline if e["type"] in ("open", "click")}
    assert "Apple" in machine["open"] and "scanner" in machine["click"]
    sweep = EmailTracking.objects(email_id=third["_id"], type="click")
    assert sweep.count() == 2 and all("every link" in c.machine for c in sweep)
    assert all(not e.get("machine") for e in admin.get(f"{API}/tracking/{first['_id']}").json["events"])

    stats = admin.get(f"{API}/stats", query_string={"batch_id": batch_id}).json
    assert stats["total"] == 4 and stats["skipped"] == 0
    assert stats["sent"] == {"count": 4, "rate": 1.0}
    assert stats["delivered"] == {"count": 3, "rate": 0.75}
    assert stats["bounced"] == {"count": 1, "rate": 0.25}
    assert stats["complained"] == {"count": 0, "rate": 0.0}
    assert stats["opens"] == {"count": 1, "rate": 0.25} and stats["clicks"] == {"count": 1, "rate": 0.25}
    assert stats["unsubscribes"] == {"count": 1, "rate": 0.25}
    assert stats["machine"] == {"opens": 2, "clicks": 2}
    assert [day["sent"] for day in stats["series"]] == [4]
    by_template = admin.get(f"{API}/stats", query_string={"template_id": str(template.id)}).json
    by_campaign = admin.get(f"{API}/stats", query_string={"campaign_id": "65a000000000000000000001"}).json
    assert by_template == by_campaign == stats
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    empty = admin.get(f"{API}/stats", query_string={"batch_id": batch_id, "from": later}).json
    assert empty["total"] == 0 and empty["opens"] == {"count": 0, "rate": 0.0} and empty["series"] == []


def test_a_click_right_after_delivery_is_a_scanner(api, client, run_jobs, servers):
    template = make_template()
    add_members(1)
    admin = api("admin")
    email_id = admin.post(f"{API}/send-email", json={"template_id": str(template.id), "to": {"user_id": "u0"}}
                          ).json["email_id"]
    run_jobs()
    _pixel, clicks = _links(servers)[email_id]
    client.get(clicks[0], headers={"User-Agent": BROWSER})
    [click] = EmailTracking.objects(email_id=email_id, type="click")
    assert "within 10 s of delivery" in click.machine
    assert admin.get(f"{API}/stats", query_string={"template_id": str(template.id)}).json["clicks"]["count"] == 0


@pytest.mark.parametrize("query", [{}, {"batch_id": "65a000000000000000000001", "template_id":
                                        "65a000000000000000000001"}, {"batch_id": "nope"},
                                   {"batch_id": "65a000000000000000000001", "from": "2026-02-01",
                                    "to": "2026-01-01"}, {"batch_id": "65a000000000000000000001", "from": "soon"}])
def test_bad_stats_queries_are_422(api, query):
    response = api("admin").get(f"{API}/stats", query_string=query)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"


@pytest.mark.parametrize(("role", "status"), [("analyst", 200), ("moderator", 200), ("content_manager", 403)])
def test_stats_permission(api, role, status):
    assert api(role).get(f"{API}/stats", query_string={"batch_id": "65a000000000000000000001"}).status_code == status


def test_batch_template_and_campaign_pages_show_the_stats_panel(login, client, campaign_batch):
    template, batch_id, docs, links = campaign_batch
    browser = login("admin")
    client.get(links[str(docs[0]["_id"])][0], headers={"User-Agent": "Mozilla/5.0"})
    detail = browser.get(f"/communication/emails/{docs[0]['_id']}").get_data(as_text=True)
    assert 'badge-machine" title="privacy proxy (Apple Mail Privacy Protection)"' in detail
    page = browser.get(f"/communication/batches/{batch_id}").get_data(as_text=True)
    assert f"/communication/stats/panel?batch_id={batch_id}" in page and "plotly" in page
    editor = browser.get(f"/communication/templates/{template.id}").get_data(as_text=True)
    assert f"/communication/stats/panel?template_id={template.id}" in editor
    panel = browser.get(f"/communication/stats/panel?batch_id={batch_id}")
    text = panel.get_data(as_text=True)
    assert panel.status_code == 200 and "Delivered" in text and "100.0%" in text and "data-plotly" in text
    assert "privacy proxies" in text
    empty = browser.get("/communication/stats/panel?batch_id=65a0000000000000000000ff").get_data(as_text=True)
    assert "Nothing sent yet" in empty
    assert browser.get("/communication/stats/panel").status_code == 404
    assert login("content_manager").get(f"/communication/stats/panel?batch_id={batch_id}").status_code == 403
