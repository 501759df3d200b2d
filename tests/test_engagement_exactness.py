"""Exactness of the day aggregates: incremental answers == answers after a full rebuild == brute force over the
stored events, for random batches (out of order, late, duplicated, replayed after a half-written attempt) around
a daylight-saving switch of a non-UTC ANALYTICS_TIMEZONE; and hand-built datasets with known answers."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.timeutil import isoformat, utcnow
from tests import engagement_brute as brute
from tests.conftest import INGEST_KEY, clean_state
from tests.engagement_helpers import BASE, TRACK, ev, track

ZONE = "America/New_York"
TZ = ZoneInfo(ZONE)
EXAMPLES = int(os.environ.get("ENGAGEMENT_PROPERTY_EXAMPLES", "30"))
ENGAGEMENT_COLLECTIONS = ("user_activities", "activity_rollups", "activity_days", "member_ordinals", "counters",
                          "users", "engagement_metrics", "activity_frozen")


def last_switch(now: datetime) -> date:
    """The local date of the zone's latest daylight-saving switch before `now`."""
    day = now.astimezone(TZ).date()
    while True:
        before = datetime(day.year, day.month, day.day, tzinfo=TZ).utcoffset()
        after = datetime(day.year, day.month, day.day, 23, tzinfo=TZ).utcoffset()
        if before != after:
            return day
        day -= timedelta(days=1)


def _zoned_app(make_app, servers, fold_mode: str):
    """An app whose analytics run in America/New_York, with an analyst's bearer token."""
    from console.cli import prepare_database
    from console.security import issue_token

    clean_state(servers)
    application = make_app(ANALYTICS_TIMEZONE=ZONE, RATELIMIT_ENABLED=False, ENGAGEMENT_FOLD=fold_mode)
    with application.app_context():
        prepare_database()
        from console.accounts import Admin
        from console.security import hash_password

        admin = Admin(email="analyst@test.example.com", name="analyst", roles=["analyst"],
                      password_hash=hash_password("correct-horse-battery-staple"))
        admin.save()
        token, _ = issue_token(admin)
        yield application, {"Authorization": f"Bearer {token}"}


@pytest.fixture
def zoned(make_app, servers):
    yield from _zoned_app(make_app, servers, "request")


@pytest.fixture
def zoned_worker(make_app, servers):
    """The same, with ENGAGEMENT_FOLD=worker: requests store events, the worker's fold counts them."""
    yield from _zoned_app(make_app, servers, "worker")


def _stored(database) -> list[dict]:
    rows = list(database.user_activities.find({}, {"user_id": 1, "event": 1, "feature": 1, "session_id": 1,
                                                   "timestamp": 1}))
    for row in rows:
        row["timestamp"] = row["timestamp"].replace(tzinfo=UTC)
    return rows


def _rounded(value):
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items() if key not in {"generated_at", "timezone"}}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def _answers(client, headers, window: tuple[date, date], cohorts: int) -> dict:
    start, end = window
    out = {}
    for interval in ("day", "week", "month"):
        out[f"metrics:{interval}"] = client.get(f"{BASE}/metrics?from={start}&to={end}&interval={interval}",
                                                headers=headers).get_json()
    for mode in ("first_time", "recurring"):
        for events in ("", "&start_event=signup&return_event=purchase"):
            out[f"retention:{mode}{events}"] = client.get(
                f"{BASE}/retention-analysis?period=week&cohorts={cohorts}&mode={mode}{events}",
                headers=headers).get_json()
    out["retention:month"] = client.get(f"{BASE}/retention-analysis?period=month&cohorts=3",
                                        headers=headers).get_json()
    for interval, periods in (("week", cohorts), ("day", 20)):
        out[f"lifecycle:{interval}"] = client.get(f"{BASE}/lifecycle?interval={interval}&periods={periods}",
                                                  headers=headers).get_json()
    for key, body in out.items():
        assert isinstance(body, dict) and "status" not in body, (key, body)
    return _rounded(out)


