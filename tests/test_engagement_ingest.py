"""track-activity: auth, validation per item, dedupe, clamping, rollups and members."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from pymongo.errors import OperationFailure

from console.blueprints.engagement.ingest import unpack_applied, unpack_seconds, unpack_sessions
from console.blueprints.engagement.models import UserActivity
from console.members import Member
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


def test_names_with_nul_bytes_are_stored_and_pre_epoch_times_rejected(client):
    """Found by the API fuzzer: a NUL in an event name used to reach MongoDB as a field name (500)."""
    body = track(client, [ev("u", "2026-01-05T10:00:00Z", event="odd\x00name", feature="f\x00"),
                          ev("u", "0001-01-01T00:00:00+00:01")])
    assert body["accepted"] == 1
    assert body["rejected"][0]["index"] == 1 and "1970" in str(body["rejected"][0]["errors"])
    assert rollup("u", "2026-01-05")["names"] == {"odd%00name": 1}


def test_unknown_member_fields_are_kept(client):
    Member._get_collection().insert_one({"user_id": "keep", "email": "k@example.org", "plan": "gold",
                                         "nested": {"a": 1}})
    track(client, ev("keep", "2026-01-05T10:00:00Z", traits={"name": "Kept"}))
    member = Member._get_collection().find_one({"user_id": "keep"})
    assert member["plan"] == "gold" and member["nested"] == {"a": 1} and member["name"] == "Kept"
    assert member["email"] == "k@example.org"


def _rollups() -> list[dict]:
    from console.blueprints.engagement.models import ActivityRollup

    fields = {"_id": 0, "user_id": 1, "day": 1, "events": 1, "sessions": 1, "session_seconds": 1, "features": 1,
              "names": 1, "ts": 1, "sid": 1, "first_at": 1, "last_at": 1}
    rows = list(ActivityRollup._get_collection().find({}, fields).sort([("user_id", 1), ("day", 1)]))
    for row in rows:
        row["ts"] = unpack_seconds(row.get("ts"))
        row["sid"], row["features"] = unpack_sessions(row.get("sid")), row.get("features") or {}
    return rows


def test_rebuild_matches_incremental_rollups(client):
    from console.blueprints.engagement.ingest import rebuild_rollups

    stamps = ["2026-01-05T23:40:00Z", "2026-01-06T00:05:00Z", "2026-01-05T08:00:00Z", "2026-01-06T09:00:00Z",
              "2026-01-05T08:20:00Z", "2026-01-07T00:01:00Z"]
    for index, stamp in enumerate(stamps):  # one request each, out of order
        track(client, [ev("a", stamp, feature="f.x"), ev("b", stamp, session_id=f"s{index // 2}")])
    incremental = _rollups()
    assert rebuild_rollups() == 12
    rebuilt = _rollups()
    for a, b in zip(rebuilt, incremental, strict=True):
        assert a == b, {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
    assert rebuild_rollups(start=datetime.fromisoformat("2026-01-06T00:00:00+00:00")) == 6
    assert _rollups() == incremental


@pytest.fixture
def fail_command(app):
    """Arm the test server's `failCommand` failpoint (the server itself refuses), disarmed after the test."""
    from console.blueprints.engagement.models import ActivityRollup

    with app.app_context():
        admin = ActivityRollup._get_collection().database.client.admin

        def arm(commands: list[str], code: int, skip: int = 0) -> None:
            admin.command("configureFailPoint", "failCommand", mode={"skip": skip, "times": 1},
                          data={"failCommands": commands, "errorCode": code})

        yield arm
        admin.command("configureFailPoint", "failCommand", mode="off")


def test_a_server_without_transactions_gets_version_checked_writes(client, fail_command, monkeypatch):
    """A MongoDB without replication refuses transactions (IllegalOperation, 20): the rollups are written
    without one, exactly, and later requests do not ask for one again."""
    from console.blueprints.engagement import ingest

    monkeypatch.setitem(ingest._transactions, "supported", True)
    track(client, ev("t", "2026-01-05T10:00:00Z"))
    # the transaction's first command is its read of the member-days (the find before it: is a rebuild running?)
    fail_command(["find"], 20, skip=1)
    track(client, [ev("t", "2026-01-05T10:10:00Z"), ev("t", "2026-01-05T12:00:00Z")])
    assert ingest._transactions["supported"] is False
    assert rollup("t", "2026-01-05")["events"] == 3 and rollup("t", "2026-01-05")["sessions"] == 2
    fail_command(["commitTransaction"], 20)  # consumed by the first transaction anyone commits
    track(client, ev("t", "2026-01-05T12:05:00Z"))
    day = rollup("t", "2026-01-05")
    assert day["events"] == 4 and day["sessions"] == 2 and day["v"] == 3
    collection = ingest.ActivityRollup._get_collection()
    # Still armed: the request above committed no transaction.
    with (pytest.raises(OperationFailure) as refused, collection.database.client.start_session() as probe,
          probe.start_transaction()):
        collection.find_one({}, session=probe)
    assert refused.value.code == 20


