"""Lifecycle stages per period (PostHog's definitions) for one member and for everyone.

Members with no activity at all are "never_active": their own bucket, never dormant or churned."""

from __future__ import annotations

from datetime import datetime, timedelta

from console.blueprints.engagement.frozen import Reader
from console.blueprints.engagement.models import ActivityRollup
from console.blueprints.engagement.periods import add_periods, as_day, label, period_start, zone_name
from console.blueprints.engagement.rollups import rollup_id
from console.config import setting
from console.db import find_in
from console.members import Member
from console.timeutil import as_utc, utcnow

STAGES = ("new", "returning", "resurrecting", "dormant")
DAY = timedelta(days=1)


def _stages(reader: Reader, period: datetime, interval: str, today: datetime) -> dict:
    """One period's bar: new (first activity ever), returning (active in the previous period too), resurrecting
    (back after a gap) and dormant (active in the previous period, not in this one; negative)."""
    previous = add_periods(period, interval, -1)
    active = reader.span(period, min(add_periods(period, interval, 1) - DAY, today)).users
    before = reader.span(previous, period - DAY).users
    new = active - reader.span(None, period - DAY).users
    return {"new": len(new), "returning": active.intersection_cardinality(before),
            "resurrecting": len(active - before - new), "dormant": -len(before - active)}


def churn_after_days() -> int:
    return setting("CHURN_AFTER_DAYS")


def _periods_of(user_id: str, first_seen: datetime | None, now: datetime, interval: str) -> list[dict]:
    """The member's events, first and last time per period, read by `_id` from first_seen to today."""
    if first_seen is None:
        return []
    days = (as_day(now) - as_day(first_seen)).days + 1
    ids = [rollup_id(user_id, as_day(now) - timedelta(days=n)) for n in range(max(days, 0))]
    periods: dict[datetime, dict] = {}
    for row in find_in(ActivityRollup._get_collection(), "_id", ids, {"day": 1, "events": 1, "first_at": 1,
                                                                     "last_at": 1}):
        period = periods.setdefault(period_start(as_utc(row["day"]), interval),
                                    {"events": 0, "first": row["first_at"], "last": row["last_at"]})
        period["events"] += row["events"]
        period["first"], period["last"] = min(period["first"], row["first_at"]), max(period["last"], row["last_at"])
    return [{"_id": key, **value} for key, value in sorted(periods.items())]


def member_lifecycle(user_id: str, interval: str = "week", now: datetime | None = None) -> dict | None:
    """The member's current stage and per-period timeline; None when the member is unknown."""
    now = now or utcnow()
    member = Member._get_collection().find_one({"user_id": user_id}, {"first_seen": 1, "last_seen": 1,
                                                                       "created_at": 1})
    rows = _periods_of(user_id, as_utc((member or {}).get("first_seen")), now, interval)
    if member is None and not rows:
        return None
    events = {as_utc(row["_id"]): row["events"] for row in rows}
    first_seen = as_utc(min(row["first"] for row in rows)) if rows else as_utc((member or {}).get("first_seen"))
    last_seen = as_utc(max(row["last"] for row in rows)) if rows else as_utc((member or {}).get("last_seen"))
    current = period_start(as_day(now), interval)
    timeline = []
    if events:
        period, first_period = min(events), min(events)
        while period <= current:
            previous = add_periods(period, interval, -1)
            if period in events:
                stage = "new" if period == first_period else "returning" if previous in events else "resurrecting"
                timeline.append({"period": period.date().isoformat(), "label": label(period, interval),
                                 "stage": stage, "events": events[period]})
            elif previous in events:
                timeline.append({"period": period.date().isoformat(), "label": label(period, interval),
                                 "stage": "dormant", "events": 0})
            period = add_periods(period, interval, 1)
    if not events:
        stage = "never_active"  # not dormant: there is nothing to come back to
    elif current in events:
        stage = timeline[-1]["stage"]
    elif add_periods(current, interval, -1) in events:
        stage = "dormant"  # as the chart counts them in this interval
    else:
        stage = "dormant" if now - last_seen <= timedelta(days=churn_after_days()) else "churned"
    return {"user_id": user_id, "interval": interval, "stage": stage, "first_seen": first_seen,
            "last_seen": last_seen, "timeline": timeline}


def lifecycle_chart(interval: str = "week", periods: int = 12, now: datetime | None = None) -> dict:
    """Members new/returning/resurrecting/dormant per period for the last `periods` periods (set algebra between
    consecutive periods of the day aggregates, frozen for periods past), and how many were never active at all."""
    today = as_day(now or utcnow())
    reader = Reader(now)
    current = period_start(today, interval)
    starts = [add_periods(current, interval, index - (periods - 1)) for index in range(periods)]
    past = {period: reader.key("lifecycle", interval, period.date()) for period in starts
            if add_periods(period, interval, 1) - DAY < reader.today}
    kept = reader.kept({key: add_periods(period, interval, 1) - DAY for period, key in past.items()},
                       lambda missing: {key: _stages(reader, period, interval, today)
                                        for period, key in past.items() if key in missing})
    series = []
    for period in starts:
        item = {"period": period.date().isoformat(), "label": label(period, interval),
                **(kept[past[period]] if period in past else _stages(reader, period, interval, today))}
        if period == current:
            item["partial"] = True  # still going: members may yet come back this period
        series.append(item)
    # Members with no last_seen have never been active (every stored event sets it): counted by the index on
    # last_seen, not by counting every member.
    never_active = Member._get_collection().count_documents({"last_seen": None})
    return {"interval": interval, "series": series, "never_active": never_active,
            "timezone": zone_name()}
