"""Metrics, retention, lifecycle, inactive members, churn and activity: exact answers on small datasets."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest

from console.members import Member
from console.timeutil import isoformat, utcnow
from tests.engagement_helpers import BASE, ev, track


@pytest.fixture
def reader(api):
    return api("analyst")


@pytest.fixture
def january(client):
    """u1: Jan 10, 30, 31 · u2: Jan 2, 25 · u3: Jan 1 · u4: Jan 31 · u5: Dec 31 23:59:59 and Feb 1 00:00."""
    track(client, [
        ev("u1", "2026-01-10T09:00:00Z", feature="blog_read"),
        ev("u1", "2026-01-30T09:00:00Z", feature="blog_read"),
        ev("u1", "2026-01-31T09:00:00Z", feature="blog_read"),
        ev("u1", "2026-01-31T09:10:00Z", feature="comment"),
        ev("u1", "2026-01-31T12:00:00Z"),
        ev("u2", "2026-01-02T09:00:00Z"),
        ev("u2", "2026-01-25T09:00:00Z", feature="search"),
        ev("u3", "2026-01-01T00:00:00Z"),
        ev("u4", "2026-01-31T23:59:59Z", feature="blog_read", session_id="s4"),
        ev("u5", "2025-12-31T23:59:59Z"),
        ev("u5", "2026-02-01T00:00:00Z"),
    ])


def test_dau_wau_mau_stickiness(reader, january):
    body = reader.get(f"{BASE}/metrics?from=2026-01-29&to=2026-01-31").get_json()
    assert (body["dau"], body["wau"], body["mau"]) == (2, 3, 3)
    assert body["stickiness"] == pytest.approx((6 / 30) / 3)  # u1 3 days + u2 2 days + u4 1 day, over 30 days
    assert [(row["period"], row["active_users"], row["dau"]) for row in body["series"]] == [
        ("2026-01-29", 0, 0), ("2026-01-30", 1, 1), ("2026-01-31", 2, 2)]
    assert body["interval"] == "day"


def test_sessions_and_feature_usage(reader, january):
    body = reader.get(f"{BASE}/metrics?from=2026-01-26&to=2026-01-31").get_json()
    # u1: Jan 30 one session; Jan 31: 09:00+09:10 one, 12:00 another → 3; u4 one session id → 4 sessions, 2 members
    assert body["sessions"] == 4 and body["sessions_per_user"] == 2
    assert body["avg_session_minutes"] == pytest.approx(10 / 4)
    usage = {row["feature"]: row for row in body["feature_usage"]}
    assert usage["blog_read"] == {"feature": "blog_read", "events": 3, "users": 2, "adoption": 1.0}
    assert usage["comment"]["users"] == 1 and usage["comment"]["adoption"] == 0.5
    assert "search" not in usage  # Jan 25 is outside the range


def test_iso_weeks_start_monday(reader, january):
    body = reader.get(f"{BASE}/metrics?from=2026-01-01&to=2026-01-31&interval=week").get_json()
    assert [(row["period"], row["active_users"], row["new_users"]) for row in body["series"]] == [
        ("2025-12-29", 2, 2), ("2026-01-05", 1, 1), ("2026-01-12", 0, 0), ("2026-01-19", 1, 0),
        ("2026-01-26", 2, 1)]
    assert body["series"][0]["label"] == "2026-W01"


def test_calendar_months(reader, january):
    body = reader.get(f"{BASE}/metrics?from=2025-12-01&to=2026-02-28&interval=month").get_json()
    assert [(row["period"], row["active_users"], row["new_users"], row["events"]) for row in body["series"]] == [
        ("2025-12-01", 1, 1, 1), ("2026-01-01", 4, 4, 9), ("2026-02-01", 1, 0, 1)]


def test_metrics_cache_is_invalidated_by_new_data(reader, client, january):
    first = reader.get(f"{BASE}/metrics?from=2026-01-29&to=2026-01-31").get_json()
    track(client, ev("u9", "2026-01-31T08:00:00Z"))
    second = reader.get(f"{BASE}/metrics?from=2026-01-29&to=2026-01-31").get_json()
    assert (first["dau"], second["dau"]) == (2, 3)


@pytest.mark.parametrize("query", ["from=2026-02-01&to=2026-01-01", "interval=year", "from=yesterday",
                                   "to=2026-13-01",
                                   "from=1659-01-01"])  # fuzz finding: `to` defaults to today, range unbounded
def test_metrics_bad_query(reader, query):
    response = reader.get(f"{BASE}/metrics?{query}")
    assert response.status_code == 422 and response.mimetype == "application/problem+json"


def _week(offset: int, now: datetime, day: int = 0, hour: int = 1) -> str:
    """A time `offset` weeks from the current ISO week (0 = this week), never in the future."""
    monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    moment = monday + timedelta(weeks=offset, days=day, hours=hour)
    return isoformat(min(moment, now - timedelta(seconds=1)) if offset == 0 else moment)


@pytest.fixture
def cohorts(client):
    now = utcnow()
    track(client, [
        ev("a", _week(-2, now), event="signup"), ev("a", _week(-1, now)), ev("a", _week(0, now), event="purchase"),
        ev("b", _week(-2, now)), ev("b", _week(0, now)),
        ev("c", _week(-1, now)), ev("c", _week(0, now)),
        ev("d", _week(-5, now)), ev("d", _week(-2, now)), ev("d", _week(-1, now)),
    ])


def test_retention_first_time(reader, cohorts):
    body = reader.get(f"{BASE}/retention-analysis?period=week&cohorts=3").get_json()
    assert body["period"] == "week"
    assert [(c["size"], c["counts"]) for c in body["cohorts"]] == [(2, [2, 1, 2]), (1, [1, 1]), (0, [0])]
    assert body["cohorts"][0]["retention"] == [1.0, 0.5, 1.0]


def test_retention_recurring(reader, cohorts):
    body = reader.get(f"{BASE}/retention-analysis?period=week&cohorts=3&mode=recurring").get_json()
    assert [(c["size"], c["counts"]) for c in body["cohorts"]] == [(3, [3, 2, 2]), (3, [3, 2]), (3, [3])]


def test_retention_start_and_return_events(reader, cohorts):
    body = reader.get(f"{BASE}/retention-analysis?period=week&cohorts=3&start_event=signup&"
                      "return_event=purchase").get_json()
    assert [c["counts"] for c in body["cohorts"]] == [[1, 0, 1], [0, 0], [0]]


def test_retention_periods_limit(reader, cohorts):
    body = reader.get(f"{BASE}/retention-analysis?period=week&cohorts=3&periods=2").get_json()
    assert [c["counts"] for c in body["cohorts"]] == [[2, 1], [1, 1], [0]]


@pytest.mark.parametrize("query", ["period=year", "cohorts=0", "cohorts=1000", "mode=sometimes", "periods=-1"])
def test_retention_bad_query(reader, query):
    assert reader.get(f"{BASE}/retention-analysis?{query}").status_code == 422


@pytest.fixture
def lifecycles(client):
    now = utcnow()
    track(client, [ev("x", _week(w, now)) for w in (-5, -4, -2, 0)]
          + [ev("y", _week(-3, now, day=1)), ev("z", _week(-6, now, day=1))])
    return now


def test_member_lifecycle_timeline(reader, lifecycles):
    body = reader.get(f"{BASE}/lifecycle/x").get_json()
    assert body["stage"] == "resurrecting" and body["user_id"] == "x"
    assert [row["stage"] for row in body["timeline"]] == ["new", "returning", "dormant", "resurrecting", "dormant",
                                                          "resurrecting"]
    assert [row["events"] for row in body["timeline"]] == [1, 1, 0, 1, 0, 1]
    assert reader.get(f"{BASE}/lifecycle/y").get_json()["stage"] == "dormant"
    assert reader.get(f"{BASE}/lifecycle/z").get_json()["stage"] == "churned"
    assert reader.get(f"{BASE}/lifecycle/nobody").status_code == 404


def test_lifecycle_chart(reader, lifecycles):
    body = reader.get(f"{BASE}/lifecycle?interval=week&periods=6").get_json()
    rows = [(r["new"], r["returning"], r["resurrecting"], r["dormant"]) for r in body["series"]]
    assert rows == [(1, 0, 0, -1), (0, 1, 0, 0), (1, 0, 0, -1), (0, 0, 1, -1), (0, 0, 0, -1), (0, 0, 1, 0)]


def test_new_member_stage(reader, client):
    track(client, ev("fresh", isoformat(utcnow() - timedelta(seconds=5))))
    body = reader.get(f"{BASE}/lifecycle/fresh").get_json()
    assert body["stage"] == "new" and body["timeline"][-1]["stage"] == "new"


@pytest.fixture
def idle(client):
    now = utcnow()
    track(client, [ev("p", isoformat(now - timedelta(days=40, hours=1))),
                   ev("q", isoformat(now - timedelta(days=31, hours=1))),
                   ev("r", isoformat(now - timedelta(days=5)))])
    Member._get_collection().insert_many([
        {"user_id": "s", "email": "s@example.org", "created_at": now - timedelta(days=60, hours=1)},
        {"user_id": "t", "email": "t@example.org", "created_at": now}])


def test_inactive_users_oldest_first_with_paging(reader, idle):
    body = reader.get(f"{BASE}/inactive-users?days=30&limit=2").get_json()
    assert body["days"] == 30 and body["total"] == 3
    assert [(row["user_id"], row["days_inactive"]) for row in body["items"]] == [("s", 60), ("p", 40)]
    assert body["items"][0]["email"] == "s@example.org" and body["items"][0]["last_seen"] is None
    rest = reader.get(f"{BASE}/inactive-users?days=30&limit=2&cursor={body['next_cursor']}").get_json()
    assert [(row["user_id"], row["days_inactive"]) for row in rest["items"]] == [("q", 31)]
    assert rest["next_cursor"] is None
    assert reader.get(f"{BASE}/inactive-users?days=35").get_json()["total"] == 2


def test_inactive_users_csv(reader, idle):
    response = reader.get(f"{BASE}/inactive-users?days=30&format=csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(row["user_id"], row["days_inactive"]) for row in rows] == [("s", "60"), ("p", "40"), ("q", "31")]


def test_inactive_total_on_every_page_around_the_cutoff_and_before_the_aggregates(reader, client, idle):
    """The total is the same on a later page; a member last active just before the cutoff counts, one just after
    does not (both usually on the cutoff's own day); a member last seen before any day the aggregates hold (old
    events purged, aggregates rebuilt) is still listed, oldest first, and counted."""
    now = utcnow()
    track(client, [ev("just_before", isoformat(now - timedelta(days=30, minutes=2))),
                   ev("just_after", isoformat(now - timedelta(days=30) + timedelta(minutes=2)))])
    Member._get_collection().insert_one({"user_id": "o", "email": "o@example.org",
                                         "created_at": now - timedelta(days=400),
                                         "last_seen": now - timedelta(days=300)})
    first = reader.get(f"{BASE}/inactive-users?days=30&limit=2").get_json()
    assert first["total"] == 5
    assert [(row["user_id"], row["days_inactive"]) for row in first["items"]] == [("o", 300), ("s", 60)]
    rest = reader.get(f"{BASE}/inactive-users?days=30&limit=2&cursor={first['next_cursor']}").get_json()
    assert rest["total"] == 5 and [row["user_id"] for row in rest["items"]] == ["p", "q"]
    last = reader.get(f"{BASE}/inactive-users?days=30&limit=2&cursor={rest['next_cursor']}").get_json()
    assert last["total"] == 5 and [row["user_id"] for row in last["items"]] == ["just_before"]
    assert last["next_cursor"] is None
    assert reader.get(f"{BASE}/inactive-users?days=400").get_json() == {
        "days": 400, "total": 0, "items": [], "next_cursor": None}


@pytest.mark.parametrize("query", ["days=-1", "days=abc", "format=xml", "limit=0", "limit=501", "cursor=garbage"])
def test_inactive_bad_query(reader, query):
    assert reader.get(f"{BASE}/inactive-users?{query}").status_code == 422


def test_user_activity_newest_first_filters_and_paging(reader, client):
    track(client, [ev("u", f"2026-01-0{d}T10:00:00Z", event="view" if d % 2 else "click", event_id=f"e{d}")
                   for d in range(1, 6)])
    body = reader.get(f"{BASE}/user/u/activity?limit=2").get_json()
    assert body["user_id"] == "u" and [i["event_id"] for i in body["items"]] == ["e5", "e4"]
    more = reader.get(f"{BASE}/user/u/activity?limit=2&cursor={body['next_cursor']}").get_json()
    assert [i["event_id"] for i in more["items"]] == ["e3", "e2"]
    view = reader.get(f"{BASE}/user/u/activity?event=view&from=2026-01-02&to=2026-01-05").get_json()
    assert [i["event_id"] for i in view["items"]] == ["e5", "e3"] and view["next_cursor"] is None
    assert view["items"][0]["timestamp"] == "2026-01-05T10:00:00Z"
    assert reader.get(f"{BASE}/user/ghost/activity").status_code == 404
    assert reader.get(f"{BASE}/user/u/activity?from=notadate").status_code == 422


@pytest.mark.parametrize("role, status", [("analyst", 200), ("admin", 200), ("moderator", 403),
                                          ("content_manager", 403)])
def test_read_permissions(api, client, role, status):
    track(client, ev("u1", "2026-01-05T10:00:00Z"))
    reader = api(role)
    for path in ("metrics", "retention-analysis", "churn-prediction", "inactive-users", "lifecycle",
                 "user/u1/activity", "lifecycle/u1"):
        assert reader.get(f"{BASE}/{path}").status_code == status, path


def test_reads_need_auth(client):
    response = client.get(f"{BASE}/metrics")
    assert response.status_code == 401 and response.mimetype == "application/problem+json"
