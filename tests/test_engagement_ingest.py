"""track-activity: auth, validation per item, dedupe, clamping, rollups and members."""

from __future__ import annotations

from datetime import timedelta

import pytest

from console.models.engagement import UserActivity
from console.models.member import Member
from console.timeutil import isoformat, utcnow
from tests.engagement_helpers import TRACK, ev, rollup, track


def test_single_event_with_ingest_key_creates_member_and_rollup(client):
    body = track(client, ev("u1", "2026-01-05T10:00:00Z", feature="blog_read", event_id="e1",
                            traits={"email": "u1@example.org", "name": "Una", "plan": "pro"},
                            properties={"path": "/blog/1"}))
    assert body == {"accepted": 1, "duplicates": 0, "rejected": [], "clamped": 0}
    stored = UserActivity.objects.get(event_id="e1")
    assert stored.user_id == "u1" and stored.properties == {"path": "/blog/1"} and stored.feature == "blog_read"
    member = Member._get_collection().find_one({"user_id": "u1"})
    assert member["email"] == "u1@example.org" and member["name"] == "Una" and member["traits"] == {"plan": "pro"}
    assert isoformat(member["first_seen"]) == "2026-01-05T10:00:00Z" == isoformat(member["last_seen"])
    day = rollup("u1", "2026-01-05")
    assert day["events"] == 1 and day["sessions"] == 1 and day["features"] == {"blog_read": 1}
    assert day["names"] == {"page_view": 1}


def test_retried_batch_reports_duplicates_and_stores_nothing_twice(client):
    batch = [ev("u1", "2026-01-05T10:00:00Z", event_id="a"), ev("u1", "2026-01-05T10:05:00Z", event_id="b"),
             ev("u2", "2026-01-05T11:00:00Z", event_id="c")]
    assert track(client, batch)["accepted"] == 3
    again = track(client, [*batch, ev("u1", "2026-01-05T10:06:00Z", event_id="d")])
    assert again == {"accepted": 1, "duplicates": 3, "rejected": [], "clamped": 0}
    assert UserActivity.objects.count() == 4
    assert rollup("u1", "2026-01-05")["events"] == 3  # duplicates never reach the rollup
    assert track(client, [ev("u3", "2026-01-05T10:00:00Z", event_id="x"),
                          ev("u3", "2026-01-05T10:00:00Z", event_id="x")])["duplicates"] == 1


def test_server_made_event_ids_are_unique(client):
    track(client, [ev("u1", "2026-01-05T10:00:00Z"), ev("u1", "2026-01-05T10:00:00Z")])
    assert len(set(UserActivity.objects.distinct("event_id"))) == 2


def test_bad_items_are_rejected_individually_while_good_ones_are_stored(client):
    batch = [
        ev("ok1", "2026-01-05T10:00:00Z"),
        {"user_id": "x" * 201, "event": "e"},
        {"user_id": "u", "event": "e", "properties": {"$where": "1"}},
        {"user_id": "u", "event": "e", "properties": {"a.b": 1}},
        {"user_id": "u", "event": "e", "properties": {"blob": "x" * 9000}},
        {"user_id": "u", "event": "e", "properties": [1, 2]},
        {"user_id": 5, "event": "e"},
        {"event": "e"},
        {"user_id": "u", "event": "e", "timestamp": "yesterday"},
        {"user_id": "u", "event": "e", "unknown": 1},
        "not an object",
        ev("ok2", "2026-01-05T10:00:00Z"),
    ]
    body = track(client, batch)
    assert body["accepted"] == 2 and body["duplicates"] == 0
    assert [item["index"] for item in body["rejected"]] == list(range(1, 11))
    assert all(item["errors"] and item["errors"][0]["message"] for item in body["rejected"])
    assert body["rejected"][0]["errors"][0]["field"] == "user_id"
    assert body["rejected"][1]["errors"][0]["field"] == "properties.$where"
    assert sorted(UserActivity.objects.distinct("user_id")) == ["ok1", "ok2"]


def test_future_timestamps_are_clamped_and_flagged_past_ones_kept(client):
    now = utcnow()
    body = track(client, [ev("u1", isoformat(now + timedelta(days=2)), event_id="f"),
                          ev("u1", isoformat(now + timedelta(minutes=30)), event_id="soon"),
                          ev("u1", "2020-02-29T23:59:59Z", event_id="old")])
    assert body["clamped"] == 1 and body["accepted"] == 3
    future = UserActivity.objects.get(event_id="f")
    assert future.clamped and abs((future.timestamp - now).total_seconds()) < 60
    assert future.client_timestamp > now + timedelta(days=1)
    assert not UserActivity.objects.get(event_id="soon").clamped
    assert UserActivity.objects.get(event_id="old").timestamp.year == 2020


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"X-Ingest-Key": "wrong"}, 401),
    ({"X-Ingest-Key": "test-ingest-key"}, 202),
])
def test_ingest_key_auth(client, headers, status):
    response = client.post(TRACK, json=ev("u1", "2026-01-05T10:00:00Z"), headers=headers)
    assert response.status_code == status
    if status != 202:
        assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("role, status", [("admin", 202), ("super_admin", 202), ("analyst", 403), ("moderator", 403)])
