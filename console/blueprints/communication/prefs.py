"""Notification preferences, suppressions and the rules that decide whether a member gets a message now."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pymongo import ReturnDocument

from console.blueprints.communication.models import (
    EmailQueue,
    NotificationHistory,
    NotificationPreference,
    Suppression,
)
from console.db import find_in
from console.errors import ApiError
from console.timeutil import utcnow

CHANNELS = ("email", "sms")
CATEGORIES = ("product", "events", "volunteering", "submissions", "donations", "digest", "marketing", "security")
ALWAYS_ON = "security"  # members cannot turn security notices off; quiet hours and caps do not hold them back
COUNTED_STATUSES = ("queued", "sending", "sent", "deferred")


def default_preferences(user_id: str) -> dict:
    return {"user_id": user_id, "channels": {name: True for name in CHANNELS},
            "categories": {name: True for name in CATEGORIES}, "quiet_hours": None, "frequency_cap": None,
            "updated_at": None, "stored": False}


def _shape(user_id: str, doc: dict | None) -> dict:
    prefs = default_preferences(user_id)
    if doc:
        prefs["channels"].update(doc.get("channels") or {})
        prefs["categories"].update(doc.get("categories") or {})
        prefs["categories"][ALWAYS_ON] = True
        prefs["quiet_hours"] = doc.get("quiet_hours") or None
        prefs["frequency_cap"] = doc.get("frequency_cap") or None
        prefs["updated_at"] = doc.get("updated_at")
        prefs["stored"] = True
    return prefs


def get_preferences(user_id: str) -> dict:
    return _shape(user_id, NotificationPreference._get_collection().find_one({"user_id": user_id}))


def preferences_for(user_ids: list[str]) -> dict[str, dict]:
    """Stored preferences for many members in one query (members without any are absent)."""
    if not user_ids:
        return {}
    cursor = find_in(NotificationPreference._get_collection(), "user_id", user_ids)
    return {doc["user_id"]: _shape(doc["user_id"], doc) for doc in cursor}


HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
SHAPE_KEYS = ("channels", "categories", "quiet_hours", "frequency_cap")


def save_preferences(user_id: str, data: dict, actor: str | None = None) -> dict:
    """Store a member's preferences: channels and categories merge, quiet hours and cap replace.

    Audited; each category or channel turned on or off lands in the member's notification history."""
    before = get_preferences(user_id)
    after = _store(user_id, data, actor)
    from console import audit

    audit.record("preferences.update", f"member:{user_id}", {k: before[k] for k in SHAPE_KEYS},
                 {k: after[k] for k in SHAPE_KEYS}, actor=actor)
    _history_of_changes(user_id, before, after, actor)
    return after


def _history_of_changes(user_id: str, before: dict, after: dict, actor: str | None) -> None:
    now = utcnow()
    entries = []
    for key, channel_of in (("categories", lambda name: "email"), ("channels", lambda name: name)):
        for name, on in after[key].items():
            if before[key].get(name, True) != on:
                entries.append({"user_id": user_id, "channel": channel_of(name),
                                "category": name if key == "categories" else None,
                                "status": "opted_in" if on else "opted_out", "reason": actor or "preferences",
                                "created_at": now, "counted": False, "kind": "preference"})
    if (before["quiet_hours"] or None) != (after["quiet_hours"] or None):
        entries.append({"user_id": user_id, "channel": "email", "category": None, "status": "quiet_hours_changed",
                        "reason": actor or "preferences", "created_at": now, "counted": False, "kind": "preference"})
    if entries:
        NotificationHistory._get_collection().insert_many(entries, ordered=False)


def _store(user_id: str, data: dict, actor: str | None) -> dict:
    if data.get("categories", {}).get(ALWAYS_ON) is False:
        raise ApiError(422, "Security notices cannot be turned off.",
                       [{"field": f"categories.{ALWAYS_ON}", "message": "security notices cannot be turned off"}])
    quiet = data.get("quiet_hours")
    if quiet:
        quiet = {**quiet, "timezone": quiet.get("timezone") or "UTC"}  # the schema's default, when not sent
        data = {**data, "quiet_hours": quiet}
        for end in ("start", "end"):
            if not HHMM.match(str(quiet.get(end) or "")):
                raise ApiError(422, "Quiet hours are HH:MM.", [{"field": f"quiet_hours.{end}",
                                                                "message": "a time as HH:MM, e.g. 22:00"}])
        try:
            ZoneInfo(quiet["timezone"])
        except (ZoneInfoNotFoundError, ValueError, OSError):
            message = f"unknown time zone {quiet['timezone']!r}"
            raise ApiError(422, "Unknown time zone.", [{"field": "quiet_hours.timezone", "message": message}]) from None
    update = {"updated_at": utcnow(), "updated_by": actor}
    for key in ("channels", "categories"):
        for name, value in (data.get(key) or {}).items():
            update[f"{key}.{name}"] = bool(value)
    for key in ("quiet_hours", "frequency_cap"):
        if key in data:
            update[key] = data[key] or None
    doc = NotificationPreference._get_collection().find_one_and_update(
        {"user_id": user_id}, {"$set": update}, upsert=True, return_document=ReturnDocument.AFTER)
    return _shape(user_id, doc)


