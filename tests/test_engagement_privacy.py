"""Members' data rights: export a member's data, erase the member, and the dashboards equal a rebuild without
them; the raw-event retention limit keeps the aggregates' history."""

from __future__ import annotations

import json
from datetime import timedelta

from console.audit import AuditLog
from console.timeutil import utcnow
from tests.conftest import clean_state
from tests.engagement_helpers import BASE, ev, track


def _day(days_ago: int, hour: int = 10) -> str:
    moment = (utcnow() - timedelta(days=days_ago)).replace(hour=hour, minute=0, second=0, microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def _events(user_ids: list[str]) -> list[dict]:
    events = []
    for user_id in user_ids:
        n = sum(map(ord, user_id)) % 4  # each member's pattern depends on them only
        for days_ago in range(0, 40, 3 + n):
            events.append(ev(user_id, _day(days_ago), "login", feature="auth", session_id=f"{user_id}-{days_ago}",
                             event_id=f"{user_id}-{days_ago}-a"))
            events.append(ev(user_id, _day(days_ago, 11), "view", feature=f"page{n % 2}",
                             session_id=f"{user_id}-{days_ago}", event_id=f"{user_id}-{days_ago}-b"))
    return events


def _dashboards(client) -> dict:
    start = (utcnow() - timedelta(days=45)).date().isoformat()
    metrics = client.get(f"{BASE}/metrics?from={start}&interval=week").json
    retention = client.get(f"{BASE}/retention-analysis?period=week&cohorts=6&periods=5").json
    for body in (metrics, retention):
        for key in ("generated_at", "computed_at", "cached"):
            body.pop(key, None)
    return {"metrics": metrics, "retention": retention}


def _seed(app, user_ids):
    client = app.test_client()
    events = _events(user_ids)
    for i in range(0, len(events), 500):
        track(client, events[i:i + 500])
    for user_id in user_ids:
        track(client, ev(user_id, _day(0, 12), "identify", traits={"email": f"{user_id}@example.com",
                                                                   "name": user_id.title()}))


def test_export_then_erase_leaves_dashboards_equal_to_a_rebuild_without_the_member(app, api, servers, run_jobs):
    from console.blueprints.communication.models import NotificationPreference, Suppression
    from console.db import get_db

    _seed(app, ["alice", "bob", "carol", "dave"])
    client = api("admin")
    assert client.post("/api/phase14/communication/preferences/carol",
                       json={"channels": {"email": True, "sms": False}, "categories": {"marketing": False}}
                       ).status_code == 200
    template = client.post("/api/phase14/communication/templates", json={
        "name": "Hello", "subject": "Hi {{ name }}", "html_body": "<p>Hi {{ name }}</p>", "category": "product"}).json
    sent = client.post("/api/phase14/communication/send-email",
                       json={"template_id": template["id"], "to": {"user_id": "carol"}, "priority": "normal"})
    assert sent.status_code == 202
    run_jobs()
    client.get(f"{BASE}/metrics")  # warm any cached dashboard result with carol in it

    exported = client.get(f"{BASE}/user/carol/export")
    assert exported.status_code == 200
    assert exported.headers["Content-Disposition"].startswith("attachment;")
    data = json.loads(exported.data)
    assert data["profile"]["email"] == "carol@example.com" and data["user_id"] == "carol"
    carol_events = [e for e in _events(["alice", "bob", "carol"]) if e["user_id"] == "carol"]
    assert len(data["activity"]) == len(carol_events) + 1  # + the identify call
    assert data["aggregates"]["total_events"] == len(data["activity"])
    assert data["aggregates"]["days"][0]["features"]["auth"] >= 1
    assert [m["subject"] for m in data["mail"]] == ["Hi Carol"] and data["mail"][0]["status"] == "sent"
    assert data["preferences"]["categories"]["marketing"] is False
    assert [h["status"] for h in data["history"] if h.get("kind") != "preference"] == ["sent"]
    assert any(h.get("kind") == "preference" for h in data["history"])  # her opt-out is part of her history

    with_carol = _dashboards(client)
    erased = client.delete(f"{BASE}/user/carol")
    assert erased.status_code == 200, erased.json
    assert erased.json["removed"]["events"] == len(data["activity"]) and erased.json["removed"]["mail"] == 1
    after_erase = _dashboards(client)
    assert after_erase != with_carol  # carol counted before
    assert after_erase["metrics"]["mau"] == with_carol["metrics"]["mau"] - 1

    database = get_db()
    for name in ("user_activities", "activity_rollups", "email_queue", "notification_history", "email_tracking"):
        holding = database[name].count_documents({"$or": [{"user_id": "carol"}, {"to_email": "carol@example.com"},
                                                          {"recipient": "carol@example.com"}]})
        assert holding == 0, name
    assert database["users"].count_documents({"user_id": "carol"}) == 0
    assert NotificationPreference.objects(user_id="carol").count() == 0
    assert Suppression.objects(email="carol@example.com").count() == 1  # nothing is sent to the address again
    [entry] = AuditLog.objects(action="member.erase")
    assert entry.target == "member:carol" and "carol@example.com" not in json.dumps(entry.after, default=str)
    assert AuditLog.objects(action="member.export", target="member:carol").count() == 1
    assert client.get(f"{BASE}/user/carol/export").status_code == 404
    assert client.delete(f"{BASE}/user/carol").status_code == 404
    blocked = client.post("/api/phase14/communication/send-email",
                          json={"template_id": template["id"], "to": {"email": "carol@example.com"}})
    assert blocked.json["status"] == "skipped"

    # the same history without carol, from scratch
    from console.cli import prepare_database

    clean_state(servers)
    prepare_database()
    _seed(app, ["alice", "bob", "dave"])
    assert _dashboards(api("admin", email="again@test.example.com")) == after_erase


def test_only_super_admins_and_admins_export_or_erase(app, api):
    _seed(app, ["erin"])
    for role in ("analyst", "content_manager", "moderator"):
        client = api(role)
        assert client.get(f"{BASE}/user/erin/export").status_code == 403
        assert client.delete(f"{BASE}/user/erin").status_code == 403
    assert api("admin").get(f"{BASE}/user/{'x' * 300}/export").status_code == 404
    assert api("super_admin").delete(f"{BASE}/user/nobody-here").status_code == 404
    from console.members import Member

    assert Member.objects(user_id="erin").count() == 1


def test_member_page_offers_export_and_a_confirmed_erase(app, login):
    _seed(app, ["frank"])
    browser = login("admin")
    page = browser.get("/engagement/members/frank").get_data(as_text=True)
    assert "engagement/members/frank/privacy" in page
    panel = browser.get("/engagement/members/frank/privacy").get_data(as_text=True)
    assert "export.json" in panel and 'name="confirm_user_id"' in panel
    download = browser.get("/engagement/members/frank/export.json")
    assert download.status_code == 200 and json.loads(download.data)["profile"]["user_id"] == "frank"
    assert browser.post("/engagement/members/frank/erase", data={"confirm_user_id": "fran"}).status_code == 422
    from console.members import Member

    assert Member.objects(user_id="frank").count() == 1
    done = browser.post("/engagement/members/frank/erase", data={"confirm_user_id": "frank"},
                        headers={"HX-Request": "true"})
    assert done.status_code == 204 and done.headers["HX-Redirect"].endswith("/engagement/members")
    assert Member.objects(user_id="frank").count() == 0
    analyst = login("analyst")
    assert "privacy" not in analyst.get("/engagement/members/alice").get_data(as_text=True)


def test_raw_event_retention_drops_old_events_and_keeps_the_aggregates(app, api):
    from console.blueprints.engagement import privacy
    from console.blueprints.engagement.models import ActivityRollup, UserActivity

    _seed(app, ["gina", "hank"])
    client = api("admin")
    before = _dashboards(client)
    rollups = ActivityRollup.objects.count()
    assert privacy.purge_raw_events({})["status"] == "skipped"  # off by default
    app.config["RAW_EVENT_TTL_DAYS"] = 10
    result = privacy.purge_raw_events({})
    assert result["status"] == "done" and result["deleted"] > 0
    cutoff = utcnow() - timedelta(days=10)
    assert UserActivity.objects(timestamp__lt=cutoff).count() == 0
    assert UserActivity.objects(timestamp__gte=cutoff).count() > 0
    assert ActivityRollup.objects.count() == rollups
    assert _dashboards(client) == before


def test_existing_admin_roles_get_members_erase_once(app):
    from console.authz import Role
    from console.blueprints.engagement.privacy import grant_erase_to_admins
    from console.db import get_db

    Role.objects(name="admin").update_one(pull__permissions="members.erase")
    get_db()["schema_migrations"].delete_many({})
    assert grant_erase_to_admins() == "granted members.erase to the admin role"
    assert "members.erase" in Role.objects.get(name="admin").permissions
    Role.objects(name="admin").update_one(pull__permissions="members.erase")  # a super admin takes it away
    assert grant_erase_to_admins() is None
    assert "members.erase" not in Role.objects.get(name="admin").permissions
