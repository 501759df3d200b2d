"""Regression tests for what the API fuzzer found (tests/test_api_fuzz.py), one per finding."""

from __future__ import annotations

from console.models.engagement import UserActivity
from console.models.member import Member
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
    assert response.json["errors"] == [{"field": "sample_data.", "message": "operator-like key not allowed"}]
