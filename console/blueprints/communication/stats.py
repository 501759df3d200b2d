"""Delivery and engagement rates for a template, a batch or a campaign: one aggregation over the queue.

Opens and clicks count emails a person opened or clicked (unique, human): machine ones (privacy proxies,
link scanners; see tracking.py) are counted apart. Sent, delivered, bounced and complained are rates of the
emails in scope that were not skipped; the rest are rates of the emails sent.
"""

from __future__ import annotations

from datetime import datetime

from bson import ObjectId

from console.blueprints.communication.models import EmailBatch, EmailQueue
from console.errors import ApiError
from console.timeutil import as_utc

HANDED_OVER = ["sent", "delivered", "bounced", "complained"]
MEASURES = ("sent", "delivered", "bounced", "complained", "opens", "clicks", "unsubscribes")
MAX_DAYS = 400


def scope_filter(template_id: str | None = None, batch_id: str | None = None, campaign_id: str | None = None,
                 start: datetime | None = None, end: datetime | None = None) -> dict:
    """The queue documents the stats are about; exactly one of the three ids. 422 otherwise."""
    given = {name: value for name, value in (("template_id", template_id), ("batch_id", batch_id),
                                              ("campaign_id", campaign_id)) if value}
    if len(given) != 1:
        raise ApiError(422, "Give exactly one of template_id, batch_id or campaign_id.",
                       [{"field": "template_id", "message": "give exactly one of template_id, batch_id, campaign_id"}])
    (name, value), = given.items()
    if not ObjectId.is_valid(value):
        raise ApiError(422, f"Bad {name}.", [{"field": name, "message": "not an id"}])
    match: dict = {}
    if name == "campaign_id":
        batches = [b["_id"] for b in EmailBatch._get_collection().find({"source.campaign_id": value}, {"_id": 1})]
        match["batch_id"] = {"$in": batches}
    else:
        match[name] = ObjectId(value)
    start, end = as_utc(start), as_utc(end)
    if start and end and end < start:
        raise ApiError(422, "`to` is before `from`.", [{"field": "to", "message": "must not be before from"}])
    if start or end:
        match["created_at"] = {**({"$gte": start} if start else {}), **({"$lt": end} if end else {})}
    return match


def _flag(condition) -> dict:
    return {"$sum": {"$cond": [condition, 1, 0]}}


def _counts() -> dict:
    handed_over = {"$in": ["$status", HANDED_OVER]}
    return {"total": {"$sum": 1}, "skipped": _flag({"$eq": ["$status", "skipped"]}),
            "sent": _flag(handed_over), "delivered": _flag({"$in": ["$status", ["delivered", "complained"]]}),
            "bounced": _flag({"$eq": ["$status", "bounced"]}), "complained": _flag({"$eq": ["$status", "complained"]}),
            "opens": _flag({"$gt": [{"$ifNull": ["$human_opens", 0]}, 0]}),
            "clicks": _flag({"$gt": [{"$ifNull": ["$human_clicks", 0]}, 0]}),
            "machine_opens": _flag({"$gt": [{"$subtract": [{"$ifNull": ["$opens", 0]},
                                                           {"$ifNull": ["$human_opens", 0]}]}, 0]}),
            "machine_clicks": _flag({"$gt": [{"$subtract": [{"$ifNull": ["$clicks", 0]},
                                                            {"$ifNull": ["$human_clicks", 0]}]}, 0]}),
            "unsubscribes": _flag({"$ne": [{"$ifNull": ["$unsubscribed_at", None]}, None]})}


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _shape(row: dict) -> dict:
    attempted = row["total"] - row["skipped"]
    out = {}
    for name in MEASURES:
        whole = attempted if name == "sent" else row["sent"]
        out[name] = {"count": row[name], "rate": _rate(row[name], whole)}
    return out


def communication_stats(**scope) -> dict:
    """{"total", "skipped", sent..unsubscribes as {"count", "rate"}, "machine": {...}, "series": [per day]}."""
    match = scope_filter(**scope)
    day = {"$dateTrunc": {"date": "$created_at", "unit": "day", "timezone": "UTC"}}
    rows = list(EmailQueue._get_collection().aggregate([
        {"$match": match},
        {"$group": {"_id": day, **_counts()}},
        {"$sort": {"_id": 1}},
    ]))
    total = {key: sum(row[key] for row in rows) for key in ("total", "skipped", "sent", *MEASURES[1:],
                                                            "machine_opens", "machine_clicks")}
    series = [{"day": row["_id"], **{name: row[name] for name in MEASURES}} for row in rows[-MAX_DAYS:]]
    return {"total": total["total"], "skipped": total["skipped"], **_shape(total),
            "machine": {"opens": total["machine_opens"], "clicks": total["machine_clicks"]}, "series": series}

