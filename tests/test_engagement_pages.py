"""Engagement console pages: they render with data and without, fragments swap, permissions hold."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from console.members import Member
from console.timeutil import isoformat, utcnow
from tests.engagement_helpers import ev, track

PAGES = ["/engagement", "/engagement/retention", "/engagement/lifecycle", "/engagement/members",
         "/engagement/at-risk?tier=all", "/engagement/inactive?days=1", "/engagement/widget",
         "/engagement/fragments/overview?interval=week", "/engagement/fragments/retention?period=month&mode=recurring",
         "/engagement/fragments/lifecycle?interval=month", "/engagement/members/u1",
         "/engagement/members/u1/activity"]


@pytest.fixture
def some_activity(client):
    now = utcnow()
    rng = random.Random(3)
    events = [ev(f"u{n}", isoformat(now - timedelta(days=rng.randint(0, 60), minutes=rng.randint(1, 600))),
                 feature=rng.choice(["blog_read", "search", "comment"]), traits={"name": f"Member {n}"})
              for n in range(1, 30) for _ in range(6)]
    track(client, events)
    Member._get_collection().insert_one({"user_id": "never", "created_at": now - timedelta(days=90)})


@pytest.mark.parametrize("with_data", [False, True])
def test_pages_render_for_analyst(login, request, with_data):
    if with_data:
        request.getfixturevalue("some_activity")
    else:
        Member._get_collection().insert_one({"user_id": "u1", "email": "u1@example.org"})
    browser = login("analyst")
    for path in PAGES:
        response = browser.get(path, headers={"HX-Request": "true"} if "fragments" in path else {})
        assert response.status_code == 200, (path, response.data[-500:])
    overview = browser.get("/engagement").get_data(as_text=True)
    assert "Stickiness" in overview and 'hx-get="/engagement/fragments/overview"' in overview


def test_moderator_is_denied_and_nav_hides_engagement(login):
    browser = login("moderator")
    for path in ["/engagement", "/engagement/retention", "/engagement/at-risk", "/engagement/campaigns"]:
        assert browser.get(path).status_code == 403
    assert "/engagement/retention" not in browser.get("/").get_data(as_text=True)


def test_analyst_sees_no_campaign_controls(login, some_activity):
    browser = login("analyst")
    assert "Start a re-engagement campaign" not in browser.get("/engagement/inactive?days=1").get_data(as_text=True)
    campaigns = browser.get("/engagement/campaigns")  # analysts read campaigns, without the start buttons
    assert campaigns.status_code == 200 and "Start from at-risk" not in campaigns.get_data(as_text=True)
    assert "/engagement/campaigns" in browser.get("/").get_data(as_text=True)
    assert browser.post("/engagement/campaigns/preview", data={"inactive_days": 1}).status_code == 403


def test_fragment_changes_with_controls(login, some_activity):
    browser = login("analyst")
    day = browser.get("/engagement/fragments/overview?interval=day").get_data(as_text=True)
    week = browser.get("/engagement/fragments/overview?interval=week").get_data(as_text=True)
    assert 'data-interval="day"' in day and 'data-interval="week"' in week
    assert "<html" not in week  # a fragment, not a page


def test_retention_csv_export(login, some_activity):
    response = login("analyst").get("/engagement/retention.csv?period=week&cohorts=4")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    lines = response.get_data(as_text=True).strip().splitlines()
    assert lines[0].startswith("cohort,size,week_0_count") and len(lines) == 5


def test_member_search_and_unknown_member(login, some_activity):
    browser = login("analyst")
    found = browser.get("/engagement/members?q=Member 7").get_data(as_text=True)
    assert "u7" in found and "u8" not in found
    assert browser.get("/engagement/members/nobody-at-all").status_code == 404


def test_only_those_who_may_start_a_campaign_get_the_at_risk_selection_boxes(app, login, some_activity):
    from console.blueprints.engagement import churn

    with app.app_context():
        churn.rescore()
        assert churn.stored_scores(tier=None)["items"], "the fixture's members should be scored"
    assert 'name="user_ids"' not in login("analyst").get("/engagement/at-risk?tier=all").get_data(as_text=True)
    assert 'name="user_ids"' in login("admin").get("/engagement/at-risk?tier=all").get_data(as_text=True)


def test_at_risk_csv(login, some_activity):
    response = login("analyst").get("/engagement/at-risk.csv?tier=all")
    assert response.status_code == 200 and response.is_streamed  # read from the cursor, not held in memory
    assert response.get_data(as_text=True).startswith("user_id,risk,tier,last_seen,days_inactive,reasons")


def test_demo_seeder_is_idempotent_and_consistent(app):
    from console.blueprints.engagement.demo import seed_activity
    from console.blueprints.engagement.ingest import rebuild_rollups
    from console.blueprints.engagement.models import ActivityRollup, UserActivity

    Member._get_collection().insert_many([{"user_id": f"m{n:04d}", "email": f"m{n}@example.org",
                                           "created_at": utcnow()} for n in range(1, 25)])
    summary = seed_activity(random.Random("activity-14"), utcnow())
    events = UserActivity.objects.count()
    assert events > 200 and summary.startswith(f"{events:,} events")
    assert seed_activity(random.Random("activity-14"), utcnow()) == "already seeded"
    assert UserActivity.objects.count() == events
    fields = {"_id": 0, "user_id": 1, "day": 1, "events": 1, "sessions": 1, "session_seconds": 1}
    seeded = list(ActivityRollup._get_collection().find({}, fields).sort([("user_id", 1), ("day", 1)]))
    rebuild_rollups()
    assert list(ActivityRollup._get_collection().find({}, fields).sort([("user_id", 1), ("day", 1)])) == seeded
    member = Member._get_collection().find_one({"user_id": "m0002"})  # m0001 is one who never shows up
    assert member["first_seen"] and member["created_at"] <= member["first_seen"]


def test_pages_name_their_time_zone_and_mark_partial_periods(make_app, servers, create_admin):
    """With ANALYTICS_TIMEZONE set every engagement page says so; a week cut by `from` is drawn lighter, named
    in the note and flagged in the CSV."""
    import csv
    import io
    import json
    import re

    from console.cli import prepare_database
    from tests.conftest import clean_state, signed_in_client

    clean_state(servers)
    application = make_app(ANALYTICS_TIMEZONE="Europe/Berlin")
    with application.app_context():
        prepare_database()
        browser = signed_in_client(application, create_admin("analyst"))
        track(browser, [ev("b1", "2026-03-04T23:30:00Z", feature="chat"),  # 00:30 on 5 March in Berlin
                        ev("b2", "2026-03-10T10:00:00Z")])
        for path in ("/engagement", "/engagement/retention", "/engagement/lifecycle", "/engagement/members",
                     "/engagement/at-risk?tier=all", "/engagement/inactive?days=1", "/engagement/members/b1"):
            page = browser.get(path).get_data(as_text=True)
            assert "Europe/Berlin" in page, path
        fragment = browser.get("/engagement/fragments/overview?from=2026-03-04&to=2026-03-15&interval=week",
                               headers={"HX-Request": "true"}).get_data(as_text=True)
        assert "2026-W10 is cut by the date range" in fragment
        figure = json.loads(re.search(r"id=\"chart-activity\"[^>]*data-plotly='([^']+)'", fragment).group(1)
                            .replace("&#39;", "'").replace("&quot;", '"').replace("&amp;", "&"))
        assert figure["data"][0]["marker"]["opacity"] == [0.4, 1.0]
        exported = browser.get("/engagement/overview.csv?from=2026-03-04&to=2026-03-15&interval=week")
        rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
        assert [(row["period"], row["active_users"], row["partial"], row["feature_users:chat"]) for row in rows] == [
            ("2026-03-02", "1", "partial", "1"), ("2026-03-09", "1", "", "0")]
        assert rows[0]["timezone"] == "Europe/Berlin"
