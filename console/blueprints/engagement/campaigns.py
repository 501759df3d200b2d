"""Re-engagement campaigns: segment, deterministic holdout, skips, sending through the mail pipeline, lift."""

from __future__ import annotations

import hashlib
import math
import secrets
from datetime import datetime, timedelta

from flask import current_app, has_app_context

from console import audit
from console.blueprints.engagement.churn import user_ids_at_risk
from console.blueprints.engagement.inactive import inactive_users
from console.blueprints.engagement.lifecycle import churn_after_days
from console.blueprints.engagement.models import ActivityRollup, Campaign
from console.blueprints.engagement.periods import add_periods, as_day, period_start
from console.config import setting
from console.db import find_in
from console.errors import ApiError
from console.members import Member
from console.pagination import PageQuery, object_id_or_404, paginate
from console.timeutil import as_utc, utcnow

SKIP_REASONS = ("opted_out", "suppressed", "in_holdout", "frequency_capped", "no_email")
Z_95 = 1.959964
MIN_HOLDOUT = 30  # fewer held-out members than this never make a result "significant"


def in_holdout(salt: str, user_id: str, percent: float) -> bool:
    """Deterministic: the same salt and member always land on the same side."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100 < percent


def lifecycle_stages(now: datetime) -> dict[str, str]:
    """Every member's current weekly stage (new, returning, resurrecting, dormant, churned, never_active) in two
    queries."""
    current = period_start(now, "week")
    previous = add_periods(current, "week", -1)
    rows = ActivityRollup._get_collection().aggregate([
        {"$match": {"day": {"$gte": previous, "$lte": as_day(now)}}},
        {"$group": {"_id": "$user_id", "now": {"$max": {"$cond": [{"$gte": ["$day", current]}, 1, 0]}},
                    "before": {"$max": {"$cond": [{"$lt": ["$day", current]}, 1, 0]}}}},
    ])
    recent = {row["_id"]: row for row in rows}
    churn_after = timedelta(days=churn_after_days())
    stages = {}
    for member in Member._get_collection().find({}, {"user_id": 1, "first_seen": 1, "last_seen": 1,
                                                      "created_at": 1}):
        uid, row = member["user_id"], recent.get(member["user_id"])
        first_seen = as_utc(member.get("first_seen"))
        if row and row["now"]:
            if first_seen and first_seen >= current:
                stages[uid] = "new"
            else:
                stages[uid] = "returning" if row["before"] else "resurrecting"
        elif not member.get("first_seen") and not member.get("last_seen"):
            stages[uid] = "never_active"  # nothing to come back to: not dormant, not churned
        else:
            reference = as_utc(member.get("last_seen")) or now
            stages[uid] = "dormant" if now - reference <= churn_after else "churned"
    return stages


def select_segment(segment: dict, now: datetime) -> list[str]:
    """Members matching every criterion given."""
    chosen: set[str] | None = set(segment["user_ids"]) if segment.get("user_ids") else None

    def narrow(found: set[str]) -> None:
        nonlocal chosen
        chosen = found if chosen is None else chosen & found

    if segment.get("inactive_days") is not None:
        narrow({row["user_id"] for row in inactive_users(segment["inactive_days"], limit=None, count=False,
                                                         now=now)["items"]})
    if segment.get("min_risk") is not None:
        narrow(user_ids_at_risk(segment["min_risk"]))
    if segment.get("lifecycle"):
        narrow({uid for uid, stage in lifecycle_stages(now).items() if stage == segment["lifecycle"]})
    if segment.get("user_ids") and chosen:
        chosen &= {doc["user_id"] for doc in Member._get_collection().find({"user_id": {"$in": sorted(chosen)}},
                                                                            {"user_id": 1})}
    return sorted(chosen or set())


def _template(template_id: str):
    from console.blueprints.communication.email_templates import find_template

    template = find_template(template_id)
    if template is None:
        raise ApiError(422, "Unknown template.", [{"field": "template_id", "message": f"no template {template_id!r}"}])
    return template


def open_holdouts(now: datetime) -> dict[str, str]:
    """Members held out by a campaign whose measurement window is still open → that campaign's id."""
    window = setting("REACTIVATION_WINDOW_DAYS")
    held: dict[str, str] = {}
    for campaign in Campaign._get_collection().find(
            {"dry_run": False, "sent_at": {"$gte": now - timedelta(days=window), "$lte": now}}, {"holdout": 1}):
        for uid in campaign.get("holdout") or ():
            held.setdefault(uid, str(campaign["_id"]))
    return held