def _brute(events: list[dict], window: tuple[date, date], cohorts: int, today: date) -> dict:
    start, end = window
    out = {f"metrics:{interval}": _rounded(brute.metrics(events, start, end, interval, TZ))
           for interval in ("day", "week", "month")}
    for mode in ("first_time", "recurring"):
        for events_query, start_event, return_event in (("", None, None),
                                                        ("&start_event=signup&return_event=purchase", "signup",
                                                         "purchase")):
            out[f"retention:{mode}{events_query}"] = brute.retention(
                events, "week", cohorts, cohorts, start_event, return_event, mode, today, TZ)
    out["retention:month"] = brute.retention(events, "month", 3, 3, None, None, "first_time", today, TZ)
    for interval, periods in (("week", cohorts), ("day", 20)):
        out[f"lifecycle:{interval}"] = brute.lifecycle(events, interval, periods, today, TZ)
    return out


def _comparable(answers: dict) -> dict:
    """The endpoint answers in the brute force's shape."""
    out = {}
    for key, body in answers.items():
        if key.startswith("metrics"):
            out[key] = body
        elif key.startswith("retention"):
            out[key] = [(row["cohort"], row["size"], row["counts"]) for row in body["cohorts"]]
        else:
            out[key] = [{name: row[name] for name in ("period", "new", "returning", "resurrecting", "dormant")}
                        for row in body["series"]]
    return out


def _inactive(client, headers, days: int) -> tuple[int, list]:
    """Every page of inactive-users (two members a page): the total each page gives, and (user_id, last_seen)."""
    totals, items, cursor = set(), [], ""
    while True:
        body = client.get(f"{BASE}/inactive-users?days={days}&limit=2{cursor}", headers=headers).get_json()
        totals.add(body["total"])
        items += [(row["user_id"], row["last_seen"]) for row in body["items"]]
        if not body["next_cursor"]:
            return (totals.pop() if len(totals) == 1 else totals), items
        cursor = f"&cursor={body['next_cursor']}"


def _brute_inactive(events: list[dict], days: int, now: datetime) -> tuple[int, list]:
    last: dict[str, datetime] = {}
    for row in events:
        last[row["user_id"]] = max(last.get(row["user_id"], row["timestamp"]), row["timestamp"])
    cutoff = now - timedelta(days=days)
    rows = sorted((stamp, user) for user, stamp in last.items() if stamp <= cutoff)
    return len(rows), [(user, isoformat(stamp)) for stamp, user in rows]


def _assert_inactive(client, headers, events: list[dict]) -> None:
    """Inactive members from the day aggregates equal the brute force at the moment of the request."""
    for days in (1, 2, 4, 6, 9, 13, 18):
        before = utcnow()
        answer = _inactive(client, headers, days)
        assert answer in (_brute_inactive(events, days, before), _brute_inactive(events, days, utcnow())), days


USERS = ["ann", "bob", "cy", "dee", "eve", "fay"]
moment = st.tuples(st.integers(0, 23),  # day in the window
                   st.one_of(st.integers(0, 1439), st.sampled_from([0, 3, 29, 31, 1409, 1425, 1439])),
                   st.integers(0, 59))
event = st.fixed_dictionaries({
    "user": st.sampled_from(USERS), "at": moment,
    "event": st.sampled_from(["page_view", "page_view", "signup", "purchase"]),
    "feature": st.one_of(st.none(), st.sampled_from(["search", "blog", "chat"])),
    "session": st.one_of(st.none(), st.none(), st.sampled_from(["s1", "s2"])),
    "id": st.one_of(st.none(), st.integers(0, 40)),  # client event ids repeat: duplicates across batches
})
plan = st.tuples(st.lists(event, min_size=1, max_size=40), st.lists(st.integers(1, 12), min_size=1, max_size=6),
                 st.lists(st.sampled_from(["send", "replay", "half"]), min_size=6, max_size=6), st.randoms())


