"""The suppression list (API and page, every change audited) and the preference center behind the signed link
in every email (the browser test is tests/e2e/test_communication_preference_center.py)."""

from __future__ import annotations

import csv
import io
import re

from tests.communication_helpers import API, add_members, bodies, make_template


def _audit(action: str) -> list:
    from console.audit import AuditLog

    return list(AuditLog.objects(action=action).order_by("at"))


# --- suppressions -------------------------------------------------------------------------------------------

def test_suppressions_api_adds_lists_searches_and_removes_with_audit(api):
    client = api("admin")
    added = client.post(f"{API}/suppressions", json={"email": "Someone@Example.com", "detail": "asked by phone"})
    assert added.status_code == 201
    assert added.json["email"] == "someone@example.com" and added.json["reason"] == "manual"
    assert added.json["created_by"] == "admin@test.example.com"
    again = client.post(f"{API}/suppressions", json={"email": "someone@example.com", "reason": "complaint"})
    assert again.status_code == 201 and again.json["reason"] == "manual"  # the first reason stays
    assert added.json["created"] is True and again.json["created"] is False
    client.post(f"{API}/suppressions", json={"email": "other@example.org", "reason": "hard_bounce"})
    listed = client.get(f"{API}/suppressions").json
    assert [s["email"] for s in listed["items"]] == ["other@example.org", "someone@example.com"]
    assert [s["email"] for s in client.get(f"{API}/suppressions?q=someone").json["items"]] == ["someone@example.com"]
    assert [s["email"] for s in client.get(f"{API}/suppressions?reason=hard_bounce").json["items"]] == [
        "other@example.org"]
    [entry] = _audit("suppression.add")[:1]
    assert entry.target == "suppression:someone@example.com" and entry.after["detail"] == "asked by phone"
    assert len(_audit("suppression.add")) == 2  # the repeated add changed nothing and wrote nothing

    removed = client.delete(f"{API}/suppressions/someone@example.com?reason=confirmed by the member")
    assert removed.status_code == 204
    [lifted] = _audit("suppression.remove")
    assert lifted.before["email"] == "someone@example.com" and lifted.details["reason"] == "confirmed by the member"
    assert client.delete(f"{API}/suppressions/someone@example.com").status_code == 404
    assert [s["email"] for s in client.get(f"{API}/suppressions").json["items"]] == ["other@example.org"]


def test_suppressions_refuse_bad_input_and_need_permissions(api):
    from console.blueprints.communication.models import Suppression

    client = api("admin")
    assert client.post(f"{API}/suppressions", json={"email": "not-an-address"}).status_code == 422
    assert client.post(f"{API}/suppressions", json={"email": "a@x.org", "reason": "whim"}).status_code == 422
    assert client.post(f"{API}/suppressions", json={"email": {"$gt": ""}}).status_code == 422
    assert client.get(f"{API}/suppressions?q=" + "x" * 300).status_code == 422
    assert api("analyst").get(f"{API}/suppressions").status_code == 200
    assert api("analyst").post(f"{API}/suppressions", json={"email": "a@x.org"}).status_code == 403
    assert api("content_manager").get(f"{API}/suppressions").status_code == 403
    assert Suppression.objects.count() == 0


def test_a_suppressed_address_gets_nothing(api, run_jobs, servers):
    client = api("admin")
    client.post(f"{API}/suppressions", json={"email": "gone@example.com"})
    template = make_template()
    sent = client.post(f"{API}/send-email", json={"template_id": str(template.id), "to": {"email": "gone@example.com"}})
    assert sent.json["status"] == "skipped" and sent.json["reason"] == "suppressed"
    run_jobs()
    assert servers.messages() == []


