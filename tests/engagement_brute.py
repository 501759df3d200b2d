"""Brute-force engagement analytics straight from raw events (no rollups, no aggregates), for the exactness tests.

Written from the definitions, not from the production code: every answer is recomputed from the list of stored
events `{"user_id", "event", "feature"?, "session_id"?, "timestamp" (aware UTC)}` in a given zone.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

GAP = 30 * 60


def local_date(stamp: datetime, tz: ZoneInfo) -> date:
    return stamp.astimezone(tz).date()


def midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def period_of(day: date, interval: str) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def next_period(start: date, interval: str) -> date:
    if interval == "week":
        return start + timedelta(weeks=1)
    if interval == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=1)


def label(start: date, interval: str) -> str:
    if interval == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return start.strftime("%Y-%m") if interval == "month" else start.isoformat()


def sessions_by_day(events: list[dict], tz: ZoneInfo) -> dict[date, list[int]]:
    """{local day: [sessions started, seconds in sessions]} over all members."""
    out: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    by_member: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        by_member[event["user_id"]].append(event)
    for member_events in by_member.values():
        # sessions with an id: counted on each day the id appears unless it appeared the local day before
        spans: dict[tuple[str, date], list[int]] = {}
        for event in member_events:
            if event.get("session_id"):
                day = local_date(event["timestamp"], tz)
                second = int((event["timestamp"] - midnight(day, tz)).total_seconds())
                span = spans.setdefault((event["session_id"], day), [second, second])
                span[0], span[1] = min(span[0], second), max(span[1], second)
        for (sid, day), (first, last) in spans.items():
            out[day][1] += last - first
            if (sid, day - timedelta(days=1)) not in spans:
                out[day][0] += 1
        # gap sessions: a new one after 30 minutes without an event; its seconds are split at local midnight
        stamps = sorted({event["timestamp"] for event in member_events if not event.get("session_id")})
        start = previous = None
        runs: list[list[datetime]] = []
        for stamp in stamps:
            if previous is None or (stamp - previous).total_seconds() >= GAP:
                runs.append([stamp])
            else:
                runs[-1].append(stamp)
            previous = stamp
        for run in runs:
            start = run[0]
            out[local_date(start, tz)][0] += 1
            per_day: dict[date, list[datetime]] = defaultdict(list)
            for stamp in run:
                per_day[local_date(stamp, tz)].append(stamp)
            for day, moments in per_day.items():
                begin = start if local_date(start, tz) == day else midnight(day, tz)
                out[day][1] += int((max(moments) - midnight(day, tz)).total_seconds()) - int(
                    (begin - midnight(day, tz)).total_seconds())
    return out


def active_days(events: list[dict], tz: ZoneInfo, pick=None) -> dict[str, set[date]]:
    out: dict[str, set[date]] = defaultdict(set)
    for event in events:
        if pick is None or pick(event):
            out[event["user_id"]].add(local_date(event["timestamp"], tz))
    return out


def metrics(events: list[dict], start: date, end: date, interval: str, tz: ZoneInfo) -> dict:
    days = active_days(events, tz)
    sessions = sessions_by_day(events, tz)

    def members(low: date, high: date, pick=None) -> set[str]:
        source = days if pick is None else active_days(events, tz, pick)
        return {user for user, active in source.items() if any(low <= day <= high for day in active)}

    def in_range(low: date, high: date) -> list[dict]:
        return [event for event in events if low <= local_date(event["timestamp"], tz) <= high]

    features = sorted({event["feature"] for event in events if event.get("feature")})
    series = []
    period = period_of(start, interval)
    while period <= end:
        last_day = next_period(period, interval) - timedelta(days=1)
        low, high = max(period, start), min(last_day, end)
        active = members(low, high)
        new = {user for user in active if min(days[user]) >= low}
        item = {"period": period.isoformat(), "label": label(period, interval), "active_users": len(active),
                "new_users": len(new), "events": len(in_range(low, high)),
                "sessions": sum(sessions[day][0] for day in sessions if low <= day <= high),
                "feature_users": {}}
        for feature in features:
            users = members(low, high, lambda event, f=feature: event.get("feature") == f)
            if users:
                item["feature_users"][feature] = len(users)
        if interval == "day":
            item["dau"] = item["active_users"]
        if (low, high) != (period, last_day):
            item["partial"] = True
        series.append(item)
        period = next_period(period, interval)
    active = members(start, end)
    total_sessions = sum(sessions[day][0] for day in sessions if start <= day <= end)
    seconds = sum(sessions[day][1] for day in sessions if start <= day <= end)
    usage = []
    for feature in features:
        used = [event for event in in_range(start, end) if event.get("feature") == feature]
        if used:
            users = {event["user_id"] for event in used}
            usage.append({"feature": feature, "events": len(used), "users": len(users),
                          "adoption": len(users) / len(active)})
    usage.sort(key=lambda row: (-row["users"], -row["events"], row["feature"]))
    window = [end - timedelta(days=n) for n in range(30)]
    mau = members(end - timedelta(days=29), end)
    user_days = sum(1 for active_set in days.values() for day in active_set if day in window)
    distribution = {}
    for size in (7, 30):
        counts = [0] * size
        for active_set in days.values():
            hits = sum(1 for n in range(size) if end - timedelta(days=n) in active_set)
            if hits:
                counts[hits - 1] += 1
        distribution[str(size)] = counts
    return {
        "interval": interval, "series": series,
        "dau": len(members(end, end)), "wau": len(members(end - timedelta(days=6), end)), "mau": len(mau),
        "stickiness": user_days / 30 / len(mau) if mau else 0.0,
        "active_users": len(active), "events": len(in_range(start, end)), "sessions": total_sessions,
        "sessions_per_user": total_sessions / len(active) if active else 0.0,
        "avg_session_minutes": seconds / total_sessions / 60 if total_sessions else 0.0,
        "feature_usage": usage, "stickiness_distribution": distribution,
        "from": start.isoformat(), "to": end.isoformat(),
    }


def retention(events: list[dict], period: str, cohorts: int, periods: int, start_event: str | None,
              return_event: str | None, mode: str, today: date, tz: ZoneInfo) -> list[tuple]:
    """[(cohort start, size, counts)] as the endpoint defines them."""
    events = [event for event in events if local_date(event["timestamp"], tz) <= today]
    starts = active_days(events, tz, (lambda e: e["event"] == start_event) if start_event else None)
    returns = active_days(events, tz, (lambda e: e["event"] == return_event) if return_event else None)
    start_periods = {user: {period_of(day, period) for day in active} for user, active in starts.items()}
    return_periods = {user: {period_of(day, period) for day in active} for user, active in returns.items()}
    bounds = [period_of(today, period)]
    for _ in range(cohorts - 1):
        bounds.insert(0, _previous(bounds[0], period))
    out = []
    for index, cohort in enumerate(bounds):
        if mode == "first_time":
            members = {user for user, found in start_periods.items() if min(found) == cohort}
        else:
            members = {user for user, found in start_periods.items() if cohort in found}
        length = min(periods, cohorts - index)
        counts = [len(members)] + [
            sum(1 for user in members if bounds[index + k] in return_periods.get(user, set()))
            for k in range(1, length)]
        out.append((cohort.isoformat(), len(members), counts))
    return out


def _previous(start: date, interval: str) -> date:
    if interval == "week":
        return start - timedelta(weeks=1)
    if interval == "month":
        return (start - timedelta(days=1)).replace(day=1)
    return start - timedelta(days=1)


def lifecycle(events: list[dict], interval: str, periods: int, today: date, tz: ZoneInfo) -> list[dict]:
    events = [event for event in events if local_date(event["timestamp"], tz) <= today]
    active = {user: {period_of(day, interval) for day in found} for user, found in active_days(events, tz).items()}
    bounds = [period_of(today, interval)]
    for _ in range(periods - 1):
        bounds.insert(0, _previous(bounds[0], interval))
    out = []
    for period in bounds:
        before = _previous(period, interval)
        row = {"period": period.isoformat(), "new": 0, "returning": 0, "resurrecting": 0, "dormant": 0}
        for found in active.values():
            if period in found:
                key = "new" if min(found) == period else "returning" if before in found else "resurrecting"
                row[key] += 1
            elif before in found:
                row["dormant"] -= 1
        out.append(row)
    return out
