"""UTC periods (days, ISO weeks from Monday, calendar months) shared by the engagement analytics."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

INTERVALS = ("day", "week", "month")


def as_day(value: date | datetime) -> datetime:
    """Midnight UTC of a date or of an aware/naive datetime's UTC date."""
    if isinstance(value, datetime):
        value = (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)).date()
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def period_start(value: datetime, interval: str) -> datetime:
    day = as_day(value)
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


def periods_between(first: datetime, last: datetime, interval: str) -> list[datetime]:
    """Every period start from the period of `first` to the period of `last`, inclusive."""
    out, current, end = [], period_start(first, interval), period_start(last, interval)
    while current <= end:
        out.append(current)
        current = add_periods(current, interval, 1)
    return out


def label(start: datetime, interval: str) -> str:
    if interval == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    if interval == "month":
        return start.strftime("%Y-%m")
    return start.strftime("%Y-%m-%d")


def trunc(field: str, interval: str) -> dict:
    """A $dateTrunc expression for `field` in UTC."""
    spec = {"date": field, "unit": interval, "timezone": "UTC"}
    if interval == "week":
        spec["startOfWeek"] = "monday"
    return {"$dateTrunc": spec}


def period_field(interval: str) -> str:
    """The rollup field holding the start of the member-day's period (stored at write time, so grouping by
    week or month costs no date arithmetic per document)."""
    return {"day": "$day", "week": "$week", "month": "$month"}[interval]


def period_fields(day: datetime) -> dict:
    return {"week": period_start(day, "week"), "month": period_start(day, "month")}