def test_suppressions_export_csv_guards_formulas(api):
    client = api("admin")
    client.post(f"{API}/suppressions", json={"email": "a@example.com", "detail": "=HYPERLINK(\"x\")"})
    client.post(f"{API}/suppressions", json={"email": "b@example.com", "reason": "unsubscribed"})
    response = client.get(f"{API}/suppressions?format=csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["email", "reason", "detail", "email_id", "created_at", "created_by"]
    assert {row[0]: row[2] for row in rows[1:]} == {"a@example.com": "'=HYPERLINK(\"x\")", "b@example.com": ""}
    only = list(csv.reader(io.StringIO(client.get(f"{API}/suppressions?format=csv&reason=unsubscribed").get_data(
        as_text=True))))
    assert [row[0] for row in only[1:]] == ["b@example.com"]


def test_suppressions_page_lists_adds_removes_and_exports(login):
    browser = login("admin")
    empty = browser.get("/communication/suppressions").get_data(as_text=True)
    assert "Nothing is suppressed" in empty
    added = browser.post("/communication/suppressions", data={"action": "add", "email": "page@example.com",
                                                              "detail": "wrote to us"}, follow_redirects=True)
    page = added.get_data(as_text=True)
    assert "page@example.com is suppressed." in page and "wrote to us" in page
    refused = browser.post("/communication/suppressions", data={"action": "remove", "email": "page@example.com",
                                                                "reason": ""}, follow_redirects=True)
    assert "Say why" in refused.get_data(as_text=True)
    removed = browser.post("/communication/suppressions", data={"action": "remove", "email": "page@example.com",
                                                                "reason": "asked again"}, follow_redirects=True)
    assert "page@example.com may get email again." in removed.get_data(as_text=True)
    assert [e.details["reason"] for e in _audit("suppression.remove")] == ["asked again"]
    assert browser.get("/communication/suppressions?format=csv").mimetype == "text/csv"
    viewer = login("analyst").get("/communication/suppressions").get_data(as_text=True)
    assert "Suppress an address" not in viewer
    assert login("analyst").post("/communication/suppressions", data={"email": "x@example.com"}).status_code == 403


# --- the preference center ----------------------------------------------------------------------------------

def _link(servers, prefix: str) -> str:
    text, _html = bodies(servers.messages()[-1])
    return re.search(rf"http://localhost({prefix}[\w.\-]+)", text).group(1)


def _center(client, servers, run_jobs, to: dict) -> str:
    from console.blueprints.communication.models import EmailTemplate

    template = EmailTemplate.objects(name="Welcome").first() or make_template(category="marketing")
    servers.clear_mailbox()  # the sink's Maildir lists messages in no particular order: keep only this one
    assert client.post(f"{API}/send-email", json={"template_id": str(template.id), "to": to}).status_code == 202
    run_jobs()
    return _link(servers, "/p/")


def test_every_email_links_to_a_signed_preference_center(api, app, run_jobs, servers):
    add_members(1)
    path = _center(api("admin"), servers, run_jobs, {"user_id": "u0"})
    anonymous = app.test_client()
    page = anonymous.get(path)
    assert page.status_code == 200 and page.headers["Cache-Control"].startswith("no-store")
    html = page.get_data(as_text=True)
    for label in ("Product news", "Events", "Volunteering", "Your submissions", "Donations", "Weekly digest",
                  "News and invitations", "Security notices", "Email", "Text messages (SMS)", "Quiet hours"):
        assert label in html, label
    assert re.search(r'name="category_security"[^>]*disabled', html)
    assert anonymous.get(path[:-3] + "abc").status_code == 404
    assert anonymous.get("/p/not-a-token").status_code == 404


def test_the_preference_center_saves_categories_channels_quiet_hours_with_history(api, app, run_jobs, servers):
    from console.blueprints.communication.prefs import get_preferences
    from tests.conftest import csrf_token_from

    add_members(1)
    client = api("admin")
    path = _center(client, servers, run_jobs, {"user_id": "u0"})
    member = app.test_client()
    token = csrf_token_from(member.get(path).data)
    keep = {f"category_{name}": "on" for name in ("product", "events", "volunteering", "submissions", "donations")}
    saved = member.post(path, data={**keep, "channel_email": "on", "quiet_start": "22:00", "quiet_end": "07:00",
                                    "quiet_timezone": "Europe/Berlin", "action": "save", "csrf_token": token})
    assert saved.status_code == 200 and "Your preferences are saved." in saved.get_data(as_text=True)
    prefs = get_preferences("u0")
    assert prefs["categories"]["marketing"] is False and prefs["categories"]["digest"] is False
    assert prefs["categories"]["security"] is True and prefs["categories"]["events"] is True
    assert prefs["channels"] == {"email": True, "sms": False}
    assert prefs["quiet_hours"] == {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"}
    [entry] = _audit("preferences.update")
    assert entry.actor == "member:u0 (preference center)" and entry.after["categories"]["marketing"] is False
    panel = client.get("/communication/members/u0/history").get_data(as_text=True)
    assert "opted_out" in panel and "quiet_hours_changed" in panel
    # the contract's history stays a list of notifications
    assert {i["status"] for i in client.get(f"{API}/history/u0").json["items"]} == {"sent"}
    changes = client.get(f"{API}/history/u0?include_preferences=true").json["items"]
    assert {(i["status"], i["category"]) for i in changes} >= {("opted_out", "marketing"), ("opted_out", "digest"),
                                                               ("quiet_hours_changed", None), ("sent", "marketing")}

    bad = member.post(path, data={"quiet_start": "25:00", "quiet_end": "07:00", "action": "save",
                                  "csrf_token": token})
    assert bad.status_code == 422 and get_preferences("u0")["quiet_hours"]["start"] == "22:00"
    assert member.post(path, data={"action": "save"}).status_code == 400  # no CSRF token


def test_one_click_unsubscribe_still_works_and_resubscribe_undoes_it(api, app, run_jobs, servers):
    from console.blueprints.communication.prefs import get_preferences
    from console.blueprints.communication.suppressions import get
    from tests.conftest import csrf_token_from

    add_members(1)
    client = api("admin")
    path = _center(client, servers, run_jobs, {"user_id": "u0"})
    message = servers.messages()[-1]
    one_click = re.search(r"<(http://localhost(/u/[^>]+))>", message["List-Unsubscribe"]).group(2)
    member = app.test_client()
    assert member.post(one_click, data="List-Unsubscribe=One-Click").status_code == 200
    assert get_preferences("u0")["categories"]["marketing"] is False
    html = member.get(path).get_data(as_text=True)
    assert not re.search(r'name="category_marketing"[^>]*checked', html)
    member.post(path, data={"action": "resubscribe", "csrf_token": csrf_token_from(html.encode())})
    assert get_preferences("u0")["categories"]["marketing"] is True

    # an address without an account: the page offers to unsubscribe and, once suppressed, to resubscribe
    path = _center(client, servers, run_jobs, {"email": "guest@example.com"})
    html = member.get(path).get_data(as_text=True)
    assert "Unsubscribe from everything" in html and "category_" not in html
    member.post(path, data={"action": "unsubscribe_all", "csrf_token": csrf_token_from(html.encode())})
    assert get("guest@example.com")["reason"] == "unsubscribed"
    html = member.get(path).get_data(as_text=True)
    assert "because you unsubscribed" in html and "Resubscribe" in html
    member.post(path, data={"action": "resubscribe", "csrf_token": csrf_token_from(html.encode())})
    assert get("guest@example.com") is None
    assert [e.details["reason"] for e in _audit("suppression.remove")] == ["resubscribed in the preference center"]


def test_a_bounce_suppression_cannot_be_lifted_by_the_member(api, app, run_jobs, servers):
    from console.blueprints.communication.suppressions import add, get
    from tests.conftest import csrf_token_from

    add_members(1)
    path = _center(api("admin"), servers, run_jobs, {"user_id": "u0"})
    add("u0@members.example.com", "hard_bounce", "550 no such user")
    member = app.test_client()
    html = member.get(path).get_data(as_text=True)
    assert "because messages to it bounced" in html and "Contact us" in html
    member.post(path, data={"action": "resubscribe", "csrf_token": csrf_token_from(html.encode())})
    assert get("u0@members.example.com")["reason"] == "hard_bounce"


def test_a_hard_bounce_lands_on_the_list_with_its_email_and_an_audit_entry(api, run_jobs):
    client = api("admin")
    template = make_template()
    sent = client.post(f"{API}/send-email", json={"template_id": str(template.id),
                                                  "to": {"email": "bounce@example.com"}}).json
    run_jobs()
    [entry] = client.get(f"{API}/suppressions").json["items"]
    assert entry["email"] == "bounce@example.com" and entry["reason"] == "hard_bounce"
    assert entry["email_id"] == sent["email_id"] and entry["created_by"] == "system"
    [audited] = _audit("suppression.add")
    assert audited.actor == "system" and audited.target == "suppression:bounce@example.com"
