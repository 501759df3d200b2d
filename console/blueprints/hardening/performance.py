"""Latency percentiles and error rates per endpoint, computed in MongoDB ($percentile)."""

from __future__ import annotations

from datetime import timedelta

from console.telemetry.models import RequestMetric
from console.timeutil import utcnow


def performance_review(hours: int = 24, limit: int = 200) -> dict:
    """p50/p95/p99 per endpoint and method, slowest p95 first."""
    since = utcnow() - timedelta(hours=hours)
    counts = [
        {"$match": {"at": {"$gte": since}}},
        {"$group": {"_id": {"endpoint": "$endpoint", "method": "$method"},
                    "count": {"$sum": "$n"}, "errors": {"$sum": "$errors"}}},
    ]
    latencies = [
        {"$match": {"at": {"$gte": since}}},
        {"$unwind": "$d"},
        {"$group": {"_id": {"endpoint": "$endpoint", "method": "$method"},
                    "p": {"$percentile": {"input": "$d", "p": [0.5, 0.95, 0.99], "method": "approximate"}},
                    "max": {"$max": "$d"}}},
    ]
    percentiles = {(row["_id"]["endpoint"], row["_id"]["method"]): row
                   for row in RequestMetric.objects.aggregate(latencies)}
    endpoints = []
    for row in RequestMetric.objects.aggregate(counts):
        key = (row["_id"]["endpoint"], row["_id"]["method"])
        p = percentiles.get(key, {}).get("p") or [None, None, None]
        endpoints.append({
            "endpoint": key[0], "method": key[1], "count": row["count"],
            "p50_ms": _ms(p[0]), "p95_ms": _ms(p[1]), "p99_ms": _ms(p[2]),
            "max_ms": _ms(percentiles.get(key, {}).get("max")),
            "error_rate": round(row["errors"] / row["count"], 4) if row["count"] else 0.0,
        })
    endpoints.sort(key=lambda e: (-(e["p95_ms"] or 0), e["endpoint"], e["method"]))
    return {"hours": hours, "endpoints": endpoints[:limit]}


def _ms(value) -> float | None:
    return round(float(value), 2) if value is not None else None
