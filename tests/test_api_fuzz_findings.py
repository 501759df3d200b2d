"""Regression tests for what the API fuzzer found (tests/test_api_fuzz.py), one per finding."""

from __future__ import annotations

import pytest

from console.blueprints.engagement.models import UserActivity
from console.members import Member
from console.validation import OPERATOR_KEY, TOO_BIG
from tests.conftest import INGEST_KEY
from tests.engagement_helpers import TRACK, ev, track


def test_an_empty_trait_name_rejects_its_event_and_writes_nothing(client):
    """Was a 500 after the events were stored: `traits.` is no MongoDB update path, so the member upsert failed
    half-way through the request."""
    body = track(client, [ev("u1", "2026-01-05T10:00:00Z", event_id="good"),
                          ev("u2", "2026-01-05T10:00:00Z", event_id="bad", traits={"": 1, "plan": "pro"})])
    assert body["accepted"] == 1 and [item["index"] for item in body["rejected"]] == [1]
    assert body["rejected"][0]["errors"][0]["field"] == "traits."
    assert UserActivity.objects.distinct("event_id") == ["good"]
    assert Member._get_collection().find_one({"user_id": "u2"}) is None

    single = client.post(TRACK, json=ev("u3", "2026-01-05T10:00:00Z", properties={"": 1}),
                         headers={"X-Ingest-Key": INGEST_KEY})
    assert single.status_code == 422 and single.mimetype == "application/problem+json"
    assert UserActivity.objects(user_id="u3").count() == 0


def test_empty_keys_in_any_json_body_are_422(api):
    client = api("super_admin")
    response = client.post("/api/phase14/communication/templates", json={
        "name": "n", "subject": "s", "html_body": "<p>x</p>", "category": "news", "sample_data": {"": "x"}})
    assert response.status_code == 422
    assert response.json["errors"] == [{"field": "sample_data.", "message": OPERATOR_KEY}]


def test_integers_beyond_64_bits_are_422_and_store_nothing(client, api):
    """Fuzz finding: a property of 2^63 passed validation and broke the insert (a 500)."""
    tracked = client.post(TRACK, json=ev("big", "2026-01-05T10:00:00Z", properties={"n": 2 ** 63}),
                          headers={"X-Ingest-Key": INGEST_KEY})
    assert tracked.status_code == 422 and tracked.json["errors"] == [{"field": "properties.n", "message": TOO_BIG}]
    assert UserActivity.objects(user_id="big").count() == 0
    batch = client.post(TRACK, json={"events": [ev("big", "2026-01-05T10:00:00Z", properties={"n": [-(2 ** 64)]}),
                                                ev("big", "2026-01-05T10:00:00Z", event_id="fits")]},
                        headers={"X-Ingest-Key": INGEST_KEY})
    assert batch.status_code == 202 and batch.json["accepted"] == 1
    assert batch.json["rejected"] == [{"index": 0, "errors": [{"field": "properties.n.0", "message": TOO_BIG}]}]
    template = api("super_admin").post("/api/phase14/communication/templates", json={
        "name": "n", "subject": "s", "html_body": "<p>x</p>", "category": "news", "sample_data": {"n": 2 ** 70}})
    assert template.status_code == 422 and template.json["errors"][0]["message"] == TOO_BIG


EXTREME_TIMES = ["0001-01-01", "0001-01-01T00:00:00Z", "1969-12-31", "9999-12-31", "9999-12-31T23:59:59Z"]
DATED_QUERIES = [
    ("/api/phase14/engagement/metrics", ("from", "to")),
    ("/api/phase14/engagement/user/u1/activity", ("from", "to")),
    ("/api/phase14/audit-log", ("since", "until")),
]


@pytest.mark.parametrize("value", EXTREME_TIMES)
@pytest.mark.parametrize(("path", "names"), DATED_QUERIES)
def test_times_at_the_ends_of_the_calendar_are_answered_never_500(api, path, names, value):
    """Was a 500 (OverflowError) for metrics with from=to=0001-01-01: the 30-day window reached before year 1."""
    client = api("super_admin")
    track(client, ev("u1", "2026-01-05T10:00:00Z"))
    for query in ({names[0]: value}, {names[1]: value}, {names[0]: value, names[1]: value}):
        response = client.get(path, query_string=query)
        assert response.status_code in (200, 422), (query, response.get_data(as_text=True)[:300])
        if response.status_code == 422:
            assert response.mimetype == "application/problem+json"
            assert {error["field"] for error in response.json["errors"]} <= {*names, "body"}, response.json
