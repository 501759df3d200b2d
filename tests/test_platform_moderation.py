"""The moderation queue (issue 17, item 1): decisions in place, conflicts, notifications, unknown fields kept."""

from __future__ import annotations

import pytest
from bson import ObjectId

from tests.communication_helpers import add_members, bodies, make_template
from tests.conftest import csrf_token_from

API = "/api/phase14/moderation"
TEMPLATES = {"Submission approved": "Approved: {{ title }}", "Submission rejected": "Not published: {{ title }}",
             "Volunteer approved": "Welcome aboard: {{ title }}", "Volunteer declined": "About {{ title }}"}


@pytest.fixture
def platform(app):
    """Members, the four notification templates (unless a catalog installed them) and platform documents."""
    from console.blueprints.communication.models import EmailTemplate
    from console.db import get_db

    add_members(3, prefix="m")
    for name, subject in TEMPLATES.items():
        if not EmailTemplate.objects(name=name).first():
            make_template(name=name, subject=subject, html_body="<p>{{ title }}: {{ reason }}</p>",
                          text_body="{{ title }}: {{ reason }}", category="product", sample_data={})
    db = get_db()
    subs = db.submissions.insert_many([
        {"title": "Garden photos", "kind": "photo", "user_id": "m0", "status": "pending",
         "platform_extra": {"likes": 3, "tags": ["spring"]}, "legacy_flag": True},
        {"title": "Repair café idea", "kind": "proposal", "user_id": "m1"},  # no status: pending
        {"title": "Old story", "kind": "story", "user_id": "m2", "status": "approved"},
    ]).inserted_ids
    vols = db.volunteers.insert_many([
        {"user_id": "m1", "status": "applied", "skills": ["cooking"], "opportunity": "Food bank", "shoe_size": 42},
    ]).inserted_ids
    event = db.events.insert_one({"title": "River clean-up", "capacity": 20}).inserted_id
    return {"subs": [str(i) for i in subs], "vols": [str(i) for i in vols], "event": str(event), "db": db}


def test_moderator_approves_a_submission_and_the_member_gets_the_email(api, platform, run_jobs, servers):
    moderator = api("moderator")
    sub = platform["subs"][0]
    response = moderator.post(f"{API}/submissions/{sub}/decision",
                              json={"decision": "approve", "reason": "Lovely", "version": 0})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "approved" and body["reviewed_by"] == moderator.admin.email
    assert body["review_reason"] == "Lovely" and body["version"] == 1 and body["reviewed_at"].endswith("Z")
    stored = platform["db"].submissions.find_one({"_id": ObjectId(sub)})
    assert stored["platform_extra"] == {"likes": 3, "tags": ["spring"]} and stored["legacy_flag"] is True
    assert stored["status"] == "approved" and stored["title"] == "Garden photos"
    run_jobs()
    messages = [m for m in servers.messages() if m["To"] == "m0@members.example.com"]
    assert len(messages) == 1 and "Garden photos" in messages[0]["Subject"]
    assert "Lovely" in bodies(messages[0])[0]
    from console.audit import AuditLog
    entry = AuditLog.objects(action="submission.approved").first()
    assert entry.actor == moderator.admin.email and entry.after["status"] == "approved"


def test_two_moderators_deciding_at_once_one_wins_the_other_sees_409_and_the_current_state(api, platform):
    first, second = api("moderator", email="one@test.example.com"), api("admin", email="two@test.example.com")
    sub = platform["subs"][1]
    assert first.post(f"{API}/submissions/{sub}/decision", json={"decision": "approve", "version": 0}).status_code \
        == 200
    late = second.post(f"{API}/submissions/{sub}/decision", json={"decision": "reject", "version": 0})
    assert late.status_code == 409 and late.mimetype == "application/problem+json"
    current = late.get_json()["current"]
    assert current["status"] == "approved" and current["reviewed_by"] == "one@test.example.com"
    assert current["version"] == 1
    assert platform["db"].submissions.find_one({"_id": ObjectId(sub)})["status"] == "approved"


def test_concurrent_decisions_without_versions_let_exactly_one_win(app, api, platform):
    from concurrent.futures import ThreadPoolExecutor

    clients = [api("moderator", email=f"mod{i}@test.example.com") for i in range(4)]
    sub = platform["subs"][0]

    def decide(client):
        with app.app_context():
            return client.post(f"{API}/submissions/{sub}/decision", json={"decision": "reject"}).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(decide, clients))
    assert codes.count(200) >= 1 and set(codes) <= {200, 409}
    assert platform["db"].submissions.find_one({"_id": ObjectId(sub)})["version"] == codes.count(200)


def test_the_queue_filters_pages_searches_and_counts(api, platform):
    moderator = api("moderator")
    pending = moderator.get(f"{API}/submissions?status=pending").get_json()
    assert {i["title"] for i in pending["items"]} == {"Garden photos", "Repair café idea"}
    assert pending["counts"]["pending"] == 2 and pending["counts"]["approved"] == 1
    assert pending["items"][0]["member"]["email"].endswith("@members.example.com")
    assert moderator.get(f"{API}/submissions?q=garden").get_json()["items"][0]["title"] == "Garden photos"
    assert [i["title"] for i in moderator.get(f"{API}/submissions?type=story").get_json()["items"]] == ["Old story"]
    page1 = moderator.get(f"{API}/submissions?limit=2").get_json()
    page2 = moderator.get(f"{API}/submissions?limit=2&cursor={page1['next_cursor']}").get_json()
    assert len(page1["items"]) == 2 and len(page2["items"]) == 1 and page2["next_cursor"] is None
    assert {i["id"] for i in page1["items"] + page2["items"]} == set(platform["subs"])


