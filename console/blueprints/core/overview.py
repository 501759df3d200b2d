"""Small numbers for the dashboard landing page."""

from __future__ import annotations

from datetime import timedelta

from console.accounts import Admin
from console.members import Member
from console.timeutil import utcnow


def member_summary() -> dict:
    now = utcnow()
    return {
        "total": Member.objects.count(),
        "active_7d": Member.objects(last_seen__gte=now - timedelta(days=7)).count(),
        "new_30d": Member.objects(first_seen__gte=now - timedelta(days=30)).count(),
    }


def admin_summary() -> dict:
    pipeline = [{"$unwind": "$roles"}, {"$group": {"_id": "$roles", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}]
    by_role = {row["_id"]: row["n"] for row in Admin.objects.aggregate(pipeline)}
    return {"total": Admin.objects.count(), "by_role": by_role}
