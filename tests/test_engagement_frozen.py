"""Frozen answers about past days: live traffic invalidates none, a late event exactly those that depend on its
day, an answer computed from data a late write overtook is never used, and a warm request reads no past day."""

from __future__ import annotations

from datetime import timedelta

import pytest

from console.timeutil import isoformat, utcnow
from tests.engagement_helpers import BASE, ev, track


@pytest.fixture
def reader(api):
    return api("analyst")


def _frozen(database) -> dict:
    return {doc["_id"]: doc["last"] for doc in database.activity_frozen.find({}, {"last": 1})}


def _history(client, members: int = 6, days: int = 20) -> None:
    now = utcnow()
    track(client, [ev(f"m{n}", isoformat(now - timedelta(days=day, hours=1)), feature="search")
                   for n in range(members) for day in range(n % 3, days, 1 + n % 4)])


@pytest.fixture
def day_reads(app, monkeypatch):
    """The day documents (labels, YYYY-MM-DD) that requests read from the day aggregates."""
    from console.blueprints.engagement import aggregates, frozen

    days: list[str] = []
    real = aggregates.read_days

    def recording(*args, **kwargs):
        found = real(*args, **kwargs)
        days.extend(f"{label:%Y-%m-%d}" for label in found)
        return found

    for module in (aggregates, frozen):
        monkeypatch.setattr(module, "read_days", recording)
    return days


def test_a_warm_request_reads_only_todays_day_documents(app, client, reader, day_reads):
    from console.blueprints.engagement.periods import as_day

    _history(client)
    for path in ("/metrics", "/metrics?interval=week", "/lifecycle?interval=week", "/retention-analysis",
                 "/inactive-users?days=7"):
        first = reader.get(BASE + path)
        assert first.status_code == 200
        day_reads.clear()
        again = reader.get(BASE + path)
        assert again.status_code == 200
        assert {key: value for key, value in again.get_json().items() if key != "generated_at"} == \
            {key: value for key, value in first.get_json().items() if key != "generated_at"}
        today = f"{as_day(utcnow()):%Y-%m-%d}"
        assert all(day >= today for day in day_reads), (path, sorted(day_reads))


def test_todays_events_invalidate_nothing_and_count_at_once(app, client, reader):
    from console.db import get_db

    _history(client)
    before = reader.get(BASE + "/metrics").get_json()
    kept = _frozen(get_db())
    assert kept
    track(client, [ev("newcomer", isoformat(utcnow() - timedelta(minutes=1)), feature="chat")])
    after = reader.get(BASE + "/metrics").get_json()
    assert set(kept) <= set(_frozen(get_db()))  # nothing was dropped
    assert after["dau"] == before["dau"] + 1
    assert after["series"][-1]["new_users"] == before["series"][-1]["new_users"] + 1
    assert after["mau"] == before["mau"] + 1
    assert {row["feature"]: row["users"] for row in after["feature_usage"]}["chat"] == 1


def test_a_late_event_drops_the_answers_that_depend_on_its_day_only(app, client, reader):
    from console.blueprints.engagement.periods import as_day
    from console.db import get_db

    _history(client)
    before = reader.get(BASE + "/metrics").get_json()
    kept = _frozen(get_db())
    late_day = as_day(utcnow()) - timedelta(days=5)
    track(client, [ev("latecomer", isoformat(late_day + timedelta(hours=12)))])
    left = _frozen(get_db())
    assert left and all(last < late_day for last in left.values())
    assert set(left) == {key for key, last in kept.items() if last < late_day}
    after = reader.get(BASE + "/metrics").get_json()
    day = {row["period"]: row for row in after["series"]}[f"{late_day:%Y-%m-%d}"]
    was = {row["period"]: row for row in before["series"]}[f"{late_day:%Y-%m-%d}"]
    assert day["active_users"] == was["active_users"] + 1 and day["new_users"] == was["new_users"] + 1
    assert after["mau"] == before["mau"] + 1


def test_an_answer_computed_before_a_late_write_is_not_used_even_if_stored_after_it(app, client):
    from console.blueprints.engagement import frozen
    from console.blueprints.engagement.periods import as_day

    _history(client)
    yesterday = as_day(utcnow()) - timedelta(days=1)
    slow = frozen.Reader()  # reads the state, then (say) the day documents, then is overtaken:
    track(client, [ev("latecomer", isoformat(yesterday + timedelta(hours=3)))])  # the late write and its drop
    key = slow.key("test", "stale")
    assert slow.kept({key: yesterday}, lambda missing: {key: "computed before the late write"})[key]
    fresh = frozen.Reader()
    assert fresh.kept({key: yesterday}, lambda missing: {key: "recomputed"})[key] == "recomputed"
    # an answer about days before the late one stays good
    older = slow.key("test", "older")
    slow.kept({older: yesterday - timedelta(days=2)}, lambda missing: {older: "still true"})
    assert frozen.Reader().kept({older: yesterday - timedelta(days=2)}, lambda missing: {older: "no"})[older] == \
        "still true"


def test_answers_older_than_the_kept_log_or_from_a_wiped_state_are_recomputed(app, monkeypatch):
    from console.blueprints.engagement import frozen
    from console.blueprints.engagement.periods import as_day
    from console.db import get_db

    monkeypatch.setattr(frozen, "LOG_KEEP", 3)
    far_past = as_day(utcnow()) - timedelta(days=400)
    first = frozen.Reader()
    key = first.key("test", "log")
    first.kept({key: far_past}, lambda missing: {key: "old"})
    for _ in range(2):  # invalidations of later days: the answer still holds
        frozen.invalidate(far_past + timedelta(days=10))
    assert frozen.Reader().kept({key: far_past}, lambda missing: {key: "new"})[key] == "old"
    for _ in range(3):  # now the log no longer reaches back to the answer's epoch: unknown days, recompute
        frozen.invalidate(far_past + timedelta(days=10))
    assert frozen.Reader().kept({key: far_past}, lambda missing: {key: "new"})[key] == "new"
    get_db().counters.delete_one(frozen.STATE)  # a wiped state starts a new generation
    assert frozen.Reader().kept({key: far_past}, lambda missing: {key: "newer"})[key] == "newer"


def test_rebuild_and_another_zone_never_reuse_answers(app, client, reader, make_app):
    from console.blueprints.engagement.ingest import rebuild_rollups
    from console.db import get_db

    _history(client)
    before = reader.get(BASE + "/metrics").get_json()
    assert _frozen(get_db())
    rebuild_rollups()
    assert not _frozen(get_db())
    assert reader.get(BASE + "/metrics").get_json()["series"] == before["series"]
    zoned = make_app(ANALYTICS_TIMEZONE="Pacific/Kiritimati")  # UTC+14: other days
    with zoned.app_context():
        from console.blueprints.engagement.metrics import metrics

        answer = metrics()
    assert answer["timezone"] == "Pacific/Kiritimati"
    assert all(key.startswith(("UTC|", "Pacific/Kiritimati|")) for key in _frozen(get_db()))


def test_the_worker_warms_the_default_answers(app, client, reader, day_reads):
    from console.blueprints.engagement.jobs import warm_answers
    from console.blueprints.engagement.periods import as_day

    _history(client)
    warm_answers()
    day_reads.clear()
    assert reader.get(BASE + "/metrics").status_code == 200
    assert reader.get("/engagement").status_code in (200, 302)
    today = f"{as_day(utcnow()):%Y-%m-%d}"
    assert all(day >= today for day in day_reads)