def skip_reasons(user_ids: list[str], category: str, now: datetime, *,
                 include_holdouts: bool = False) -> dict[str, str]:
    """Members not to mail: the mail pipeline's reasons, another campaign's open holdout (unless overridden), a
    campaign within the frequency cap, or no email."""
    from console.blueprints.communication.sending import deliverability

    reasons = dict(deliverability(user_ids, category))
    wanted = set(user_ids)
    if not include_holdouts:
        for uid in wanted.intersection(open_holdouts(now)):
            reasons.setdefault(uid, "in_holdout")
    cap_days = setting("CAMPAIGN_FREQUENCY_CAP_DAYS")
    # Recent campaigns are few and their member lists are intersected here: the server would match every
    # member of every list against a long $in.
    for campaign in Campaign._get_collection().find(
            {"dry_run": False, "sent_at": {"$gte": now - timedelta(days=cap_days)}}, {"treated": 1}):
        for uid in wanted.intersection(campaign.get("treated") or ()):
            reasons.setdefault(uid, "frequency_capped")
    with_email = {doc["user_id"] for doc in find_in(Member._get_collection(), "user_id", user_ids,
                                                    {"user_id": 1}, {"email": {"$regex": "@"}})}
    for uid in user_ids:
        if uid not in with_email:
            reasons.setdefault(uid, "no_email")
    return reasons


def contamination(campaign: Campaign) -> dict:
    """Overlap with campaigns sent while one's holdout window was open: this holdout mailed by them, and
    members this campaign mailed out of their holdouts (an admin's override)."""
    window = timedelta(days=setting("REACTIVATION_WINDOW_DAYS"))
    sent_at = as_utc(campaign.sent_at)
    holdout, treated = set(campaign.holdout), set(campaign.treated)
    mailed_elsewhere, taken = [], []
    for other in Campaign._get_collection().find(
            {"_id": {"$ne": campaign.id}, "dry_run": False, "sent_at": {"$gte": sent_at - window,
                                                                       "$lte": sent_at + window}},
            {"name": 1, "sent_at": 1, "treated": 1, "holdout": 1}).sort("sent_at", 1):
        other_sent = as_utc(other["sent_at"])
        if other_sent >= sent_at:
            overlap = len(holdout.intersection(other.get("treated") or ()))
            if overlap:
                mailed_elsewhere.append({"campaign_id": str(other["_id"]), "name": other["name"], "members": overlap})
        if other_sent <= sent_at:
            overlap = len(treated.intersection(other.get("holdout") or ()))
            if overlap:
                taken.append({"campaign_id": str(other["_id"]), "name": other["name"], "members": overlap})
    return {"holdout_mailed_by": mailed_elsewhere, "mailed_from_holdouts_of": taken,
            "contaminated": bool(mailed_elsewhere or taken)}


