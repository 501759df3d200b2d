"""Blog posts and events (issue 17, item 2): create, edit with versions, publish, schedule, sanitise, attendees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from tests.communication_helpers import add_members, make_template
from tests.conftest import csrf_token_from

API = "/api/phase14/content"


def test_content_manager_creates_edits_and_publishes_an_event(api, app):
    from console.db import get_db

    cm = api("content_manager")
    created = cm.post(f"{API}/events", json={"title": "Repair café", "body": "**Bring** tools", "body_format":
                                             "markdown", "location": "Hall", "capacity": 40,
                                             "starts_at": "2027-01-10T18:00:00Z"})
    assert created.status_code == 201, created.get_json()
    event = created.get_json()
    assert event["status"] == "draft" and event["version"] == 0
    assert event["body_html"].strip() == "<p><strong>Bring</strong> tools</p>"
    assert event["starts_at"] == "2027-01-10T18:00:00Z"
    get_db().events.update_one({"_id": ObjectId(event["id"])}, {"$set": {"platform_rsvp_url": "/e/1"}})
    edited = cm.put(f"{API}/events/{event['id']}", json={"capacity": 50, "version": 0})
    assert edited.status_code == 200 and edited.get_json()["capacity"] == 50 and edited.get_json()["version"] == 1
    stale = cm.put(f"{API}/events/{event['id']}", json={"capacity": 60, "version": 0})
    assert stale.status_code == 409 and stale.get_json()["current"]["capacity"] == 50
    published = cm.post(f"{API}/events/{event['id']}/publish")
    assert published.status_code == 200 and published.get_json()["status"] == "published"
    stored = get_db().events.find_one({"_id": ObjectId(event["id"])})
    assert stored["platform_rsvp_url"] == "/e/1" and stored["status"] == "published" and stored["published_at"]
    assert cm.get(f"{API}/events?status=published").get_json()["items"][0]["id"] == event["id"]
    back = cm.post(f"{API}/events/{event['id']}/unpublish", json={"version": 2})
    assert back.status_code == 200 and back.get_json()["status"] == "draft"
    from console.audit import AuditLog
    assert {"event.created", "event.updated", "event.published", "event.unpublished"} <= set(
        AuditLog.objects.distinct("action"))


def test_blog_bodies_are_sanitised_and_scheduled_posts_publish_when_due(api, app):
    from console.db import get_db

    cm = api("content_manager")
    post = cm.post(f"{API}/blogs", json={"title": "Hi", "body": '<p onclick="x()">ok<script>alert(1)</script>'
                                                               '<a href="javascript:alert(1)">l</a></p>'}).get_json()
    assert "script" not in post["body_html"] and "onclick" not in post["body_html"]
    assert "javascript:" not in post["body_html"]
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    scheduled = cm.post(f"{API}/blogs/{post['id']}/publish", json={"at": soon}).get_json()
    assert scheduled["status"] == "scheduled"
    get_db().blogs.update_one({"_id": ObjectId(post["id"])},
                              {"$set": {"publish_at": datetime.now(UTC) - timedelta(minutes=1)}})
    listed = cm.get(f"{API}/blogs").get_json()
    assert listed["items"][0]["status"] == "published" and listed["counts"]["published"] == 1


def test_unknown_platform_fields_survive_every_content_write(api, app):
    from console.db import get_db

    cm = api("content_manager")
    blog_id = get_db().blogs.insert_one({"title": "Platform post", "status": "published", "slug": "p",
                                         "seo": {"keywords": ["a"]}, "comments_open": True}).inserted_id
    for call in (lambda: cm.put(f"{API}/blogs/{blog_id}", json={"title": "Renamed"}),
                 lambda: cm.post(f"{API}/blogs/{blog_id}/unpublish"),
                 lambda: cm.post(f"{API}/blogs/{blog_id}/publish"),
                 lambda: cm.put(f"{API}/blogs/{blog_id}", json={"status": "archived"})):
        assert call().status_code == 200
    stored = get_db().blogs.find_one({"_id": blog_id})
    assert stored["slug"] == "p" and stored["seo"] == {"keywords": ["a"]} and stored["comments_open"] is True
    assert stored["title"] == "Renamed" and stored["status"] == "archived" and stored["version"] == 4


@pytest.mark.parametrize("role, status", [("moderator", 403), ("analyst", 403), ("admin", 201)])
def test_only_content_roles_write_content(api, role, status):
    assert api(role).post(f"{API}/blogs", json={"title": "x"}).status_code == status


@pytest.mark.parametrize("body", [{}, {"title": ""}, {"title": "x", "body_format": "rtf"}, {"title": {"$gt": ""}},
                                  {"title": "x", "capacity": -1}])
def test_bad_content_is_422(api, app, body):
    from console.db import get_db

    response = api("content_manager").post(f"{API}/events", json=body)
    assert response.status_code == 422 and get_db().events.count_documents({}) == 0


def test_the_event_page_shows_attendees_and_emails_them_as_a_batch(login, app, run_jobs, servers):
    from console.db import get_db

    add_members(2, prefix="a")
    template = make_template(name="Event news", subject="News for {{ event.title }}",
                             html_body="<p>{{ event.title }}</p>", category="events", sample_data={})
    event_id = get_db().events.insert_one({"title": "Book swap", "attendees": ["a0", {"user_id": "a1"}],
                                           "template_id": str(template.id)}).inserted_id
    browser = login("admin")
    page = browser.get(f"/content/events/{event_id}")
    assert page.status_code == 200 and b"a0@members.example.com" in page.data and b"Email the attendees" in page.data
    response = browser.post(f"/content/events/{event_id}/email-attendees",
                            data={"csrf_token": csrf_token_from(page.data)})
    assert response.status_code == 302 and "/communication/batches/" in response.headers["Location"]
    run_jobs()
    assert sorted(m["To"] for m in servers.messages()) == ["a0@members.example.com", "a1@members.example.com"]


def test_content_manager_edits_in_the_browser_and_a_stale_form_is_refused(login, app):
    from console.db import get_db

    browser = login("content_manager")
    listing = browser.get("/content/blogs")
    assert listing.status_code == 200
    token = csrf_token_from(listing.data)
    created = browser.post("/content/blogs/new", data={"csrf_token": token, "title": "Spring notes"})
    assert created.status_code == 302
    edit_url = created.headers["Location"]
    form = {"csrf_token": token, "title": "Spring notes v2", "body": "hello", "body_format": "html", "version": "0"}
    assert browser.post(edit_url, data={**form, "action": "save"}).status_code == 302
    assert browser.post(edit_url, data={**form, "title": "Lost edit", "action": "save"}).status_code == 302
    doc = get_db().blogs.find_one({})
    assert doc["title"] == "Spring notes v2" and doc["version"] == 1
    browser.post(edit_url, data={**form, "version": "1", "action": "publish"})
    assert get_db().blogs.find_one({})["status"] == "published"
    assert b"Spring notes v2" in browser.get("/content/blogs?status=published").data


def test_the_publishing_job_publishes_due_items_once(api, app, run_jobs):
    """The worker's periodic job, not a list read, publishes what is due: versioned and audited exactly once."""
    from console.audit import AuditLog
    from console.blueprints.platform.jobs import enqueue_publish, publish_scheduled
    from console.db import get_db

    cm = api("content_manager")
    due = cm.post(f"{API}/events", json={"title": "Book swap", "starts_at": "2027-03-01T10:00:00Z"}).get_json()
    later = cm.post(f"{API}/blogs", json={"title": "Next week"}).get_json()
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for kind, item in (("events", due), ("blogs", later)):
        assert cm.post(f"{API}/{kind}/{item['id']}/publish", json={"at": in_an_hour}).get_json()["status"] == \
            "scheduled"
    get_db().events.update_one({"_id": ObjectId(due["id"])}, {"$set": {"publish_at": datetime.now(UTC)
                                                                        - timedelta(minutes=1),
                                                                        "platform_only": {"keep": True}}})
    enqueue_publish(app)
    enqueue_publish(app)  # a second worker's tick within the interval enqueues nothing more
    assert len(app.extensions["queues"]["default"]) == 1
    run_jobs()
    stored = get_db().events.find_one({"_id": ObjectId(due["id"])})
    assert stored["status"] == "published" and stored["version"] == 2 and stored["published_at"]
    assert stored["platform_only"] == {"keep": True} and stored["updated_by"] == "scheduler"
    assert get_db().blogs.find_one({"_id": ObjectId(later["id"])})["status"] == "scheduled"
    assert publish_scheduled() == {"blogs": 0, "events": 0}  # nothing due twice
    cm.get(f"{API}/events")  # a list read after the job changes nothing either
    entries = AuditLog.objects(action="event.published", target=f"event:{due['id']}")
    assert entries.count() == 1 and entries.first().actor == "scheduler"
    assert get_db().events.find_one({"_id": ObjectId(due["id"])})["version"] == 2


def test_the_worker_schedules_the_publishing_job(make_app):
    from console.blueprints.platform.jobs import start_publish_schedule

    app = make_app()
    assert start_publish_schedule in app.extensions["worker_startup"]
    assert app.config["CONTENT_PUBLISH_INTERVAL"] == 60
