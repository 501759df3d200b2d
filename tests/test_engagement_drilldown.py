"""Drill-down: the members behind a retention cell and a lifecycle bar segment, paged."""

from __future__ import annotations

import pytest

from tests.engagement_helpers import BASE, ev, track


@pytest.fixture
def reader(api):
    return api("analyst")


@pytest.fixture
def weeks(client):
    """a: Jan 5, Jan 12 · b: Jan 6 · c: Dec 29, Jan 7, Jan 13 (ISO weeks start Monday: Dec 29, Jan 5, Jan 12)."""
    track(client, [
        ev("a", "2026-01-05T10:00:00Z", traits={"email": "a@example.org"}), ev("a", "2026-01-12T10:00:00Z"),
        ev("b", "2026-01-06T10:00:00Z"),
        ev("c", "2025-12-29T10:00:00Z"), ev("c", "2026-01-07T10:00:00Z"), ev("c", "2026-01-13T10:00:00Z"),
    ])


def ids(body):
    return [item["user_id"] for item in body["items"]]


def test_cohort_members_first_time_and_recurring(reader, weeks):
    first = reader.get(f"{BASE}/cohort-members?period=week&mode=first_time&cohort=2026-01-05&offset=0").get_json()
    assert ids(first) == ["a", "b"] and first["total"] == 2 and first["next_cursor"] is None
    assert first["items"][0]["email"] == "a@example.org" and first["items"][0]["last_seen"] == "2026-01-12T10:00:00Z"
    back = reader.get(f"{BASE}/cohort-members?period=week&mode=first_time&cohort=2026-01-05&offset=1").get_json()
    assert ids(back) == ["a"]
    recurring = reader.get(f"{BASE}/cohort-members?period=week&mode=recurring&cohort=2026-01-05&offset=1").get_json()
    assert ids(recurring) == ["a", "c"]


def test_lifecycle_members_by_stage(reader, weeks):
    def stage(period, name):
        return ids(reader.get(f"{BASE}/lifecycle-members?interval=week&period={period}&stage={name}").get_json())

    assert stage("2026-01-12", "returning") == ["a", "c"] and stage("2026-01-12", "dormant") == ["b"]
    assert stage("2026-01-05", "new") == ["a", "b"] and stage("2026-01-05", "returning") == ["c"]
    assert stage("2026-01-05", "resurrecting") == []


def test_paging_and_bad_queries(reader, weeks):
    url = f"{BASE}/cohort-members?period=week&mode=recurring&cohort=2026-01-05"
    first = reader.get(f"{url}&limit=2").get_json()
    rest = reader.get(f"{url}&limit=2&cursor={first['next_cursor']}").get_json()
    assert ids(first) == ["a", "b"] and ids(rest) == ["c"] and rest["next_cursor"] is None and rest["total"] == 3
    for query in ("cohort-members?cohort=nope", "cohort-members?cohort=2026-01-05&offset=-1",
                  "cohort-members", "lifecycle-members?period=2026-01-05&stage=asleep",
                  "cohort-members?cohort=2026-01-05&cursor=garbage"):
        assert reader.get(f"{BASE}/{query}").status_code == 422, query
    assert reader.get(f"{BASE}/lifecycle-members?period=2026-01-05&stage=new").status_code == 200
