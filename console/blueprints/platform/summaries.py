"""Read-only numbers from the community platform's own collections (submissions, volunteers, blogs, events).

The platform owns these collections and their shapes; we only count, tolerate missing fields, and answer
with zeros when a collection is absent. Demo data for them lives in `seed_platform_demo`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pymongo import UpdateOne

from console.db import get_db
from console.timeutil import utcnow


def _by_status(name: str, default: str) -> dict[str, int]:
    """Documents per `status` (missing status counted as `default`), in one aggregation."""
    pipeline = [{"$group": {"_id": {"$ifNull": ["$status", default]}, "n": {"$sum": 1}}}]
    return {str(row["_id"]): row["n"] for row in get_db()[name].aggregate(pipeline)}


def _waiting() -> dict:
    """Items still waiting for a decision, as the moderation queue counts them (a missing status waits too)."""
    from console.blueprints.platform.moderation import PENDING

    return {"$or": [{"status": {"$in": list(PENDING)}}, {"status": None}]}


def moderation_queue(oldest: int = 5) -> dict:
    """What waits for a moderator: pending submissions by type (with each type's oldest), the longest waiting,
    and pending volunteer applications."""
    db, now, waiting = get_db(), utcnow(), _waiting()
    rows = db.submissions.aggregate([
        {"$match": waiting},
        {"$group": {"_id": {"$ifNull": ["$kind", {"$ifNull": ["$type", "other"]}]}, "n": {"$sum": 1},
                    "oldest": {"$min": "$submitted_at"}}},
        {"$sort": {"n": -1, "_id": 1}}])
    by_type = [{"type": str(row["_id"]), "n": row["n"], "oldest_days": _age_days(row.get("oldest"), now)}
               for row in rows]
    longest = list(db.submissions.find(waiting, {"title": 1, "kind": 1, "type": 1, "submitted_at": 1, "user_id": 1})
                   .sort("submitted_at", 1).limit(oldest)) if by_type else []
    for doc in longest:
        doc["age_days"] = _age_days(doc.get("submitted_at"), now)
    first_application = db.volunteers.find_one(waiting, {"joined_at": 1}, sort=[("joined_at", 1)])
    pending = sum(row["n"] for row in by_type)
    return {"pending": pending, "by_type": by_type, "longest": longest,
            "oldest_days": longest[0]["age_days"] if longest else None,
            "new_24h": db.submissions.count_documents({**waiting, "submitted_at": {"$gte": now - timedelta(days=1)}})
            if pending else 0,
            "applications": db.volunteers.count_documents(waiting) if first_application else 0,
            "oldest_application_days": _age_days(first_application.get("joined_at"), now)
            if first_application else None}


def _age_days(when, now) -> int | None:
    from console.timeutil import as_utc

    return (now - as_utc(when)).days if isinstance(when, datetime) else None


CONTENT_FIELDS = {"title": 1, "status": 1, "version": 1, "publish_at": 1, "published_at": 1, "updated_at": 1,
                  "created_at": 1, "starts_at": 1}


def content_pipeline(kinds: tuple[str, ...], show: int = 5) -> dict:
    """Drafts (last edited first), scheduled (next first) and recently published posts and events, with counts."""
    db, now = get_db(), utcnow()
    lanes = {"draft": [], "scheduled": [], "published": []}
    counts = {"draft": 0, "scheduled": 0, "published": 0, "published_30d": 0}
    for kind in kinds:
        collection = db[kind]
        for row in collection.aggregate([{"$group": {"_id": {"$ifNull": ["$status", "draft"]}, "n": {"$sum": 1}}}]):
            if row["_id"] in counts:
                counts[row["_id"]] += row["n"]
        counts["published_30d"] += collection.count_documents(
            {"status": "published", "published_at": {"$gte": now - timedelta(days=30)}})
        queries = {"draft": ({"$or": [{"status": "draft"}, {"status": None}]}, [("updated_at", -1), ("_id", -1)]),
                   "scheduled": ({"status": "scheduled"}, [("publish_at", 1)]),
                   "published": ({"status": "published"}, [("published_at", -1)])}
        for lane, (query, order) in queries.items():
            for doc in collection.find(query, CONTENT_FIELDS).sort(order).limit(show):
                lanes[lane].append({**doc, "id": str(doc["_id"]), "kind": kind, "version": int(doc.get("version") or 0),
                                    "when": doc.get({"draft": "updated_at", "scheduled": "publish_at",
                                                     "published": "published_at"}[lane]) or doc.get("created_at")})
    floor = datetime.min.replace(tzinfo=UTC)

    def key(item):
        from console.timeutil import as_utc

        return as_utc(item["when"]) if isinstance(item["when"], datetime) else floor

    for lane, items in lanes.items():
        items.sort(key=key, reverse=lane != "scheduled")
        del items[show:]
    return {"lanes": lanes, "counts": counts, "kinds": kinds}


def volunteer_summary() -> dict:
    statuses = _by_status("volunteers", "active")
    since = utcnow() - timedelta(days=30)
    return {
        "total": sum(statuses.values()),
        "active": statuses.get("active", 0),
        "applied": statuses.get("applied", 0) + statuses.get("pending", 0),
        "new_30d": get_db().volunteers.count_documents({"joined_at": {"$gte": since}}) if statuses else 0,
    }


def blog_summary() -> dict:
    statuses = _by_status("blogs", "draft")
    latest = get_db().blogs.find_one({"status": "published"}, sort=[("published_at", -1)],
                                     projection={"title": 1, "published_at": 1})
    return {"total": sum(statuses.values()), "published": statuses.get("published", 0),
            "drafts": statuses.get("draft", 0), "scheduled": statuses.get("scheduled", 0), "latest": latest}


def event_summary() -> dict:
    now = utcnow()
    events = get_db().events
    total = events.estimated_document_count()
    upcoming = events.count_documents({"starts_at": {"$gte": now}}) if total else 0
    following = list(events.find({"starts_at": {"$gte": now}}, projection={"title": 1, "starts_at": 1,
                                                                           "location": 1, "capacity": 1,
                                                                           "registered": 1})
                     .sort("starts_at", 1).limit(3)) if upcoming else []
    return {"total": total, "upcoming": upcoming, "past": total - upcoming, "next": following}


def template_summary() -> dict:
    """Email templates (the communication feature's collection) by category, and the latest edits."""
    templates = get_db().email_templates
    categories = {str(row["_id"]): row["n"] for row in templates.aggregate(
        [{"$group": {"_id": {"$ifNull": ["$category", "other"]}, "n": {"$sum": 1}}}, {"$sort": {"n": -1}}])}
    recent = list(templates.find({}, projection={"name": 1, "updated_at": 1, "category": 1})
                  .sort("updated_at", -1).limit(3)) if categories else []
    return {"total": sum(categories.values()), "categories": categories, "recent": recent}


# --- demo data -----------------------------------------------------------------------------------------------

SUBMISSION_TITLES = [
    "Community garden photo set", "Story: how the food bank started", "Proposal: Saturday repair café",
    "Event idea: multilingual book swap", "Photo: river clean-up crew", "Recipe for the cookbook: dal tadka",
    "Proposal: mentoring evenings for newcomers", "Story: my first volunteer shift", "Mural sketch for the library",
    "Podcast episode pitch: neighbours", "Event idea: open-air cinema", "Photo: winter coat drive",
]
VOLUNTEER_SKILLS = ["events", "translation", "photography", "tutoring", "logistics", "design", "cooking", "first aid"]
BLOG_TITLES = [
    "Spring clean-up: 300 kg of litter later", "Meet the volunteers behind the food bank",
    "What we learned from our first hackathon", "A year of the repair café", "Our accessibility promise",
    "How to run a neighbourhood book swap", "Annual report: the community in numbers",
    "Five ways to welcome newcomers", "Behind the scenes of the summer festival", "Draft: winter programme",
]
EVENTS = [
    ("Repair café", "Community hall, room 2", 40), ("Book swap", "Central library", 80),
    ("River clean-up", "North bridge", 60), ("Newcomers' welcome evening", "Community hall", 50),
    ("Open-air cinema", "Park amphitheatre", 200), ("Volunteer training", "Online", 100),
]


def seed_platform_demo(rng, now) -> str:
    """A few realistic documents in the platform's collections, keyed by `demo_key` so reruns add nothing."""
    db = get_db()
    ops: dict[str, list] = {"submissions": [], "volunteers": [], "blogs": [], "events": []}
    for index in range(36):
        status = rng.choices(["pending", "approved", "rejected"], weights=[4, 6, 1])[0]
        at = now - timedelta(days=rng.uniform(0, 45))
        ops["submissions"].append({"demo_key": f"submission-{index}", "title": rng.choice(SUBMISSION_TITLES),
                                   "kind": rng.choice(["story", "photo", "proposal", "event idea"]),
                                   "user_id": f"m{rng.randint(1, 500):04d}", "status": status, "submitted_at": at})
    for index in range(28):
        status = rng.choices(["active", "applied", "inactive"], weights=[7, 2, 1])[0]
        ops["volunteers"].append({"demo_key": f"volunteer-{index}", "user_id": f"m{rng.randint(1, 500):04d}",
                                  "skills": rng.sample(VOLUNTEER_SKILLS, 2), "status": status,
                                  "joined_at": now - timedelta(days=rng.uniform(0, 200)),
                                  "hours_logged": rng.randint(0, 120)})
    for index, title in enumerate(BLOG_TITLES):
        status = "draft" if title.startswith("Draft") else rng.choices(["published", "scheduled", "draft"],
                                                                       [6, 1, 1])[0]
        published = now - timedelta(days=rng.uniform(1, 80)) if status == "published" else None
        created_at = now - timedelta(days=rng.uniform(1, 90))
        ops["blogs"].append({"demo_key": f"blog-{index}", "title": title, "status": status,
                             "author": rng.choice(["Content Manager", "Admin", "Guest writer"]),
                             "published_at": published, "created_at": created_at, "updated_at": created_at,
                             "publish_at": now + timedelta(days=rng.randint(2, 9), hours=9)
                             if status == "scheduled" else None})
    for index, (title, location, capacity) in enumerate(EVENTS):
        starts = now + timedelta(days=rng.choice([-20, -6, 3, 9, 16, 30]) + index, hours=rng.randint(9, 19))
        status = "draft" if index == len(EVENTS) - 1 else "published"
        ops["events"].append({"demo_key": f"event-{index}", "title": title, "location": location,
                              "capacity": capacity, "registered": rng.randint(capacity // 4, capacity),
                              "starts_at": starts, "status": status, "updated_at": now - timedelta(days=index),
                              "published_at": now - timedelta(days=30 - index) if status == "published" else None})
    created = 0
    for name, docs in ops.items():
        result = db[name].bulk_write([UpdateOne({"demo_key": doc["demo_key"]}, {"$setOnInsert": doc}, upsert=True)
                                      for doc in docs], ordered=False)
        created += result.upserted_count
    total = sum(len(docs) for docs in ops.values())
    return f"{created} new documents ({total - created} already there) in submissions, volunteers, blogs, events"
