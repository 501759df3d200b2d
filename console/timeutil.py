"""UTC time helpers: the whole app stores and returns aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Naive datetimes are taken as UTC; aware ones are converted."""
    if value is None or value.tzinfo is UTC:
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def isoformat(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, milliseconds when present."""
    if value is None:
        return None
    value = as_utc(value)
    text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def day_start(value: date | None) -> datetime | None:
    """Midnight UTC of a day (a date filter's start), or None for none."""
    return datetime.combine(value, time(), tzinfo=UTC) if value else None