def trigger(data: dict, actor: str | None = None, now: datetime | None = None) -> dict:
    """Select, hold out, skip, and (unless dry_run) enqueue one email per treated member."""
    from console.blueprints.communication.sending import create_batch

    now = now or utcnow()
    template = _template(data["template_id"])
    category = template.category or "marketing"
    segment = {key: value for key, value in data["segment"].items() if value is not None}
    targeted = select_segment(segment, now)
    salt = secrets.token_hex(8)
    reasons = skip_reasons(targeted, category, now, include_holdouts=bool(data.get("include_holdout_members")))
    eligible = [uid for uid in targeted if uid not in reasons]
    holdout = [uid for uid in eligible if in_holdout(salt, uid, data["holdout_percent"])]
    held = set(holdout)
    treated = [uid for uid in eligible if uid not in held]
    skipped = {reason: 0 for reason in SKIP_REASONS}
    for reason in reasons.values():
        skipped[reason] = skipped.get(reason, 0) + 1
    counts = {"targeted": len(targeted), "holdout": len(holdout), "treated": len(treated), "skipped": skipped,
              "category": category}
    if data.get("dry_run"):  # a preview: nothing stored, nothing sent
        return {"campaign_id": None, "dry_run": True, "status": "dry_run", "enqueued": 0, "batch_id": None,
                **counts}
    campaign = Campaign(name=data["name"], segment=segment, template_id=str(template.id), category=category,
                        holdout_percent=data["holdout_percent"], salt=salt, status="complete", treated=treated,
                        include_holdout_members=bool(data.get("include_holdout_members")),
                        holdout=holdout, skipped=skipped, skipped_users=reasons_by_kind(reasons), created_at=now,
                        sent_at=now, created_by=actor).save()
    if treated:
        try:
            batch = create_batch(str(template.id), [{"user_id": uid} for uid in treated],
                                      variables=data.get("variables") or {}, priority="low", category=category,
                                      source={"type": "campaign", "campaign_id": str(campaign.id),
                                              "name": campaign.name})
        except Exception:
            campaign.delete()  # nothing was enqueued, so there is no campaign to report on
            raise
        campaign.update(set__batch_id=batch["batch_id"], set__status="sending")
        campaign.reload()
    audit.record("engagement.campaign_triggered", f"campaign:{campaign.id}", None,
                 {"name": campaign.name, "treated": len(treated), "holdout": len(holdout)}, actor=actor,
                 segment=segment, template_id=str(template.id))
    return {"campaign_id": str(campaign.id), "dry_run": False, "status": campaign.status,
            "enqueued": len(treated), "batch_id": campaign.batch_id, **counts}


