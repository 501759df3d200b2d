"""Helpers for the engagement tests: send events, read rollups."""

from __future__ import annotations

from tests.conftest import INGEST_KEY

TRACK = "/api/phase14/engagement/track-activity"
BASE = "/api/phase14/engagement"


def track(client, events, *, key: str | None = INGEST_KEY, expect: int = 202):
    """POST events (a list means a batch) with the ingest key; assert the status and return the JSON."""
    body = {"events": events} if isinstance(events, list) else events
    headers = {"X-Ingest-Key": key} if key else {}
    response = client.post(TRACK, json=body, headers=headers)
    assert response.status_code == expect, response.get_data(as_text=True)
    return response.get_json()


def ev(user_id: str, stamp: str, event: str = "page_view", **extra) -> dict:
    return {"user_id": user_id, "event": event, "timestamp": stamp, **extra}


def rollup(user_id: str, day: str) -> dict | None:
    from datetime import UTC, datetime

    from console.blueprints.engagement.models import ActivityRollup

    return ActivityRollup._get_collection().find_one(
        {"user_id": user_id, "day": datetime.fromisoformat(day).replace(tzinfo=UTC)})
