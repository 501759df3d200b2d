"""Analytics periods in ANALYTICS_TIMEZONE: local days, ISO weeks from Monday, calendar months.

A period is named by its *label*: midnight UTC of the local calendar date it starts on (so `2026-03-29` is the
Berlin day of 29 March, whatever its UTC offset). Rollups and aggregates store labels; `day_bounds` gives the
real instants a local day spans (23 or 25 hours on a daylight-saving switch).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask.globals import _cv_app

INTERVALS = ("day", "week", "month")
DAY = timedelta(days=1)


@lru_cache(maxsize=16)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def zone_name() -> str:
    # The app context's contextvar, not the `current_app` proxy: ingestion asks thousands of times per batch.
    context = _cv_app.get(None)
    if context is None:  # outside an app (scripts, unit helpers): UTC
        return "UTC"
    return str(context.app.config.get("ANALYTICS_TIMEZONE") or "UTC")


def zone() -> ZoneInfo:
    return _zone(zone_name())


def check_zone(name: str) -> None:
    """Raise ValueError unless `name` is an IANA time zone."""
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"ANALYTICS_TIMEZONE {name!r} is not an IANA time zone name") from error


def as_day(value: date | datetime, tz: ZoneInfo | None = None) -> datetime:
    """The label of the local day holding an instant (naive means UTC), or of a calendar date."""
    if isinstance(value, datetime):
        value = (value.replace(tzinfo=UTC) if value.tzinfo is None else value).astimezone(tz or zone()).date()
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def local_midnight(label: datetime, tz: ZoneInfo | None = None) -> datetime:
    """The UTC instant at which the local day `label` begins."""
    return datetime(label.year, label.month, label.day, tzinfo=tz or zone()).astimezone(UTC)


def day_bounds(label: datetime, tz: ZoneInfo | None = None) -> tuple[datetime, datetime]:
    tz = tz or zone()
    return local_midnight(label, tz), local_midnight(label + DAY, tz)


def day_length(label: datetime, tz: ZoneInfo | None = None) -> int:
    """Seconds in the local day (86400, or 82800/90000 across a daylight-saving switch)."""
    start, end = day_bounds(label, tz)
    return int((end - start).total_seconds())


def period_start(value: datetime, interval: str) -> datetime:
    day = as_day(value) if value.tzinfo is None or value.utcoffset() or value.time() != datetime.min.time() \
        else datetime(value.year, value.month, value.day, tzinfo=UTC)
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def add_periods(start: datetime, interval: str, count: int) -> datetime:
    if interval == "week":
        return start + timedelta(weeks=count)
    if interval == "month":
        month = start.month - 1 + count
        return start.replace(year=start.year + month // 12, month=month % 12 + 1, day=1)
    return start + timedelta(days=count)


def period_end(start: datetime, interval: str) -> datetime:
    """The label of the last day of the period starting at `start`."""
    return add_periods(start, interval, 1) - DAY


def periods_between(first: datetime, last: datetime, interval: str) -> list[datetime]:
    """Every period start from the period of `first` to the period of `last`, inclusive."""
    out, current, end = [], period_start(first, interval), period_start(last, interval)
    while current <= end:
        out.append(current)
        current = add_periods(current, interval, 1)
    return out


def days_between(first: datetime, last: datetime) -> list[datetime]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def label(start: datetime, interval: str) -> str:
    if interval == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    if interval == "month":
        return start.strftime("%Y-%m")
    return start.strftime("%Y-%m-%d")


def trunc(field: str, interval: str) -> dict:
    """A $dateTrunc expression for `field` in the analytics zone (returns the local period's UTC instant)."""
    spec = {"date": field, "unit": interval, "timezone": zone_name()}
    if interval == "week":
        spec["startOfWeek"] = "monday"
    return {"$dateTrunc": spec}


def period_field(interval: str) -> str:
    """The rollup field holding the start of the member-day's period."""
    return {"day": "$day", "week": "$week", "month": "$month"}[interval]


def period_fields(day: datetime) -> dict:
    return {"week": period_start(day, "week"), "month": period_start(day, "month")}
