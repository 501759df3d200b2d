"""Churn scoring: a job stores scores per member; only members still here are tiered; the backtest compares the
model with the rule "days since last seen" at the same number flagged."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from console.blueprints.engagement.churn import baseline_hits, rescore
from console.blueprints.engagement.models import ChurnRun, ChurnScore
from console.timeutil import isoformat, utcnow
from tests.engagement_helpers import BASE, ev, track

CHURN = f"{BASE}/churn-prediction"


@pytest.fixture
def reader(api):
    return api("analyst")


@pytest.fixture
def rhythms(client):
    """steady: daily · faded: daily until 15 days ago · weekly: every 7 days, last 3 days ago · gone: 40 days."""
    now = utcnow()
    events = []
    for days_ago in range(0, 56):
        events.append(ev("steady", isoformat(now - timedelta(days=days_ago, minutes=5)), feature="blog_read"))
        if days_ago % 2 == 0:
            events.append(ev("steady", isoformat(now - timedelta(days=days_ago, minutes=3)), feature="search"))
    for days_ago in range(15, 56):
        events.append(ev("faded", isoformat(now - timedelta(days=days_ago)), feature="blog_read"))
    for days_ago in range(3, 56, 7):
        events.append(ev("weekly", isoformat(now - timedelta(days=days_ago)), feature="event_rsvp"))
        events.append(ev("weekly", isoformat(now - timedelta(days=days_ago, minutes=2)), feature="comment"))
    for days_ago in range(40, 70):
        events.append(ev("gone", isoformat(now - timedelta(days=days_ago)), feature="blog_read"))
    track(client, events)


def rescore_via_api(reader, run_jobs) -> dict:
    response = reader.post(f"{CHURN}/rescore")
    assert response.status_code == 202, response.get_data(as_text=True)
    job_id = response.get_json()["job_id"]
    assert reader.get(f"{CHURN}/rescore/{job_id}").get_json()["status"] == "queued"
    run_jobs()
    status = reader.get(f"{CHURN}/rescore/{job_id}").get_json()
    assert status["status"] == "finished" and status["progress"] == 100
    return status


def test_nothing_is_scored_until_the_job_runs(reader, rhythms):
    body = reader.get(CHURN).get_json()
    assert body["status"] == "never_computed" and body["computed_at"] is None and body["items"] == []
    assert ChurnScore.objects.count() == 0


def test_rescore_job_stores_scores_tiers_and_reasons(reader, rhythms, run_jobs):
    status = rescore_via_api(reader, run_jobs)
    assert status["result"]["scored"] == 3 and status["result"]["churned"] == 1
    stored = {doc.user_id: doc for doc in ChurnScore.objects}
    assert set(stored) == {"steady", "faded", "weekly"}  # "gone" is churned, not at risk
    body = reader.get(CHURN).get_json()
    assert body["status"] == "ready" and body["computed_at"] and body["churned"] == 1
    by_user = {item["user_id"]: item for item in body["items"]}
    assert body["items"][0]["user_id"] == "faded"
    assert by_user["faded"]["tier"] == "high" and by_user["steady"]["tier"] == "low"
    assert by_user["weekly"]["tier"] == "low"
    assert 0 <= by_user["steady"]["risk"] < by_user["weekly"]["risk"] < by_user["faded"]["risk"] <= 1
    assert any("silent for 15 days" in reason for reason in by_user["faded"]["reasons"])
    assert any("down from" in reason for reason in by_user["faded"]["reasons"])
    assert by_user["faded"]["days_inactive"] == 15 and by_user["faded"]["computed_at"] == body["computed_at"]
    assert {"model", "baseline", "as_of", "model_beats_baseline"} <= set(body["model"]["backtest"])
    assert ChurnRun.objects.count() == 1


def test_filters_paging_and_bad_queries(reader, rhythms):
    rescore()
    assert [i["user_id"] for i in reader.get(f"{CHURN}?tier=high").get_json()["items"]] == ["faded"]
    assert len(reader.get(f"{CHURN}?min_risk=0").get_json()["items"]) == 3
    first = reader.get(f"{CHURN}?limit=2").get_json()
    second = reader.get(f"{CHURN}?limit=2&cursor={first['next_cursor']}").get_json()
    assert first["total"] == 3 and len(first["items"]) == 2 and len(second["items"]) == 1
    assert second["next_cursor"] is None
    assert {i["user_id"] for i in first["items"] + second["items"]} == {"steady", "faded", "weekly"}
    for query in ("min_risk=2", "tier=extreme", "cursor=garbage", "limit=0"):
        assert reader.get(f"{CHURN}?{query}").status_code == 422, query


def test_a_new_run_replaces_the_scores(reader, rhythms, client):
    rescore()
    track(client, [ev("faded", isoformat(utcnow()))])
    assert reader.get(f"{CHURN}?tier=high").get_json()["items"][0]["user_id"] == "faded"  # stored, not live
    rescore()
    assert reader.get(f"{CHURN}?tier=high").get_json()["items"] == []
    assert ChurnScore.objects.count() == 3


def test_unknown_job_is_404_and_rescore_needs_analytics(api, reader):
    assert reader.get(f"{CHURN}/rescore/nope").status_code == 404
    assert api("moderator").post(f"{CHURN}/rescore").status_code == 403


def test_baseline_ties_share_the_last_places():
    # silences 9, 5, 5, 5, 1; positives at 9 and one of the 5s: flag 2 → 1 + 1 * (1/3)
    assert baseline_hits([(9, True), (5, True), (5, False), (5, False), (1, False)], 2) == pytest.approx(4 / 3)
    assert baseline_hits([(9, True), (5, True)], 0) == 0


@pytest.fixture
def planted(client):
    """As of the backtest's cut (30 days ago), with the droppers known:

    - 12 faders: daily on two or three features, four to six events a day, then over four weeks every other day and
      every third day, one event on one feature, the last 4 days before the cut, never again (the droppers);
    - 20 regulars: daily throughout;
    - 20 casual members: every 7 days throughout (silent 0-6 days at the cut), they stay;
    - 8 vacationers: daily, away from 6 days before the cut to 10 days after, then daily again.
    The rule "longest silent" flags the vacationers and the casual members first."""
    now = utcnow()
    cut = 30
    events = []

    def day(uid, days_ago, features=("blog_read",), per_feature=1):
        stamp = now - timedelta(days=days_ago)
        return [ev(uid, isoformat(stamp - timedelta(minutes=n)), feature=feature)
                for n, feature in enumerate(f for f in features for _ in range(per_feature))]

    for n in range(12):
        uid = f"fader{n:02d}"
        for d in range(cut + 30, 110):
            events += day(uid, d, ("blog_read", "search", "comment") if d % 2 else ("blog_read", "search"), 2)
        for d in range(cut + 4, cut + 30):
            if (d < cut + 16 and d % 2 == 0) or d % 3 == 0 or d == cut + 4:
                events += day(uid, d)
    for n in range(20):
        events += [e for d in range(0, 110) for e in day(f"regular{n:02d}", d, ("blog_read", "search"))]
        events += [e for d in range(n % 7, 110, 7) for e in day(f"casual{n:02d}", d, ("event_rsvp",))]
    for n in range(8):
        events += [e for d in range(0, 110) if not cut - 10 <= d <= cut + 5
                   for e in day(f"vacation{n:02d}", d, ("blog_read", "search"))]
    for start in range(0, len(events), 1000):
        track(client, events[start:start + 1000])


def test_backtest_beats_the_rule_on_planted_droppers(reader, planted):
    rescore()
    backtest = reader.get(CHURN).get_json()["model"]["backtest"]
    assert backtest["scored"] == 60 and backtest["went_silent"] == 12
    model, baseline = backtest["model"], backtest["baseline"]
    assert model["flagged"] == baseline["flagged"] == backtest["high_tier"] == 12
    assert model["recall"] == 1.0 and model["precision"] == 1.0 and model["lift"] == pytest.approx(5.0)
    # the rule's 12 longest silent at the cut: the 8 vacationers (6 days), then casual members (6 and 5 days)
    assert baseline["recall"] == 0 and baseline["true_positives"] == 0
    assert model["recall"] > baseline["recall"] and backtest["model_beats_baseline"] is True


def test_backtest_on_demo_data_the_model_beats_the_rule(app, reader):
    """The demo's members fade over weeks before they stop, keep a slow rhythm and stay, or take a holiday and
    come back: there, the member's own rhythm and the decline before stopping catch more droppers than the rule
    "not seen for the longest" flagging as many."""
    from console.blueprints.engagement.demo import demo_events
    from console.blueprints.engagement.ingest import backfill
    from console.members import Member

    now = datetime(2026, 12, 1, 15, tzinfo=UTC)
    ids = [f"m{n:04d}" for n in range(1, 401)]
    Member._get_collection().insert_many([{"user_id": uid, "created_at": now} for uid in ids])
    backfill(demo_events(random.Random(7), now, ids), now=now)
    rescore(now)
    backtest = reader.get(CHURN).get_json()["model"]["backtest"]
    model, baseline = backtest["model"], backtest["baseline"]
    assert backtest["high_tier"] > 0 and model["flagged"] == baseline["flagged"] == backtest["high_tier"]
    assert 0 < backtest["went_silent"] < backtest["scored"]
    assert model["recall"] > baseline["recall"] and model["precision"] > baseline["precision"]
    assert backtest["model_beats_baseline"] is True


def test_at_risk_page_says_when_scored_and_whether_model_beats_rule(login, planted, run_jobs):
    browser = login("analyst")
    page = browser.get("/engagement/at-risk").get_data(as_text=True)
    assert "Not scored yet" in page
    started = browser.post("/engagement/at-risk/rescore")
    assert started.status_code == 200 and 'hx-trigger="every 1s"' in started.get_data(as_text=True)
    run_jobs()
    page = browser.get("/engagement/at-risk?tier=all").get_data(as_text=True)
    assert 'id="scored-at"' in page and "The model beats the simple rule" in page
    assert 'id="backtest-table"' in page and "Rule: longest silent" in page
    assert "regular00" in page and "fader00" not in page and "churned" in page  # faders are churned by now
    csv_body = browser.get("/engagement/at-risk.csv?tier=all").get_data(as_text=True)
    assert csv_body.splitlines()[0].startswith("user_id,risk,tier") and len(csv_body.splitlines()) == 49
