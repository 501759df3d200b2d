"""Error groups (one per fingerprint) over a time window."""

from __future__ import annotations

from datetime import timedelta

from console.telemetry import hour_key
from console.telemetry.models import ErrorEvent, RequestMetric
from console.timeutil import utcnow


def requests_in_window(since) -> tuple[int, int]:
    """(requests, server errors) recorded since `since`."""
    pipeline = [{"$match": {"at": {"$gte": since}}},
                {"$group": {"_id": None, "n": {"$sum": "$n"}, "errors": {"$sum": "$errors"}}}]
    rows = list(RequestMetric.objects.aggregate(pipeline))
    return (rows[0]["n"], rows[0]["errors"]) if rows else (0, 0)


def error_analysis(hours: int = 24, limit: int = 100) -> dict:
    """Groups seen in the last `hours`, most frequent first; `count` is the occurrences inside the window."""
    now = utcnow()
    since = now - timedelta(hours=hours)
    first_hour = hour_key(since)
    docs = ErrorEvent.objects(last_seen__gte=since).as_pymongo()
    groups = []
    for doc in docs:
        in_window = sum(n for key, n in (doc.get("hours") or {}).items() if key >= first_hour)
        groups.append({
            "fingerprint": doc["fingerprint"], "exception": doc.get("exception"), "message": doc.get("message"),
            "endpoint": doc.get("endpoint"), "count": in_window, "total_count": doc.get("count", 0),
            "first_seen": doc.get("first_seen"), "last_seen": doc.get("last_seen"),
            "frames": doc.get("frames") or [], "sample": _sample(doc.get("sample")),
        })
    groups.sort(key=lambda g: (-g["count"], g["fingerprint"]))
    total = sum(g["count"] for g in groups)
    requests, _server_errors = requests_in_window(since)
    return {"hours": hours, "total": total, "requests": requests,
            "error_rate": round(total / requests, 4) if requests else 0.0, "groups": groups[:limit]}


def _sample(sample: dict | None) -> dict:
    sample = dict(sample or {})
    return {key: sample[key] for key in ("method", "path", "query_keys", "at") if key in sample}
