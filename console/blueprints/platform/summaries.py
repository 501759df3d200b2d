"""Read-only numbers from the community platform's own collections (submissions, volunteers, blogs, events).

The platform owns these collections and their shapes; we only count, tolerate missing fields, and answer
with zeros when a collection is absent. Demo data for them lives in `seed_platform_demo`.
"""

from __future__ import annotations

from datetime import timedelta

from pymongo import UpdateOne

from console.db import get_db
from console.timeutil import utcnow

PENDING = ("pending", "submitted", "in_review", "new")


def _by_status(name: str, default: str) -> dict[str, int]:
    """Documents per `status` (missing status counted as `default`), in one aggregation."""
    pipeline = [{"$group": {"_id": {"$ifNull": ["$status", default]}, "n": {"$sum": 1}}}]
    return {str(row["_id"]): row["n"] for row in get_db()[name].aggregate(pipeline)}


def moderation_summary() -> dict:
    statuses = _by_status("submissions", "pending")
    since = utcnow() - timedelta(days=7)
    return {
        "total": sum(statuses.values()),
        "pending": sum(statuses.get(status, 0) for status in PENDING),
        "approved": statuses.get("approved", 0),
        "rejected": statuses.get("rejected", 0),
        "new_7d": get_db().submissions.count_documents({"submitted_at": {"$gte": since}}) if statuses else 0,
        "oldest_pending": get_db().submissions.find_one({"status": {"$in": list(PENDING)}},
                                                         sort=[("submitted_at", 1)],
                                                         projection={"title": 1, "submitted_at": 1}),
    }


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
            "drafts": statuses.get("draft", 0), "in_review": statuses.get("review", 0), "latest": latest}


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
        status = "draft" if title.startswith("Draft") else rng.choices(["published", "review", "draft"], [6, 1, 1])[0]
        published = now - timedelta(days=rng.uniform(1, 80)) if status == "published" else None
        ops["blogs"].append({"demo_key": f"blog-{index}", "title": title, "status": status,
                             "author": rng.choice(["Content Manager", "Admin", "Guest writer"]),
                             "published_at": published, "created_at": now - timedelta(days=rng.uniform(1, 90))})
    for index, (title, location, capacity) in enumerate(EVENTS):
        starts = now + timedelta(days=rng.choice([-20, -6, 3, 9, 16, 30]) + index, hours=rng.randint(9, 19))
        ops["events"].append({"demo_key": f"event-{index}", "title": title, "location": location,
                              "capacity": capacity, "registered": rng.randint(capacity // 4, capacity),
                              "starts_at": starts})
    created = 0
    for name, docs in ops.items():
        result = db[name].bulk_write([UpdateOne({"demo_key": doc["demo_key"]}, {"$setOnInsert": doc}, upsert=True)
                                      for doc in docs], ordered=False)
        created += result.upserted_count
    total = sum(len(docs) for docs in ops.values())
    return f"{created} new documents ({total - created} already there) in submissions, volunteers, blogs, events"
