"""The console each built-in role sees: every page a role can reach offers only links it may open and actions it
may take (crawled from the dashboard over demo data), and each role's dashboard leads to its work."""

from __future__ import annotations

import random
import re
from collections import deque
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from console.authz import BUILTIN_ROLES
from console.security import view_permission
from console.timeutil import utcnow
from tests.conftest import csrf_token_from

ACTION_ATTRS = {"hx-post": "POST", "hx-put": "PUT", "hx-delete": "DELETE", "hx-patch": "PATCH"}
PER_ENDPOINT = 2  # pages of one endpoint to visit (different rows, filters); enough to see per-row buttons


class _Targets(HTMLParser):
    """Every URL a page lets a person follow or act on: (method, url, kind)."""

    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.found.append(("GET", attrs["href"], "link"))
        if tag == "form":
            method = (attrs.get("method") or "get").upper()
            self.found.append((method, attrs.get("action") or "", "form" if method != "GET" else "filter"))
        if tag == "button" and attrs.get("formaction"):
            self.found.append(("POST", attrs["formaction"], "form"))
        for attr, method in ACTION_ATTRS.items():
            if attrs.get(attr) is not None:
                self.found.append((method, attrs[attr], "htmx"))
        if attrs.get("hx-get"):
            self.found.append(("GET", attrs["hx-get"], "fragment"))


def _seed(app) -> dict:
    """Demo members, activity, churn scores, platform content, mail history and one campaign."""
    from console.blueprints.communication.demo import seed_communication
    from console.blueprints.communication.models import EmailTemplate
    from console.blueprints.engagement import campaigns
    from console.blueprints.engagement.churn import rescore
    from console.blueprints.engagement.demo import demo_events
    from console.blueprints.engagement.ingest import backfill
    from console.blueprints.platform.demo import seed_members
    from console.blueprints.platform.summaries import seed_platform_demo

    rng, now = random.Random(3), utcnow()
    seed_members(rng, now)
    backfill(demo_events(rng, now, [f"m{n:04d}" for n in range(1, 41)]))
    rescore()
    seed_platform_demo(rng, now)
    seed_communication(rng, now)
    template = EmailTemplate.objects(key="engagement.we_miss_you").first()
    campaign = campaigns.trigger({"name": "Crawl", "template_id": str(template.id), "holdout_percent": 50,
                                  "segment": {"user_ids": ["m0001", "m0002", "m0003", "m0004"]}}, actor="seed")
    return {"campaign_id": campaign["campaign_id"]}


@pytest.fixture
def seeded(app):
    return _seed(app)


def _allowed(role: str, endpoint: str, app) -> bool:
    decision = view_permission(app.view_functions[endpoint])
    if decision in ("@public", "@login"):
        return True
    return decision in BUILTIN_ROLES[role]["permissions"]


def crawl(app, browser, role: str, limit: int = 400) -> list[str]:
    """Breadth-first from the dashboard over every page and fragment the role may open; returns the offences."""
    adapter = app.url_map.bind("localhost")
    queue, seen, per_endpoint, offences = deque(["/"]), set(), {}, []
    while queue and len(seen) < limit:
        url = queue.popleft()
        if url in seen:
            continue
        seen.add(url)
        response = browser.get(url)
        assert response.status_code < 500, f"{role}: GET {url} → {response.status_code}"
        if response.status_code != 200 or response.mimetype != "text/html":
            continue
        parser = _Targets()
        parser.feed(response.get_data(as_text=True))
        for method, target, kind in parser.found:
            absolute = urljoin("http://localhost" + url, target)
            parts = urlsplit(absolute)
            if parts.netloc != "localhost" or parts.scheme not in ("http", "https"):
                continue
            try:
                endpoint, _ = adapter.match(parts.path, method=method)
            except (NotFound, MethodNotAllowed):
                continue
            if endpoint == "static" or endpoint.endswith(".static"):
                continue
            if not _allowed(role, endpoint, app):
                offences.append(f"{role}: {url} offers {kind} {method} {parts.path} ({endpoint})")
                continue
            decision = view_permission(app.view_functions[endpoint])
            if method == "GET" and decision != "@public" and endpoint != "auth.logout":
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                if path not in seen and per_endpoint.get(endpoint, 0) < PER_ENDPOINT:
                    per_endpoint[endpoint] = per_endpoint.get(endpoint, 0) + 1
                    queue.append(path)
    return sorted(set(offences))


@pytest.mark.parametrize("role", ["content_manager", "moderator", "analyst", "admin"])
def test_no_page_offers_what_the_role_cannot_do(app, seeded, login, role):
    browser = login(role)
    offences = crawl(app, browser, role)
    assert not offences, "\n".join(offences)


