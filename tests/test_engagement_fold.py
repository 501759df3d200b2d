"""ENGAGEMENT_FOLD=worker: track-activity stores and answers; the worker folds stored events into rollups, day
aggregates and members, exactly once, however many workers fold at the same time or die halfway."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

import pytest

from console.timeutil import isoformat, utcnow
from tests.conftest import clean_state
from tests.engagement_helpers import BASE, ev, track


@pytest.fixture
def app(make_app, servers):
    """This module's app runs the production default: the worker folds (conftest's `api`, `login`, `client` use it)."""
    from console.cli import prepare_database

    clean_state(servers)
    application = make_app(ENGAGEMENT_FOLD="worker", ENGAGEMENT_FOLD_INTERVAL=0.2)
    with application.app_context():
        prepare_database()
        yield application


@pytest.fixture
def reader(api):
    return api("analyst")


def _stored_per_member_day(database) -> dict:
    rows = database.user_activities.aggregate([{"$group": {"_id": {"u": "$user_id", "d": {"$dateTrunc": {
        "date": "$timestamp", "unit": "day", "timezone": "UTC"}}}, "n": {"$sum": 1}}}])
    return {(row["_id"]["u"], row["_id"]["d"].date()): row["n"] for row in rows}


def _rolled_per_member_day(database) -> dict:
    return {(row["user_id"], row["day"].date()): row["events"]
            for row in database.activity_rollups.find({}, {"user_id": 1, "day": 1, "events": 1})}


def _spread_batch(prefix: str, count: int, members: int = 30, days: int = 20) -> list[dict]:
    now = utcnow()
    return [ev(f"m{n % members}", isoformat(now - timedelta(days=n % days, minutes=n)), event_id=f"{prefix}-{n}",
               feature=("search", "blog", "chat")[n % 3]) for n in range(count)]


def test_a_batch_is_stored_at_once_and_counted_when_folded(app, reader):
    from console.blueprints.engagement import fold
    from console.db import get_db
    from console.members import Member

    client = app.test_client()
    now = utcnow()
    answer = track(client, [ev("ann", isoformat(now - timedelta(minutes=3))),
                            ev("bob", isoformat(now - timedelta(days=2)), feature="search")])
    assert answer["accepted"] == 2
    database = get_db()
    assert database.user_activities.count_documents({}) == 2  # stored: nothing is lost if the worker waits
    assert database.activity_rollups.count_documents({}) == 0
    assert reader.get(f"{BASE}/metrics").get_json()["dau"] == 0
    assert fold.backlog()["events"] == 2
    assert fold.fold_pending() == {"batches": 1, "events": 2}
    assert fold.backlog() == {"batches": 0, "events": 0, "oldest_seconds": 0.0}
    metrics = reader.get(f"{BASE}/metrics").get_json()
    assert (metrics["dau"], metrics["mau"]) == (1, 2)
    bob = Member.objects(user_id="bob").first()
    assert bob is not None and bob.first_seen is not None  # created on first sight, by the fold


def test_traits_land_with_the_request_not_the_fold(app):
    from console.members import Member

    track(app.test_client(), ev("cy", isoformat(utcnow()), traits={"email": "cy@example.org", "name": "Cy"}))
    member = Member.objects(user_id="cy").first()
    assert (member.email, member.name) == ("cy@example.org", "Cy")


def test_a_retry_of_a_half_written_batch_is_folded_once(app):
    """The first attempt stored its events and died before recording them for the fold; the client retries."""
    from console.blueprints.engagement import fold, ingest
    from console.db import get_db

    batch = _spread_batch("half", 40)
    docs, _traits, _rejected = ingest.prepare(batch, utcnow())
    ingest.store_events(docs)
    answer = track(app.test_client(), batch)
    assert (answer["accepted"], answer["duplicates"]) == (0, 40)
    fold.drain()
    database = get_db()
    assert _rolled_per_member_day(database) == _stored_per_member_day(database)
    assert sum(_rolled_per_member_day(database).values()) == 40


def test_two_workers_folding_at_once_count_every_event_once(app):
    from console.blueprints.engagement import fold
    from console.db import get_db

    client = app.test_client()
    for round_no in range(12):
        track(client, _spread_batch(f"r{round_no}", 50))
    folded, errors = [], []

    def worker():
        with app.app_context():
            try:
                while True:
                    done = fold.fold_pending(max_events=100)  # small folds, so the two interleave
                    if not done["batches"]:
                        return
                    folded.append(done["events"])
            except Exception as error:  # reported below
                errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert sum(folded) == 600 and len(folded) >= 6
    database = get_db()
    assert _rolled_per_member_day(database) == _stored_per_member_day(database)


def test_a_worker_that_died_mid_fold_is_taken_over_after_its_lease(app, reader):
    from console.blueprints.engagement import fold
    from console.db import get_db

    track(app.test_client(), _spread_batch("dead", 60))
    entries = fold._claim(fold.MAX_EVENTS, utcnow())
    fold._fold(entries, utcnow())  # wrote rollups and aggregates, then died before releasing the entry
    assert fold.fold_pending() == {"batches": 0, "events": 0}  # still leased: nobody folds it twice at once
    later = utcnow() + fold.LEASE + timedelta(seconds=1)
    assert fold.fold_pending(now=later) == {"batches": 1, "events": 60}
    database = get_db()
    assert _rolled_per_member_day(database) == _stored_per_member_day(database)
    assert sum(row["events"] for row in database.activity_days.find()) == 60


def test_the_worker_startup_hook_folds_on_its_own(app, reader):
    from console.blueprints.engagement import fold

    track(app.test_client(), [ev("dee", isoformat(utcnow()))])
    stop = fold.start_folding(app)  # what worker.py does at start-up (a daemon thread)
    try:
        deadline = time.monotonic() + 20
        while fold.backlog()["batches"] and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
    assert fold.backlog()["batches"] == 0
    assert reader.get(f"{BASE}/metrics").get_json()["dau"] == 1


def test_health_says_when_activity_waits_too_long(app, api, login):
    from console.blueprints.engagement import fold
    from console.blueprints.engagement.ingest import TrackEvent, build_document, store_events

    client = api("admin")
    body = client.get("/api/phase14/hardening/health-comprehensive").get_json()
    assert body["checks"]["activity_folding"]["status"] == "UP"
    old = utcnow() - timedelta(minutes=5)
    docs = store_events([build_document(TrackEvent(user_id="eve", event="page_view"), old)])
    fold.defer(docs, old)
    check = client.get("/api/phase14/hardening/health-comprehensive").get_json()["checks"]["activity_folding"]
    assert check["status"] == "DEGRADED"
    assert (check["waiting_batches"], check["waiting_events"]) == (1, 1)
    assert check["oldest_waiting_s"] >= 300 and "worker" in check["detail"]
    page = login("admin", email="page-admin@test.example.com").get("/system/health").get_data(as_text=True)
    assert "Activity folding" in page and "1 events in 1 batches waiting" in page


def test_a_full_rebuild_drops_what_waits_and_counts_it_once(app, reader):
    from console.blueprints.engagement import fold
    from console.blueprints.engagement.rollups import rebuild_rollups
    from console.db import get_db

    track(app.test_client(), _spread_batch("rb", 45))
    assert fold.backlog()["events"] == 45
    rebuild_rollups()
    assert fold.backlog()["batches"] == 0 and fold.drain() == {"batches": 0, "events": 0}
    database = get_db()
    assert _rolled_per_member_day(database) == _stored_per_member_day(database)


def test_an_erased_members_waiting_events_are_not_folded_back(app, api):
    from console.blueprints.engagement import fold
    from console.db import get_db
    from console.members import Member

    client = app.test_client()
    track(client, [ev("gone", isoformat(utcnow()), traits={"email": "gone@example.org"}),
                   ev("stays", isoformat(utcnow()))])
    admin = api("super_admin")
    assert admin.delete(f"{BASE}/user/gone").status_code == 200
    fold.drain()
    database = get_db()
    assert database.activity_rollups.count_documents({"user_id": "gone"}) == 0
    assert Member.objects(user_id="gone").first() is None
    assert database.activity_rollups.count_documents({"user_id": "stays"}) == 1


def test_an_unknown_fold_mode_stops_the_start(make_app):
    from console.config import ConfigError

    with pytest.raises(ConfigError, match="ENGAGEMENT_FOLD"):
        make_app(ENGAGEMENT_FOLD="sometimes")


@pytest.mark.parametrize("mode", ["worker", "request"])
def test_events_posted_during_a_rebuild_are_counted_once(make_app, app, mode):
    """Ingestion goes on while a rebuild runs: nothing is folded into the rollups being rewritten; what arrived
    meanwhile is folded after it (in both modes), and the totals equal the stored events."""
    from console.blueprints.engagement import fold
    from console.blueprints.engagement.rollups import rebuild_rollups
    from console.db import get_db

    live = make_app(ENGAGEMENT_FOLD=mode)
    client = live.test_client()
    with live.app_context():
        track(client, _spread_batch("before", 80))
        fold.drain()
        during = []

        def mid_rebuild(percent: float) -> None:
            if not during:
                during.append(track(client, _spread_batch("during", 70, members=35)))
                assert fold.fold_pending() == {"batches": 0, "events": 0}  # paused: the rollups are rewritten
                assert fold.backlog()["events"] == 70  # the request deferred its batch, whatever the mode

        replayed = rebuild_rollups(progress=mid_rebuild)
        assert replayed == 80 and during[0]["accepted"] == 70
        assert not fold.paused() and fold.backlog()["batches"] == 0
        database = get_db()
        assert _rolled_per_member_day(database) == _stored_per_member_day(database)
        assert sum(row["events"] for row in database.activity_days.find()) == 150


def test_the_overview_says_when_its_numbers_trail_what_was_received(app, login):
    from console.blueprints.engagement import fold
    from console.blueprints.engagement.ingest import TrackEvent, build_document, store_events

    page = login("analyst")
    track(app.test_client(), [ev("fay", isoformat(utcnow()))])
    assert 'id="eng-waiting"' not in page.get("/engagement").get_data(as_text=True)  # just arrived: no notice
    old = utcnow() - timedelta(seconds=40)
    fold.defer(store_events([build_document(TrackEvent(user_id="gil", event="page_view"), old)]), old)
    html = page.get("/engagement").get_data(as_text=True)
    assert 'id="eng-waiting"' in html
    assert re.search(r"2 events received in the last (4\d) s are still being counted", html)  # 40 s and the test's own
    fold.drain()
    assert 'id="eng-waiting"' not in page.get("/engagement").get_data(as_text=True)