def _post_plan(application, plan, after_batch=lambda: None, ask=None):
    """Post the plan's events in its batches (shuffled; some replayed, some half-written first), calling
    `after_batch()` after each (and `ask(client, window, cohorts)`, which freezes answers about past days that
    later late batches must invalidate); returns the test client, the metrics window and the cohort count."""
    from console.blueprints.engagement import ingest
    from console.db import get_db

    database = get_db()
    for name in ENGAGEMENT_COLLECTIONS:
        database[name].delete_many({})
    items, sizes, fates, rng = plan
    now = utcnow()
    switch = last_switch(now)
    first_day = switch - timedelta(days=11)
    limit = now - timedelta(minutes=5)
    payloads = []
    for index, item in enumerate(items):
        day_index, minute, second = item["at"]
        local = first_day + timedelta(days=day_index)
        stamp = datetime(local.year, local.month, local.day, tzinfo=TZ).astimezone(UTC) + timedelta(
            minutes=minute, seconds=second)
        stamp = min(stamp, limit).replace(microsecond=0)
        payload = ev(item["user"], isoformat(stamp), event=item["event"])
        if item["feature"]:
            payload["feature"] = item["feature"]
        if item["session"]:
            payload["session_id"] = item["session"]
        payload["event_id"] = f"e{item['id']}" if item["id"] is not None else f"u{index}"
        payloads.append(payload)
    rng.shuffle(payloads)  # out of order: late events after later ones, days in any order
    client = application.test_client()
    batches, offset = [], 0
    for size in sizes:
        if offset < len(payloads):
            batches.append(payloads[offset: offset + size])
            offset += size
    if offset < len(payloads):
        batches.append(payloads[offset:])
    today = now.astimezone(TZ).date()
    window = (first_day + timedelta(days=2), min(first_day + timedelta(days=23), today))
    cohorts = min((today - first_day).days // 7 + 2, 104)
    for batch, fate in zip(batches, fates + ["send"] * len(batches), strict=False):
        if fate == "half":  # the first attempt stored its events and died before its rollups: the retry rolls up
            docs, _traits, _rejected = ingest.prepare(batch, utcnow())
            ingest.store_events(docs)
        response = client.post(TRACK, json={"events": batch}, headers={"X-Ingest-Key": INGEST_KEY})
        assert response.status_code == 202, response.get_data(as_text=True)
        if fate == "replay":  # the client did not hear the answer and sends the same batch again
            assert client.post(TRACK, json={"events": batch}, headers={"X-Ingest-Key": INGEST_KEY}).status_code == 202
        after_batch()
        if ask:
            ask(client, window, cohorts)
    return client, window, cohorts, today


def _assert_exact_and_rebuilt(client, headers, window, cohorts, today) -> None:
    """Every endpoint's answer equals the brute force over the stored events, and the same after folding every
    day's pending bitmaps and after a full rebuild."""
    from console.blueprints.engagement.aggregates import fold
    from console.blueprints.engagement.rollups import rebuild_rollups
    from console.db import get_db

    database = get_db()
    incremental = _answers(client, headers, window, cohorts)
    expected = _brute(_stored(database), window, cohorts, today)
    assert _comparable(incremental) == expected
    _assert_inactive(client, headers, _stored(database))
    for key in database.activity_days.distinct("_id"):  # pending member bitmaps folded into the base: the same
        assert fold(key)
    assert _answers(client, headers, window, cohorts) == incremental
    rebuild_rollups()
    assert _answers(client, headers, window, cohorts) == incremental
    _assert_inactive(client, headers, _stored(database))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=plan)
def test_incremental_equals_rebuild_equals_brute_force(zoned, plan):
    application, headers = zoned
    client, window, cohorts, today = _post_plan(
        application, plan, ask=lambda client, window, cohorts: _answers(client, headers, window, cohorts))
    _assert_exact_and_rebuilt(client, headers, window, cohorts, today)