def test_the_moderator_starts_from_what_waits(login, app):
    from console.db import get_db

    now = utcnow()
    get_db().submissions.insert_many([
        {"title": "Old photo", "kind": "photo", "status": "pending", "submitted_at": now - timedelta(days=12)},
        {"title": "New photo", "kind": "photo", "status": "pending", "submitted_at": now - timedelta(hours=2)},
        {"title": "A story", "type": "story", "submitted_at": now - timedelta(days=3)},  # no status: waiting
        {"title": "Done", "kind": "photo", "status": "approved", "submitted_at": now - timedelta(days=40)},
    ])
    get_db().volunteers.insert_one({"user_id": "m1", "status": "applied", "joined_at": now - timedelta(days=5)})
    moderator = login("moderator")
    dashboard = moderator.get("/").get_data(as_text=True)
    assert re.findall(r'class="card-title">([^<]+)<', dashboard)[0] == "Moderation queue"  # the first block
    html = moderator.get("/widgets/platform/submissions").get_data(as_text=True)
    counts = re.findall(r'<div class="stat-label">([^<]+)</div>\s*<div class="stat-value">([^<]+)</div>', html)
    assert counts == [("Submissions waiting", "3"), ("New, last 24 hours", "1"), ("Waiting longest", "12 days"),
                      ("Volunteer applications", "1")]
    by_type = re.findall(r'href="(/moderation/submissions\?[^"]+)">(\w+)</a>.*?<strong class="num">(\d+)</strong>',
                         html.split('id="queue-by-type"')[1].split("</ul>")[0])
    assert [(label, n) for _, label, n in by_type] == [("Photo", "2"), ("Story", "1")]
    queue = moderator.get(by_type[0][0].replace("&amp;", "&")).get_data(as_text=True)
    assert "Old photo" in queue and "New photo" in queue and "A story" not in queue and "Done" not in queue
    queue_counts = dict(re.findall(r'<div class="stat-label">([^<]+)</div>\s*<div class="stat-value">([^<]+)</div>',
                                   queue))
    assert queue_counts["Waiting"] == "3" and queue_counts["Approved"] == "1" and queue_counts["Total"] == "4"
    longest = html.split('id="queue-longest"')[1]
    assert longest.index("Old photo") < longest.index("A story") < longest.index("New photo")
    assert 'href="/moderation/volunteers?status=pending"' in html


def test_the_content_manager_publishes_a_draft_from_the_dashboard(login, app):
    from console.audit import AuditLog
    from console.db import get_db

    now = utcnow()
    draft = get_db().events.insert_one({"title": "Repair café", "status": "draft", "version": 3,
                                        "updated_at": now, "platform_rsvp": "/e/9"}).inserted_id
    get_db().blogs.insert_many([
        {"title": "Coming soon", "status": "scheduled", "publish_at": now + timedelta(days=2)},
        {"title": "Last week", "status": "published", "published_at": now - timedelta(days=7)},
        {"title": "Long ago", "status": "published", "published_at": now - timedelta(days=90)},
    ])
    editor = login("content_manager")
    assert re.findall(r'class="card-title">([^<]+)<', editor.get("/").get_data(as_text=True))[0] == "Content pipeline"
    html = editor.get("/widgets/platform/content").get_data(as_text=True)
    counts = re.findall(r'<div class="stat-label">([^<]+)</div>\s*<div class="stat-value">([^<]+)</div>', html)
    assert counts == [("Drafts", "1"), ("Scheduled", "1"), ("Published, last 30 days", "1")]
    assert "Repair café" in html.split('id="pipeline-draft"')[1].split("</ul>")[0]
    assert "Coming soon" in html.split('id="pipeline-scheduled"')[1].split("</ul>")[0]
    published = html.split('id="pipeline-published"')[1].split("</ul>")[0]
    assert published.index("Last week") < published.index("Long ago")
    token = csrf_token_from(html.encode()) if "csrf_token" in html else None
    response = editor.post(f"/content/events/{draft}", data={"action": "publish", "version": "3", "back": "dashboard",
                                                             "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/")
    stored = get_db().events.find_one({"_id": draft})
    assert stored["status"] == "published" and stored["version"] == 4 and stored["platform_rsvp"] == "/e/9"
    assert AuditLog.objects(action="event.published", target=f"event:{draft}").count() == 1
    assert "is published" in editor.get("/").get_data(as_text=True)
    stale = editor.post(f"/content/events/{draft}", data={"action": "unpublish", "version": "3", "back": "dashboard",
                                                          "csrf_token": token})
    assert stale.status_code == 302 and get_db().events.find_one({"_id": draft})["status"] == "published"


@pytest.mark.parametrize("role", ["moderator", "analyst"])
def test_work_blocks_of_other_roles_are_refused(login, role):
    browser = login(role)
    assert browser.get("/widgets/platform/content").status_code == 403
    if role == "analyst":
        assert browser.get("/widgets/platform/submissions").status_code == 403
    else:
        assert browser.get("/widgets/reports").status_code == 403


def test_the_analyst_reads_retention_and_campaign_results_with_csv(login, app, seeded):
    analyst = login("analyst")
    dashboard = analyst.get("/").get_data(as_text=True)
    assert ">Reports<" in dashboard and ">Moderation queue<" not in dashboard
    html = analyst.get("/widgets/reports").get_data(as_text=True)
    assert "Crawl" in html and f'/engagement/campaigns/{seeded["campaign_id"]}' in html
    assert re.search(r"[+-]\d+\.\d pts|—", html.split('id="report-campaigns"')[1])
    assert "Read-only" in html and "<form" not in html
    for href in re.findall(r'href="([^"]+)">CSV</a>', html):
        response = analyst.get(href.replace("&amp;", "&"))
        assert response.status_code == 200 and response.mimetype == "text/csv", href
    assert len(re.findall(r'>CSV</a>', html)) == 5
    assert "Read-only" not in login("admin").get("/widgets/reports").get_data(as_text=True)