def test_a_write_conflict_in_the_transaction_is_redone_without_it(client, fail_command, monkeypatch):
    """The server voids the transaction (WriteConflict, 112, as when another request wrote the day first):
    nothing of it is kept, and the version-checked writes add the events once."""
    from console.blueprints.engagement import ingest

    monkeypatch.setitem(ingest._transactions, "supported", True)
    track(client, ev("c", "2026-01-05T10:00:00Z"))
    fail_command(["update"], 112)
    track(client, [ev("c", "2026-01-05T10:10:00Z", session_id="s"), ev("c", "2026-01-05T18:00:00Z")])
    day = rollup("c", "2026-01-05")
    assert day["events"] == 3 and day["sessions"] == 3 and day["v"] == 2
    assert unpack_seconds(day["ts"]) == [36000, 64800] and len(unpack_applied(day["applied"])) == 2
    assert ingest._transactions["supported"] is True


@pytest.mark.parametrize("transactions", [True, False], ids=["transaction", "version-checked"])
def test_concurrent_requests_on_one_member_day_lose_nothing(app, client, monkeypatch, transactions):
    """Two requests read the same day, then both write it: the second write collides (a write conflict in the
    transaction, or a replace over a version that moved on), that member-day is redone from a fresh read, and
    the day holds both requests' events. Without transactions (a standalone MongoDB) the same holds."""
    from console.blueprints.engagement import ingest, rollups
    from console.blueprints.engagement.ingest import rebuild_rollups

    monkeypatch.setitem(ingest._transactions, "supported", transactions)
    track(client, ev("r", "2026-01-05T10:00:00Z"))
    barrier, reads = threading.Barrier(2, timeout=10), []
    real_find_in = rollups.find_in

    def reads_in_step(collection, *args, **kwargs):
        rows = list(real_find_in(collection, *args, **kwargs))
        if collection.name == "activity_rollups":
            reads.append(collection.name)
            if len(reads) <= 2:
                barrier.wait()  # both requests have read before either writes
        return rows

    monkeypatch.setattr(rollups, "find_in", reads_in_step)

    def post(stamps, session_id):
        with app.test_client() as own:
            track(own, [ev("r", stamp, session_id=session_id) for stamp in stamps])

    threads = [threading.Thread(target=post, args=(["2026-01-05T12:00:00Z", "2026-01-05T12:10:00Z"], None)),
               threading.Thread(target=post, args=(["2026-01-05T11:00:00Z", "2026-01-05T18:00:00Z"], "s1"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    monkeypatch.undo()
    # Two reads in step; the request that lost finds out, reads afresh and writes again (in the transaction's
    # case, the conflict voids its first write, so finding out costs no read). On a loaded machine the server may
    # void both transactions, and both requests then redo their days version-checked: more reads, same answer.
    assert len(reads) >= (3 if transactions else 4)
    day = rollup("r", "2026-01-05")
    assert day["events"] == 5 and unpack_seconds(day["ts"]) == [36000, 43200, 43800]
    assert day["sessions"] == 3  # 10:00, 12:00-12:10 (gap sessions) and s1
    incremental = _rollups()
    rebuild_rollups()
    assert _rollups() == incremental


def test_jobs_rebuild_and_warm(client, app, run_jobs):
    from console.queues import get_queue

    track(client, [ev("j", "2026-01-05T10:00:00Z"), ev("j", "2026-01-06T10:00:00Z")])
    rebuild = get_queue("low").enqueue("console.blueprints.engagement.jobs.rebuild_rollups", "2026-01-06", "2026-01-06")
    warm = get_queue("low").enqueue("console.blueprints.engagement.jobs.warm_caches")
    run_jobs()
    rebuild.refresh()
    assert rebuild.return_value() == {"events_replayed": 1, "start": "2026-01-06", "end": "2026-01-06"}
    assert rebuild.meta["progress"] == 100
    assert warm.return_value() == {"mau": 0}  # the overview as of today: January's member is not monthly active
    assert rollup("j", "2026-01-06")["events"] == 1 and rollup("j", "2026-01-05")["events"] == 1


def test_body_limits(client):
    headers = {"X-Ingest-Key": "test-ingest-key"}
    big = [ev(f"b{n % 50}", "2026-01-05T10:00:00Z", properties={"blob": "x" * 2000}) for n in range(1000)]
    body = track(client, big)  # ~2 MB: over the console's 1 MiB default, within the ingest limit
    assert body["accepted"] == 1000
    huge = client.post(TRACK, data=b'{"events": [' + b'"' + b"x" * (9 * 1024 * 1024) + b'"]}',
                       headers={**headers, "Content-Type": "application/json"})
    assert huge.status_code == 413 and huge.mimetype == "application/problem+json"


def test_init_db_migrates_rollups_from_before_member_day_ids(client):
    """A database written by the earlier layout (ObjectId ids, unique user_id+day index) is rebuilt once."""
    from console.blueprints.engagement.models import ActivityRollup
    from console.cli import prepare_database

    track(client, [ev("m", "2026-01-05T10:00:00Z"), ev("m", "2026-01-06T10:00:00Z")])
    collection = ActivityRollup._get_collection()
    old = [{k: v for k, v in row.items() if k != "_id"} for row in collection.find()]
    collection.delete_many({})
    collection.insert_many(old)  # ObjectId ids, as the earlier layout had
    collection.create_index([("user_id", 1), ("day", 1)], unique=True)
    prepare_database()
    assert "user_id_1_day_1" not in collection.index_information()
    assert sorted(row["_id"] for row in collection.find()) == ["m|2026-01-05", "m|2026-01-06"]
    track(client, ev("m", "2026-01-06T11:00:00Z"))
    assert rollup("m", "2026-01-06")["events"] == 2
    prepare_database()  # idempotent
    assert collection.count_documents({}) == 2


def test_rollups_with_unpacked_sessions_and_batches_keep_counting(client):
    """Rollups written before session spans and applied batches were packed (as mappings) are read as they are,
    and the next write to the day packs them, with nothing lost and a retried batch still recognised."""
    from console.blueprints.engagement.ingest import session_key
    from console.blueprints.engagement.models import ActivityRollup

    batch = [ev("p", "2026-01-05T10:00:00Z", event_id="p-1", session_id="s1"),
             ev("p", "2026-01-05T23:50:00Z", event_id="p-2")]
    track(client, batch)
    collection = ActivityRollup._get_collection()
    day = rollup("p", "2026-01-05")
    legacy_applied = unpack_applied(day["applied"])  # {batch: when}, as the mapping was stored
    collection.update_one({"_id": day["_id"]}, {"$set": {"sid": unpack_sessions(day["sid"]),
                                                        "applied": legacy_applied}})
    assert isinstance(rollup("p", "2026-01-05")["sid"], dict)
    assert track(client, batch) == {"accepted": 0, "duplicates": 2, "rejected": [], "clamped": 0}
    track(client, [ev("p", "2026-01-05T10:20:00Z", session_id="s1"), ev("p", "2026-01-06T00:10:00Z")])
    day, after = rollup("p", "2026-01-05"), rollup("p", "2026-01-06")
    assert day["events"] == 3 and day["sessions"] == 2 and isinstance(day["sid"], bytes)
    assert unpack_sessions(day["sid"]) == {session_key("s1"): {"a": 36000, "b": 37200}}
    assert len(unpack_applied(day["applied"])) == 2
    assert after["sessions"] == 0  # 00:10 continues the 23:50 session of the day before


def _events_of_one_batch():
    return [ev("w", f"2026-01-05T10:{minute:02d}:00Z", event_id=f"w-{minute}") for minute in range(0, 50, 5)]


def test_a_retry_rolls_up_what_a_failed_attempt_stored(client, monkeypatch):
    """The database goes away after the events are stored and before the rollup: the client gets a
    retryable 503, and its retry (all duplicates now) still rolls the stored events up, once."""
    from pymongo.errors import AutoReconnect

    from console.blueprints.engagement import ingest

    real_apply = ingest.apply_rollups

    def cut_off(*args, **kwargs):
        raise AutoReconnect("connection closed")

    monkeypatch.setattr(ingest, "apply_rollups", cut_off)
    first = client.post(TRACK, json={"events": _events_of_one_batch()}, headers={"X-Ingest-Key": "test-ingest-key"})
    assert first.status_code == 503 and first.mimetype == "application/problem+json"
    assert UserActivity.objects(user_id="w").count() == 10 and rollup("w", "2026-01-05") is None
    monkeypatch.setattr(ingest, "apply_rollups", real_apply)
    for _retry in range(2):
        assert track(client, _events_of_one_batch()) == {"accepted": 0, "duplicates": 10, "rejected": [],
                                                         "clamped": 0}
        day = rollup("w", "2026-01-05")
        assert day["events"] == 10 and day["sessions"] == 1 and len(unpack_applied(day["applied"])) == 1


def test_a_retry_overtaking_its_slow_first_attempt_adds_nothing_twice(app, client, monkeypatch):
    """The first attempt is slow (its client timed out and retried): the retry rolls the events up first,
    and the first attempt, arriving later, sees its batch already applied."""
    from console.blueprints.engagement import ingest

    real_apply, retried = ingest.apply_rollups, threading.Event()

    def slow_first(docs, **kwargs):
        if not retried.is_set() and threading.current_thread() is not threading.main_thread():
            assert retried.wait(10)
        return real_apply(docs, **kwargs)

    monkeypatch.setattr(ingest, "apply_rollups", slow_first)
    results = []

    def first_attempt():
        with app.test_client() as own:
            results.append(track(own, _events_of_one_batch()))

    thread = threading.Thread(target=first_attempt)
    thread.start()
    while UserActivity.objects(user_id="w").count() < 10:  # the first attempt has stored its events
        threading.Event().wait(0.01)
    assert track(client, _events_of_one_batch())["duplicates"] == 10
    retried.set()
    thread.join(timeout=30)
    assert results[0]["accepted"] == 10
    assert rollup("w", "2026-01-05")["events"] == 10