def test_bearer_needs_engagement_track(api, role, status):
    assert api(role).post(TRACK, json=ev("u1", "2026-01-05T10:00:00Z")).status_code == status


def test_ingest_key_authorizes_nothing_else(client):
    response = client.get("/api/phase14/engagement/metrics", headers={"X-Ingest-Key": "test-ingest-key"})
    assert response.status_code == 401


@pytest.mark.parametrize("body, status", [
    ({"user_id": "u"}, 422),
    ({"events": []}, 422),
    ({"events": "nope"}, 422),
    ({"events": [], "extra": 1}, 422),
    ([1, 2], 422),
    ({"user_id": {"$gt": ""}, "event": "e"}, 422),
])
def test_bad_bodies(client, body, status):
    response = client.post(TRACK, json=body, headers={"X-Ingest-Key": "test-ingest-key"})
    assert response.status_code == status
    assert response.get_json()["errors"]


def test_too_many_events_and_not_json(client):
    headers = {"X-Ingest-Key": "test-ingest-key"}
    many = [ev("u", "2026-01-05T10:00:00Z")] * 1001
    assert client.post(TRACK, json={"events": many}, headers=headers).status_code == 422
    assert client.post(TRACK, data="{nope", headers={**headers, "Content-Type": "application/json"}).status_code == 400
    assert client.post(TRACK, data="a=b", headers=headers).status_code == 415
    assert UserActivity.objects.count() == 0


def test_rate_limited_per_key(make_app, servers):
    app = make_app(INGEST_RATE_LIMIT="2 per minute")
    with app.app_context():
        web = app.test_client()
        statuses = [web.post(TRACK, json=ev("u", "2026-01-05T10:00:00Z"),
                             headers={"X-Ingest-Key": "test-ingest-key"}).status_code for _ in range(3)]
    assert statuses == [202, 202, 429]


def test_sessions_by_gap_and_session_id_in_any_order(client):
    # gap sessions: 10:00, 10:29 (same), 11:00 (31 min later: new), 11:20 (same) → 2
    # session ids: s1 twice, s2 once → 2; total 4
    events = [ev("u", "2026-01-05T11:20:00Z"), ev("u", "2026-01-05T10:00:00Z"), ev("u", "2026-01-05T11:00:00Z"),
              ev("u", "2026-01-05T12:00:00Z", session_id="s1"), ev("u", "2026-01-05T12:40:00Z", session_id="s1"),
              ev("u", "2026-01-05T13:00:00Z", session_id="s2")]
    track(client, events[:2])
    track(client, events[2:4])
    track(client, [*events[4:], ev("u", "2026-01-05T10:29:00Z")])
    day = rollup("u", "2026-01-05")
    assert day["events"] == 7 and day["sessions"] == 4
    # 10:00→10:29 (29 min) + 11:00→11:20 (20) + s1 40 min + s2 0
    assert day["session_seconds"] == (29 + 20 + 40) * 60
    # an event exactly 30 minutes after the last one starts a new session
    track(client, ev("u", "2026-01-05T11:50:00Z"))
    assert rollup("u", "2026-01-05")["sessions"] == 5


def test_sessions_continue_across_midnight(client):
    track(client, [ev("u", "2026-01-05T23:50:00Z"), ev("u", "2026-01-06T00:10:00Z"),
                   ev("u", "2026-01-05T23:55:00Z", session_id="late"),
                   ev("u", "2026-01-06T00:05:00Z", session_id="late")])
    assert rollup("u", "2026-01-05")["sessions"] == 2
    assert rollup("u", "2026-01-06")["sessions"] == 0  # both sessions started the day before
    track(client, ev("u", "2026-01-06T01:00:00Z"))
    assert rollup("u", "2026-01-06")["sessions"] == 1


def test_backfill_moves_first_seen_and_feature_names_with_dots(client):
    track(client, ev("u", "2026-01-05T10:00:00Z", feature="blog.read"))
    track(client, ev("u", "2025-12-01T10:00:00Z", event="$odd", feature="blog.read"))
    member = Member._get_collection().find_one({"user_id": "u"})
    assert isoformat(member["first_seen"]) == "2025-12-01T10:00:00Z"
    assert isoformat(member["last_seen"]) == "2026-01-05T10:00:00Z"
    assert rollup("u", "2026-01-05")["features"] == {"blog%2Eread": 1}


def test_unknown_member_fields_are_kept(client):
    Member._get_collection().insert_one({"user_id": "keep", "email": "k@example.org", "plan": "gold",
                                         "nested": {"a": 1}})
    track(client, ev("keep", "2026-01-05T10:00:00Z", traits={"name": "Kept"}))
    member = Member._get_collection().find_one({"user_id": "keep"})
    assert member["plan"] == "gold" and member["nested"] == {"a": 1} and member["name"] == "Kept"
    assert member["email"] == "k@example.org"