def reasons_by_kind(reasons: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for uid, reason in sorted(reasons.items()):
        out.setdefault(reason, []).append(uid)
    return out


def get_campaign(campaign_id: str) -> Campaign:
    campaign = Campaign.objects(id=object_id_or_404(campaign_id)).first()
    if campaign is None:
        raise ApiError(404, f"No campaign has the id {campaign_id}.")
    return campaign


def reactivated(user_ids: list[str], sent_at: datetime, until: datetime) -> set[str]:
    """Members with any activity after `sent_at` and no later than `until`."""
    if not user_ids:
        return set()
    active = ActivityRollup._get_collection().distinct("user_id", {
        "day": {"$gte": as_day(sent_at), "$lte": as_day(until)}, "last_at": {"$gt": sent_at},
        "first_at": {"$lte": until}})
    return set(active) & set(user_ids)  # intersected here: a long $in list costs the server its square


def wilson(hits: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of one proportion: never collapses at 0% or 100%."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def min_holdout() -> int:
    return int(current_app.config.get("CAMPAIGN_MIN_HOLDOUT", MIN_HOLDOUT)) if has_app_context() else MIN_HOLDOUT


def lift(treated_hits: int, treated_n: int, holdout_hits: int, holdout_n: int, final: bool = False) -> dict:
    """Difference of reactivation rates with Newcombe's hybrid score interval (95%).

    `significant` needs the window closed (`final`), at least `min_holdout()` held-out members and an interval
    that excludes zero."""
    rate_t = treated_hits / treated_n if treated_n else None
    rate_h = holdout_hits / holdout_n if holdout_n else None
    minimum = min_holdout()
    base = {"treated_rate": rate_t, "holdout_rate": rate_h, "method": "newcombe-hybrid-score", "final": final,
            "min_holdout": minimum}
    if rate_t is None or rate_h is None:
        return {**base, "difference": None, "ci_low": None, "ci_high": None, "lift": None, "relative_lift": None,
                "ci95": None, "significant": False}
    diff = rate_t - rate_h
    low_t, high_t = wilson(treated_hits, treated_n)
    low_h, high_h = wilson(holdout_hits, holdout_n)
    low = diff - math.sqrt((rate_t - low_t) ** 2 + (high_h - rate_h) ** 2)
    high = diff + math.sqrt((high_t - rate_t) ** 2 + (rate_h - low_h) ** 2)
    excludes_zero = low > 0 or high < 0
    return {**base, "difference": diff, "ci_low": low, "ci_high": high, "lift": diff,
            "relative_lift": diff / rate_h if rate_h else None, "ci95": [low, high],
            "excludes_zero": excludes_zero,
            "significant": bool(final and holdout_n >= minimum and excludes_zero)}


def recent_campaign_reports(limit: int = 3) -> list[dict]:
    """The newest sent (not dry-run) campaigns' reports, newest first."""
    sent = Campaign.objects(dry_run__ne=True, sent_at__ne=None).order_by("-sent_at").limit(limit)
    return [campaign_report(campaign) for campaign in sent]


def campaign_report(campaign: Campaign, now: datetime | None = None) -> dict:
    """Status and progress while sending, then reactivation of treated vs holdout with the lift."""
    from console.blueprints.communication.sending import batch_status

    now = now or utcnow()
    delivery = batch_status(campaign.batch_id) if campaign.batch_id else None
    status = campaign.status
    if delivery:
        status = {"queued": "sending", "sending": "sending"}.get(delivery["status"], delivery["status"])
    window = setting("REACTIVATION_WINDOW_DAYS")
    results = None
    if campaign.sent_at and not campaign.dry_run:
        sent_at = as_utc(campaign.sent_at)
        until = sent_at + timedelta(days=window)
        treated_hits = reactivated(list(campaign.treated), sent_at, until)
        holdout_hits = reactivated(list(campaign.holdout), sent_at, until)
        results = {"window_days": window, "window_ends": until, "final": now >= until,
                   "treated": {"members": len(campaign.treated), "reactivated": len(treated_hits)},
                   "holdout": {"members": len(campaign.holdout), "reactivated": len(holdout_hits)},
                   **lift(len(treated_hits), len(campaign.treated), len(holdout_hits), len(campaign.holdout),
                          final=now >= until)}
    return {
        "campaign_id": str(campaign.id), "id": str(campaign.id), "name": campaign.name, "status": status,
        "dry_run": campaign.dry_run, "segment": campaign.segment, "template_id": campaign.template_id,
        "category": campaign.category, "holdout_percent": campaign.holdout_percent,
        "created_at": campaign.created_at, "created_by": campaign.created_by, "sent_at": campaign.sent_at,
        "targeted": len(campaign.treated) + len(campaign.holdout) + sum((campaign.skipped or {}).values()),
        "treated": len(campaign.treated), "holdout": len(campaign.holdout),
        "enqueued": 0 if campaign.dry_run else len(campaign.treated), "skipped": campaign.skipped,
        "batch_id": campaign.batch_id, "progress": delivery["progress"] if delivery else (
            100.0 if status == "complete" else 0.0),
        "delivery": delivery, "results": results,
        "contamination": contamination(campaign) if campaign.sent_at and not campaign.dry_run else None,
    }


def list_campaigns(page: PageQuery) -> dict:
    """Campaigns newest first: {"items": [summaries], "next_cursor"}."""
    return paginate(Campaign.objects, page, transform=lambda c: {
        "id": str(c.id), "name": c.name, "status": c.status, "dry_run": c.dry_run, "created_at": c.created_at,
        "sent_at": c.sent_at, "treated": len(c.treated), "holdout": len(c.holdout), "category": c.category})