def test_bulk_decisions_report_each_item(api, platform):
    moderator = api("moderator")
    ids = [*platform["subs"][:2], str(ObjectId())]
    out = moderator.post(f"{API}/submissions/decisions", json={"ids": ids, "decision": "reject", "reason": "dup"})
    assert out.status_code == 200
    assert [r["outcome"] for r in out.get_json()["results"]] == ["ok", "ok", "not_found"]
    assert platform["db"].submissions.count_documents({"status": "rejected", "review_reason": "dup"}) == 2


def test_volunteers_are_declined_assigned_and_marked_attended_keeping_unknown_fields(api, platform, run_jobs,
                                                                                   servers):
    moderator = api("moderator")
    vol = platform["vols"][0]
    declined = moderator.post(f"{API}/volunteers/{vol}/decision", json={"decision": "reject", "reason": "Full"})
    assert declined.status_code == 200 and declined.get_json()["status"] == "rejected"
    assigned = moderator.post(f"{API}/volunteers/{vol}/assign", json={"event_id": platform["event"]})
    assert assigned.status_code == 200 and assigned.get_json()["event_id"] == platform["event"]
    assert moderator.post(f"{API}/volunteers/{vol}/assign", json={"event_id": str(ObjectId())}).status_code == 422
    attended = moderator.post(f"{API}/volunteers/{vol}/attendance", json={"attended": True, "hours": 3})
    assert attended.status_code == 200 and attended.get_json()["hours_logged"] == 3
    stale = moderator.post(f"{API}/volunteers/{vol}/attendance", json={"attended": True, "version": 1})
    assert stale.status_code == 409
    stored = platform["db"].volunteers.find_one({"_id": ObjectId(vol)})
    assert stored["shoe_size"] == 42 and stored["skills"] == ["cooking"] and stored["version"] == 3
    assert moderator.get(f"{API}/volunteers?event_id={platform['event']}").get_json()["items"][0]["id"] == vol
    run_jobs()
    sent = [m for m in servers.messages() if m["To"] == "m1@members.example.com"]
    assert len(sent) == 1 and "Food bank" in m_text(sent[0])


def m_text(message) -> str:
    return (message["Subject"] or "") + " ".join(bodies(message))


@pytest.mark.parametrize("role", ["analyst", "content_manager"])
def test_other_roles_cannot_moderate(api, platform, role):
    client = api(role)
    assert client.get(f"{API}/submissions").status_code == 403
    assert client.post(f"{API}/submissions/{platform['subs'][0]}/decision",
                       json={"decision": "approve"}).status_code == 403
    assert platform["db"].submissions.count_documents({"reviewed_by": {"$exists": True}}) == 0


@pytest.mark.parametrize("path, body, status", [
    ("submissions/{id}/decision", {"decision": "maybe"}, 422),
    ("submissions/{id}/decision", {"decision": "approve", "version": -1}, 422),
    ("submissions/{id}/decision", {"decision": {"$gt": ""}}, 422),
    ("submissions/{id}/decision", {"decision": "approve", "extra": 1}, 422),
    ("submissions/not-an-id/decision", {"decision": "approve"}, 404),
    ("volunteers/{id}/decision", {"decision": "approve"}, 404),
])
def test_bad_decisions_are_clear_4xx_and_change_nothing(api, platform, path, body, status):
    response = api("admin").post(f"{API}/{path.format(id=platform['subs'][0])}", json=body)
    assert response.status_code == status and response.mimetype == "application/problem+json"
    assert platform["db"].submissions.count_documents({"version": {"$exists": True}}) == 0


def test_the_queue_page_decides_from_the_browser(login, platform):
    browser = login("moderator")
    page = browser.get("/moderation/submissions")
    assert page.status_code == 200 and b"Garden photos" in page.data and b"Old story" not in page.data
    token = csrf_token_from(page.data)
    response = browser.post("/moderation/submissions/decide",
                            data={"csrf_token": token, "ids": platform["subs"][0], "version": "0",
                                  "decision": "approve", "reason": "ok"})
    assert response.status_code == 302
    assert platform["db"].submissions.find_one({"_id": ObjectId(platform["subs"][0])})["status"] == "approved"
    assert b"Garden photos" not in browser.get("/moderation/submissions").data
    csv = browser.get("/moderation/submissions.csv?status=approved")
    assert csv.mimetype == "text/csv" and b"Garden photos" in csv.data


QUEUE = "/moderation/submissions"


@pytest.mark.parametrize("back, lands_on", [(f"{QUEUE}?type=photo", f"{QUEUE}?type=photo"),
                                            ("https://evil.example/", QUEUE), ("//evil.example/", QUEUE),
                                            ("/\\evil.example", QUEUE)])
def test_after_a_decision_the_page_returns_only_to_this_site(login, platform, back, lands_on):
    browser = login("moderator")
    token = csrf_token_from(browser.get("/moderation/submissions").data)
    response = browser.post("/moderation/submissions/decide",
                            data={"csrf_token": token, "ids": platform["subs"][0], "version": "0",
                                  "decision": "approve", "reason": "ok", "back": back})
    assert response.status_code == 302 and response.headers["Location"] == lands_on