def quiet_until(quiet: dict | None, now: datetime) -> datetime | None:
    """The end of the member's quiet period when `now` falls inside it (UTC), else None."""
    if not quiet:
        return None
    try:
        zone = ZoneInfo(quiet.get("timezone") or "UTC")
        start = time.fromisoformat(quiet["start"])
        end = time.fromisoformat(quiet["end"])
    except (KeyError, ValueError, ZoneInfoNotFoundError):
        return None
    local = now.astimezone(zone)
    current = local.time().replace(tzinfo=None)
    if start == end:
        return None
    inside = start <= current < end if start < end else (current >= start or current < end)
    if not inside:
        return None
    end_day = local.date()
    if start > end and current >= start:
        end_day += timedelta(days=1)
    return datetime.combine(end_day, end, tzinfo=zone).astimezone(now.tzinfo)


# --- suppressions ------------------------------------------------------------------------------------------

def suppressed(emails: list[str]) -> set[str]:
    if not emails:
        return set()
    cursor = find_in(Suppression._get_collection(), "email", [e.lower() for e in emails], {"email": 1})
    return {doc["email"] for doc in cursor}


def suppress(email: str, reason: str, detail: str = "", email_id=None) -> None:
    """Suppress an address for the system (bounces, complaints, unsubscribe links); suppressions.py audits it."""
    from console.blueprints.communication.suppressions import record

    record(email, reason, detail, actor="system", email_id=email_id)


# --- decisions ---------------------------------------------------------------------------------------------

def _recent_counts(caps: dict[str, dict], now: datetime, exclude_ids=()) -> dict[str, int]:
    """Emails counted against each capped member's frequency cap (one aggregation for all of them)."""
    if not caps:
        return {}
    longest = max(int(cap.get("period_hours") or 24) for cap in caps.values())
    rows = EmailQueue._get_collection().aggregate([
        {"$match": {"user_id": {"$in": list(caps)}, "created_at": {"$gte": now - timedelta(hours=longest)},
                    "status": {"$in": list(COUNTED_STATUSES)}, "category": {"$ne": ALWAYS_ON},
                    "_id": {"$nin": list(exclude_ids)}}},
        {"$project": {"user_id": 1, "created_at": 1}},
    ])
    counts: dict[str, int] = {}
    for row in rows:
        cap = caps[row["user_id"]]
        if row["created_at"] >= now - timedelta(hours=int(cap.get("period_hours") or 24)):
            counts[row["user_id"]] = counts.get(row["user_id"], 0) + 1
    return counts


def decide(recipients: list[dict], category: str, channel: str = "email", now: datetime | None = None,
           exclude_ids=()) -> list[tuple[str, str | None, datetime | None]]:
    """For each {"user_id"?, "email"?}: ("send"|"skip"|"defer", reason, defer_until), in bulk.

    `exclude_ids` are queue documents not to count against frequency caps (the ones being decided)."""
    now = now or utcnow()
    user_ids = [r["user_id"] for r in recipients if r.get("user_id")]
    prefs = preferences_for(user_ids)
    blocked = suppressed([r["email"] for r in recipients if r.get("email")]) if channel == "email" else set()
    caps = {uid: p["frequency_cap"] for uid, p in prefs.items()
            if p.get("frequency_cap") and p["frequency_cap"].get("max") is not None and category != ALWAYS_ON}
    counts = _recent_counts(caps, now, exclude_ids)
    given: dict[str, int] = {}
    out = []
    for recipient in recipients:
        uid, email = recipient.get("user_id"), (recipient.get("email") or "").lower()
        pref = prefs.get(uid) if uid else None
        if email and email in blocked:
            out.append(("skip", "suppressed", None))
            continue
        if pref and not pref["channels"].get(channel, True):
            out.append(("skip", "opted_out", None))
            continue
        if pref and category != ALWAYS_ON and not pref["categories"].get(category, True):
            out.append(("skip", "opted_out", None))
            continue
        if uid in caps:
            used = counts.get(uid, 0) + given.get(uid, 0)
            if used >= int(caps[uid]["max"]):
                out.append(("skip", "frequency_capped", None))
                continue
            given[uid] = given.get(uid, 0) + 1
        until = quiet_until(pref.get("quiet_hours"), now) if pref and category != ALWAYS_ON else None
        if until:
            out.append(("defer", "quiet_hours", until))
            continue
        out.append(("send", None, None))
    return out


def deliverability(user_ids: list[str], category: str, channel: str = "email") -> dict[str, str]:
    """Members who must not get this category now: user_id → opted_out | suppressed | frequency_capped."""
    from console.members import Member

    if not user_ids:
        return {}
    emails = {doc["user_id"]: doc.get("email")
              for doc in find_in(Member._get_collection(), "user_id", user_ids, {"user_id": 1, "email": 1})}
    recipients = [{"user_id": uid, "email": emails.get(uid)} for uid in user_ids]
    return {r["user_id"]: reason for r, (verdict, reason, _) in zip(recipients, decide(recipients, category, channel),
                                                                       strict=True) if verdict == "skip"}