@settings(max_examples=max(EXAMPLES // 2, 5), deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=plan, folds=st.lists(st.sampled_from(["wait", "fold", "die"]), min_size=8, max_size=8))
def test_worker_folds_equal_rebuild_equal_brute_force(zoned_worker, plan, folds):
    """ENGAGEMENT_FOLD=worker: after each batch the worker folds what waits, or waits, or dies between its writes
    and releasing what it folded (its lease runs out; the next fold takes the entries again). Once everything is
    folded, every answer is exact: nothing lost, nothing counted twice."""
    from console.blueprints.engagement import fold

    application, headers = zoned_worker
    fates = iter(folds + ["wait"] * 100)
    died = []

    def worker_turn():
        fate = next(fates)
        if fate == "fold":
            fold.fold_pending()
        elif fate == "die":
            entries = fold._claim(fold.MAX_EVENTS, utcnow())
            if entries:
                fold._fold(entries, utcnow())  # written, never released
                died.append(len(entries))

    client, window, cohorts, today = _post_plan(application, plan, worker_turn)
    fold.drain()
    assert fold.backlog()["batches"] == sum(died)  # what a dead worker held waits until its lease runs out
    fold.drain(now=utcnow() + fold.LEASE + timedelta(seconds=1))
    assert fold.backlog()["batches"] == 0
    _assert_exact_and_rebuilt(client, headers, window, cohorts, today)


# --- hand-built datasets ------------------------------------------------------------------------------------------


def test_days_follow_the_zone_across_the_clock_change(zoned):
    """New York, around 1 Nov 2026 (clocks go back at 02:00, the day has 25 hours): events are counted on their
    local day, a session across local midnight is one session, and a late event lands on its own day."""
    application, headers = zoned
    client = application.test_client()
    track(client, [
        ev("a", "2026-10-31T03:59:59Z"),  # 23:59:59 on 30 Oct in New York (EDT)
        ev("a", "2026-10-31T04:10:00Z"),  # 00:10 on 31 Oct: continues the session across midnight
        ev("b", "2026-11-01T04:30:00Z"),  # 00:30 EDT on 1 Nov
        ev("b", "2026-11-02T04:30:00Z"),  # 23:30 EST on 1 Nov (the 25-hour day)
        ev("c", "2026-11-02T05:30:00Z", feature="search"),  # 00:30 EST on 2 Nov
    ])
    track(client, [ev("c", "2026-10-30T12:00:00Z", feature="search")])  # late: two days back
    body = client.get(f"{BASE}/metrics?from=2026-10-30&to=2026-11-02", headers=headers).get_json()
    assert body["timezone"] == ZONE
    assert [(row["period"], row["active_users"], row["events"], row["sessions"]) for row in body["series"]] == [
        ("2026-10-30", 2, 2, 2), ("2026-10-31", 1, 1, 0), ("2026-11-01", 1, 2, 2), ("2026-11-02", 1, 1, 1)]
    assert body["avg_session_minutes"] == pytest.approx((600 / 5) / 60)  # a: 10 min after midnight; the rest 0
    assert {row["feature"]: row["users"] for row in body["feature_usage"]} == {"search": 1}
    week = client.get(f"{BASE}/metrics?from=2026-10-28&to=2026-11-02&interval=week", headers=headers).get_json()
    assert [(row["period"], row["active_users"], row.get("partial", False), row["feature_users"])
            for row in week["series"]] == [("2026-10-26", 3, True, {"search": 1}),
                                           ("2026-11-02", 1, True, {"search": 1})]


def test_stickiness_distribution_and_feature_adoption(client, api):
    reader = api("analyst")
    end = datetime(2026, 3, 31, 12, tzinfo=UTC)
    track(client, [ev("one", isoformat(end))]
          + [ev("three", isoformat(end - timedelta(days=n)), feature="chat") for n in (0, 2, 6)]
          + [ev("seven", isoformat(end - timedelta(days=n))) for n in range(7)]
          + [ev("old", isoformat(end - timedelta(days=n)), feature="chat") for n in (10, 20)])
    body = reader.get(f"{BASE}/metrics?from=2026-03-01&to=2026-03-31&interval=month").get_json()
    assert body["stickiness_distribution"]["7"] == [1, 0, 1, 0, 0, 0, 1]
    assert body["stickiness_distribution"]["30"] == [1, 1, 1, 0, 0, 0, 1] + [0] * 23
    assert body["series"][0]["feature_users"] == {"chat": 2} and "partial" not in body["series"][0]


def test_an_event_ingested_now_shows_on_the_next_request(client, api):
    """No cache stands between ingestion and the dashboards (retention, metrics and lifecycle)."""
    reader = api("analyst")
    now = utcnow()
    track(client, ev("early", isoformat(now - timedelta(days=8))))
    before = (reader.get(f"{BASE}/retention-analysis?period=week&cohorts=3&mode=recurring").get_json(),
              reader.get(f"{BASE}/metrics").get_json(), reader.get(f"{BASE}/lifecycle?interval=day").get_json())
    track(client, ev("late", isoformat(now - timedelta(minutes=1))))
    after = (reader.get(f"{BASE}/retention-analysis?period=week&cohorts=3&mode=recurring").get_json(),
             reader.get(f"{BASE}/metrics").get_json(), reader.get(f"{BASE}/lifecycle?interval=day").get_json())
    assert before[0]["cohorts"][-1]["size"] + 1 == after[0]["cohorts"][-1]["size"]
    assert (before[1]["dau"], after[1]["dau"]) == (0, 1)
    assert (before[2]["series"][-1]["new"], after[2]["series"][-1]["new"]) == (0, 1)


def test_members_without_activity_are_never_active(client, api):
    from console.members import Member

    reader = api("analyst")
    Member(user_id="quiet", email="quiet@example.com").save()
    track(client, ev("busy", isoformat(utcnow() - timedelta(days=40))))
    assert reader.get(f"{BASE}/lifecycle/quiet").get_json()["stage"] == "never_active"
    chart = reader.get(f"{BASE}/lifecycle?interval=week").get_json()
    assert chart["never_active"] == 1
    assert all(row["dormant"] == 0 for row in chart["series"][-3:])  # busy left long ago; quiet never came


def test_current_stage_uses_the_chart_interval(client, api):
    """Active last month, not yet this month: dormant by month (as the monthly chart counts them) even when more
    than CHURN_AFTER_DAYS ago."""
    reader = api("analyst")
    now = utcnow()
    last_month = (now.replace(day=1) - timedelta(days=1)).replace(day=1, hour=1)
    track(client, ev("m", isoformat(last_month)))
    assert reader.get(f"{BASE}/lifecycle/m?interval=month").get_json()["stage"] == "dormant"
    assert reader.get(f"{BASE}/lifecycle/m?interval=day").get_json()["stage"] == (
        "churned" if now - last_month > timedelta(days=30) else "dormant")


def test_forget_member_takes_them_out_of_every_aggregate(client, api):
    from console.blueprints.engagement.aggregates import forget_member
    from console.blueprints.engagement.rollups import rebuild_rollups
    from console.db import get_db

    reader = api("analyst")
    track(client, [ev("gone", "2026-03-30T10:00:00Z", feature="chat", session_id="g"),
                   ev("gone", "2026-03-31T10:00:00Z", event="purchase"),
                   ev("stay", "2026-03-31T11:00:00Z", feature="chat")])
    forget_member("gone")
    get_db().user_activities.delete_many({"user_id": "gone"})  # the erase deletes the raw events too
    after = reader.get(f"{BASE}/metrics?from=2026-03-30&to=2026-03-31").get_json()
    assert (after["active_users"], after["events"], after["sessions"]) == (1, 1, 1)
    assert after["feature_usage"] == [{"feature": "chat", "events": 1, "users": 1, "adoption": 1.0}]
    rebuild_rollups()
    assert reader.get(f"{BASE}/metrics?from=2026-03-30&to=2026-03-31").get_json() == after
    assert forget_member("gone") == 0


def test_rebuild_job_reports_progress_and_cli_enqueues_it(app, client, run_jobs):
    from console.queues import get_queue

    track(client, [ev("j", "2026-01-05T10:00:00Z"), ev("k", "2026-01-06T10:00:00Z")])
    runner = app.test_cli_runner()
    result = runner.invoke(args=["rebuild-analytics"])
    assert result.exit_code == 0 and "rebuild queued as job" in result.output
    job_id = result.output.split()[-1]
    run_jobs()
    job = get_queue("low").fetch_job(job_id)
    assert job.return_value()["events_replayed"] == 2 and job.meta["progress"] == 100
